"""The capacity guard, table-tested: members in, refusal (or none) out."""

from __future__ import annotations

import pytest

from orchestrator.engine.lb.base import MemberState
from worker.capacity import refusal, required_healthy


def members(*states: bool) -> list[MemberState]:
    return [MemberState(f"b{i + 1}", ok, "x") for i, ok in enumerate(states)]


@pytest.mark.parametrize(("text", "total", "want"), [
    ("1", 3, 1), ("0", 3, 0), ("50%", 5, 3), ("100%", 2, 2), ("0%", 4, 0), ("34%", 3, 2)])
def test_required_healthy(text: str, total: int, want: int) -> None:
    assert required_healthy(text, total) == want


@pytest.mark.parametrize(("case", "fleet", "leaving", "minimum", "refused"), [
    ("last healthy box of a 1-box type", members(True), "b1", "1", True),
    ("one of three, minimum one", members(True, True, True), "b1", "1", False),
    ("two already unhealthy", members(True, False, False), "b1", "1", True),
    ("an unhealthy box may always leave", members(True, False), "b2", "1", False),
    ("percentage: 3 of 4 must stay", members(True, True, True, True), "b1", "75%", False),
    ("percentage: would drop below", members(True, True, True, False), "b1", "75%", True),
    ("guard off", members(True), "b1", "0", False),
])
def test_refusal(case: str, fleet: list[MemberState], leaving: str, minimum: str,
                 refused: bool) -> None:
    said = refusal(fleet, leaving, minimum)
    assert (said is not None) is refused, said
    if said:
        assert "capacity guard" in said and "resume" in said
