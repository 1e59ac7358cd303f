"""The capacity guard: a box never leaves if too few healthy members would remain. Pure."""

from __future__ import annotations

import math

from orchestrator.engine.lb.base import MemberState


def required_healthy(min_healthy: str, total: int) -> int:
    """'2' -> 2; '50%' of 5 -> 3 (rounded up, the safe side)."""
    text = min_healthy.strip()
    if text.endswith("%"):
        return math.ceil(total * int(text[:-1]) / 100)
    return int(text)


def refusal(members: list[MemberState], member: str, min_healthy: str) -> str | None:
    """Why `member` must not leave now, or None when enough healthy members remain."""
    required = required_healthy(min_healthy, len(members))
    if required <= 0:
        return None
    remaining = sum(1 for m in members if m.in_service and m.member != member)
    if remaining >= required:
        return None
    return (
        f"capacity guard: leaving would leave {remaining} healthy of {len(members)} "
        f"registered (minimum {min_healthy}"
        + (f" = {required}" if min_healthy.strip().endswith("%") else "")
        + "); the box stays in service. Add capacity, lower min_healthy, then "
        "`orchestrator resume`"
    )
