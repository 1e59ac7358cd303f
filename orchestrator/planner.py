"""The rollout planner: a pure function of (fleet, policy) -> plan. No I/O."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from orchestrator.errors import ConfigError
from schemas.rollout import Plan, Policy

_COUNT = re.compile(r"^\s*([0-9]+)\s*(%?)\s*$")


def resolve_count(text: str, total: int, *, what: str, minimum: int = 1) -> int:
    """'3' -> 3, '25%' of 10 -> 3 (rounded up), never below `minimum`, never above `total`."""
    m = _COUNT.match(str(text))
    if not m:
        raise ConfigError(f"--{what} {text!r}: write a number of boxes (3) or a percentage (25%)")
    value, percent = int(m.group(1)), m.group(2) == "%"
    if percent and value > 100:
        raise ConfigError(f"--{what} {text!r}: a percentage is at most 100%")
    count = math.ceil(total * value / 100) if percent else value
    return max(minimum, min(count, total)) if total else 0


def make_plan(boxes: Sequence[str], policy: Policy) -> Plan:
    """Boxes in a stable order (by id), the canary wave first."""
    ordered = sorted(set(boxes))
    total = len(ordered)
    # `--canary 0` means no barrier wave at all; any other count is at least one box.
    no_canary = policy.canary.strip() in ("0", "0%")
    return Plan(
        boxes=ordered,
        canary=0 if no_canary else resolve_count(policy.canary, total, what="canary"),
        batch=max(1, resolve_count(policy.batch, total, what="batch")),
        max_failed=resolve_count(policy.max_failed, total, what="max-failed", minimum=0),
        on_failure=policy.on_failure,
    )
