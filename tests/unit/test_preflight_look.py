"""When preflight reads the unanswered boxes itself: only once answers stop, or every
GONE_AFTER while they come (a pure decision)."""

from __future__ import annotations

from orchestrator.engine.fleet import GONE_AFTER
from orchestrator.preflight import LOOK_EVERY, next_look


def test_no_answer_yet_looks_every_interval() -> None:
    assert next_look(looked=100.0, heard=100.0, every=LOOK_EVERY) == 100.0 + LOOK_EVERY


def test_answers_still_coming_put_the_look_off() -> None:
    # The last answer came 0.1 s ago: the next look waits for LOOK_EVERY of quiet.
    assert next_look(looked=100.0, heard=100.9, every=LOOK_EVERY) == 100.9 + LOOK_EVERY


def test_a_steady_flow_still_looks_every_gone_after() -> None:
    # Answers every 0.1 s for a minute: a dead box's missing heartbeat is still read.
    assert next_look(looked=100.0, heard=160.0, every=LOOK_EVERY) == 100.0 + GONE_AFTER


def test_a_slow_look_pace_for_many_boxes_is_kept() -> None:
    # 8,000 boxes waiting at LOOK_RATE 1,000 a second: every 8 s, quiet or not.
    assert next_look(looked=100.0, heard=90.0, every=8.0) == 108.0
    assert next_look(looked=100.0, heard=107.9, every=8.0) == 108.0
