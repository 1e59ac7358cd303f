"""`rollout --bake`: the options of a gated bake after the canary wave, parsed."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import click

from orchestrator.cli_args import Number, Whole
from orchestrator.errors import ConfigError
from schemas.durations import MAX_SAID, MAX_SECONDS
from schemas.fleet import FleetSettings
from schemas.refs import shown
from schemas.rollout import Bake, alarm_problem

_DURATION = re.compile(r"^(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+(?:\.[0-9]+)?)s?)?$")


def parse_duration(text: str) -> float:
    """`2m`, `90s`, `90`, `1m30s`, `1h` -> seconds, at most MAX_SECONDS."""
    m = _DURATION.match(text.strip())
    if not text.strip() or m is None or not any(m.groups()):
        raise ConfigError(f"--bake {shown(text, 40)}: write a duration like 90s, 2m or 1m30s")
    # Decimal: 400 nines are a number to compare, not a float overflow (or infinity).
    h, mi, sec = (Decimal(g or 0) for g in m.groups())
    seconds = h * 3600 + mi * 60 + sec
    if seconds > MAX_SECONDS:
        raise ConfigError(f"--bake {shown(text, 40)}: a bake lasts {MAX_SAID}; write e.g. 30m")
    return float(seconds)


BAKE_OPTIONS = [
    click.option("--bake", "bake", default=None, metavar="DURATION",
                 help="After the canary wave, bake this long (90s, 2m; at most 24h) and go on "
                 "only if every gate passes: the canary's error rate in HAProxy, and --alarm."),
    click.option("--alarm", "alarms", multiple=True, metavar="NAME",
                 help="A CloudWatch alarm (repeatable): in ALARM during the bake, it halts "
                 "the rollout (and rolls back per --on-failure)."),
    click.option("--error-margin", default=None, type=Number(),
                 help="The canary's error rate (5xx and response errors) may exceed the "
                 "rest of the fleet's by this fraction (with --bake; default 0.05)."),
    click.option("--bake-min-requests", default=None, type=Whole(),
                 help="Canary responses needed before its error rate is judged (with --bake; "
                 "1-1000000, default 20)."),
    click.option("--bake-each-wave", is_flag=True,
                 help="Bake after every wave, not only the canary's: each wave then waits "
                 "for the one before it, and its boxes are the ones judged."),
]


def bake_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(BAKE_OPTIONS):
        f = option(f)
    return f


def make_bake(bake: str | None, alarms: tuple[str, ...], error_margin: float | None,
              min_requests: int | None, each_wave: bool = False) -> Bake | None:
    if bake is None:
        # Given without a bake, they would do nothing: said, not ignored.
        if alarms or each_wave or error_margin is not None or min_requests is not None:
            raise ConfigError("--alarm, --bake-each-wave, --error-margin and --bake-min-requests "
                              "need a bake: add --bake DURATION")
        return None
    error_margin = 0.05 if error_margin is None else error_margin
    min_requests = 20 if min_requests is None else min_requests
    for name in alarms:
        if why := alarm_problem(name):
            raise ConfigError(f"--alarm: {why}")
    if not 0 <= error_margin <= 1:
        raise ConfigError(f"--error-margin {error_margin}: a fraction from 0 to 1, e.g. 0.05")
    if not 1 <= min_requests <= 1_000_000:
        raise ConfigError(f"--bake-min-requests {min_requests}: from 1 to 1000000")
    seconds = parse_duration(bake)
    if seconds <= 0:
        raise ConfigError(f"--bake {bake!r}: a duration above zero")
    return Bake(seconds=seconds, alarms=list(alarms), error_margin=error_margin,
                min_requests=min_requests, each_wave=each_wave)


def with_fleet_alarms(bake: Bake | None, fleet: FleetSettings | None, box_type: str) -> Bake | None:
    """fleet.yml's `alarms:` of the box type join --alarm, for a rollout that bakes."""
    named = (fleet.alarms.get(box_type, []) if fleet else [])
    if bake is None or not named:
        return bake
    return bake.model_copy(update={"alarms": sorted({*bake.alarms, *named})})
