"""The scale benchmark's fits (benchmarks/_fit.py): pure arithmetic, checked on known curves."""

from __future__ import annotations

import math

import pytest

from benchmarks._fit import change, exponent, fit, linear

pytestmark = pytest.mark.unit

NS = [100.0, 1000.0, 5000.0]


def test_a_line_is_found_exactly() -> None:
    intercept, slope = linear(NS, [3 + 0.5 * n for n in NS])
    assert intercept == pytest.approx(3) and slope == pytest.approx(0.5)


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0, 2.0])
def test_the_exponent_of_a_power_law(power: float) -> None:
    assert exponent(NS, [7 * n**power for n in NS]) == pytest.approx(power)


def test_a_flat_cost_per_box_is_called_flat_and_a_quadratic_one_is_not() -> None:
    assert fit(NS, [6.1, 6.0, 6.05]).describe("CPU s per box") == "CPU s per box: flat"
    assert "faster than N" in fit(NS, [n * n for n in NS]).describe()
    assert fit(NS, [10.0, 5.0, 2.0]).describe().startswith("falling")


def test_a_nonpositive_figure_has_no_exponent() -> None:
    assert math.isnan(exponent(NS, [0.0, 1.0, 2.0]))


def test_change_compares_two_measured_sizes() -> None:
    assert change(NS, [1.0, 2.0, 2.2], 1000.0, 5000.0) == pytest.approx(1.1)


@pytest.mark.parametrize("xs,ys", [([1.0], [1.0]), ([5.0, 5.0], [1.0, 2.0]), ([1.0, 2.0], [1.0])])
def test_too_few_points_are_refused(xs: list[float], ys: list[float]) -> None:
    with pytest.raises(ValueError):
        linear(xs, ys)
