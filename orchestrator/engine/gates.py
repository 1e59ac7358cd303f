"""A bake's gates, as pure verdicts: the canary's error rate against the fleet's, alarms."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# `show stat` response counters; a response error (eresp) is a failed request too.
RESPONSE_FIELDS = ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other",
                   "eresp")
ERROR_FIELDS = ("hrsp_5xx", "eresp")


@dataclass(frozen=True)
class Counts:
    responses: int = 0
    errors: int = 0

    def __sub__(self, other: Counts) -> Counts:
        return Counts(self.responses - other.responses, self.errors - other.errors)

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.responses + other.responses, self.errors + other.errors)

    @property
    def rate(self) -> float:
        return self.errors / self.responses if self.responses else 0.0


def _int(v: str | None) -> int:
    return int(v) if v and v.isdigit() else 0


def counts_from_stat(backend: str, rows: Iterable[Mapping[str, str]]) -> dict[str, Counts]:
    """`backend/server` -> its counters, from HAProxy's `show stat` server rows."""
    return {
        f"{backend}/{r.get('svname', '')}": Counts(
            sum(_int(r.get(f)) for f in RESPONSE_FIELDS),
            sum(_int(r.get(f)) for f in ERROR_FIELDS),
        )
        for r in rows
    }


def error_rate_verdict(
    base: Mapping[str, Counts],
    now: Mapping[str, Counts],
    canary: Iterable[str],
    margin: float,
    min_requests: int,
) -> tuple[bool | None, str]:
    """(False, why) when the canary's error rate since `base` exceeds the rest of the fleet's
    by more than `margin`; (True, …) when it does not; (None, …) until the canary has served
    `min_requests`. Servers are `backend/server`; a canary box is its server name."""
    boxes = set(canary)
    mine, rest = Counts(), Counts()
    for key, c in now.items():
        delta = c - base.get(key, Counts())
        if delta.responses < 0:  # HAProxy restarted: its counters began again
            delta = c
        if key.rpartition("/")[2] in boxes:
            mine += delta
        else:
            rest += delta
    said = (f"canary {mine.errors}/{mine.responses} errors ({mine.rate:.1%}), "
            f"fleet {rest.errors}/{rest.responses} ({rest.rate:.1%}), margin {margin:.1%}")
    if mine.responses < min_requests:
        return None, said
    return mine.rate <= rest.rate + margin, said


def alarm_verdict(states: Mapping[str, str], named: Iterable[str]) -> tuple[bool, str]:
    """(False, why) when any named alarm is in ALARM, or does not exist (a typo must not pass)."""
    wanted = list(named)
    firing = [a for a in wanted if states.get(a) == "ALARM"]
    unknown = [a for a in wanted if a not in states]
    if firing:
        return False, "alarm in ALARM: " + ", ".join(firing)
    if unknown:
        return False, "no such CloudWatch alarm: " + ", ".join(unknown)
    return True, f"{len(wanted)} alarm(s) not in ALARM"
