"""When preflight reads the unanswered boxes itself: only once answers stop (a pure
decision)."""

from __future__ import annotations

from orchestrator.preflight import LOOK_EVERY, next_look


def test_no_answer_yet_looks_every_interval() -> None:
    assert next_look(looked=100.0, heard=100.0, every=LOOK_EVERY) == 100.0 + LOOK_EVERY


def test_answers_still_coming_put_the_look_off() -> None:
    # The last answer came 0.1 s ago: the next look waits for LOOK_EVERY of quiet.
    assert next_look(looked=100.0, heard=100.9, every=LOOK_EVERY) == 100.9 + LOOK_EVERY


def test_a_steady_flow_puts_every_look_off_until_it_stops() -> None:
    # Answers every 0.1 s for a minute: no look (5,000 boxes read 3.5 times each when this
    # looked every GONE_AFTER); a dead box cannot end preflight before the others answered.
    assert next_look(looked=100.0, heard=160.0, every=LOOK_EVERY) == 160.0 + LOOK_EVERY


def test_a_slow_look_pace_for_many_boxes_is_kept() -> None:
    # 8,000 boxes waiting at LOOK_RATE 1,000 a second: every 8 s at most, and only in quiet.
    assert next_look(looked=100.0, heard=90.0, every=8.0) == 108.0
    assert next_look(looked=100.0, heard=107.9, every=8.0) == 107.9 + LOOK_EVERY
