"""How a cost grows with the fleet: least-squares fits of measured figures against N (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Fit:
    """y = intercept + slope * N (least squares), and y ~ N ** exponent (log-log slope)."""

    intercept: float
    slope: float
    exponent: float

    def describe(self, what: str = "") -> str:
        """One phrase a reader can check: how the figure grows."""
        e = self.exponent
        if abs(e) < 0.05:
            shape = "flat"
        elif e < 0:
            shape = f"falling (N^{e:.2f})"
        elif e <= 1.05:
            shape = f"grows as N^{e:.2f}"
        else:
            shape = f"grows faster than N (N^{e:.2f})"
        return f"{what}{': ' if what else ''}{shape}"


def linear(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line through (xs, ys)."""
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError("a fit needs at least two points, as many N as figures")
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("a fit needs at least two different N")
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - slope * mx, slope


def exponent(xs: Sequence[float], ys: Sequence[float]) -> float:
    """b in y ~ N**b: the least-squares slope of log y on log N (nan if any y <= 0)."""
    if any(y <= 0 for y in ys) or any(x <= 0 for x in xs):
        return float("nan")
    return linear([math.log(x) for x in xs], [math.log(y) for y in ys])[1]


def fit(xs: Sequence[float], ys: Sequence[float]) -> Fit:
    intercept, slope = linear(xs, ys)
    return Fit(intercept, slope, exponent(xs, ys))


def change(xs: Sequence[float], ys: Sequence[float], base: float, at: float) -> float:
    """y at N = `at` relative to y at N = `base` (1.0: the same), both measured."""
    by = dict(zip(xs, ys, strict=True))
    return by[at] / by[base] if by[base] else float("nan")
