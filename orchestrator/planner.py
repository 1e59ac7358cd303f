"""The rollout planner: a pure function of (release, fleet facts, policy) -> plan. No I/O."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from orchestrator.errors import ConfigError
from schemas.depgraph import dependents, start_order
from schemas.release import Release
from schemas.rollout import Plan, Policy

_COUNT = re.compile(r"^\s*(\d+)\s*(%?)\s*$")


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


def box_changes(release: Release, running: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """(apps to swap, apps whose load balancer the box leaves), both in start order.

    `running` maps app -> spec hash as the box reports it. A changed app's dependents leave
    their load balancer too: swapping mongos under a serving gcweb breaks its requests.
    """
    graph = {a: s.depends for a, s in release.spec.apps.items()}
    order = start_order(graph)
    changed = {a for a in order if running.get(a) != release.spec_hash(a)}
    affected = dependents(graph, changed)
    lb = [a for a in order if a in affected and release.spec.apps[a].elb]
    return [a for a in order if a in changed], lb
