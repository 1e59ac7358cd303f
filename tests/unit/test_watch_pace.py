"""The watch's pace: reads that stay proportional to the boxes, ticks a few a second."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from orchestrator.watch import (
    GATHER_EVENTS,
    GATHER_MAX,
    GATHER_MIN,
    gather_pause,
    still_gathers,
    tick_every,
)

pytestmark = pytest.mark.unit


def test_a_read_gathers_about_the_same_number_of_events_at_any_pace() -> None:
    # 400 events a second, or 100: each next read waits to gather GATHER_EVENTS of them.
    fast, slow = gather_pause(40, 0.1), gather_pause(10, 0.1)
    assert fast * 400 == pytest.approx(GATHER_EVENTS)
    assert slow * 100 == pytest.approx(GATHER_EVENTS)
    assert slow > fast


def test_the_pause_is_bounded_both_ways() -> None:
    assert gather_pause(10_000, 0.01) == GATHER_MIN  # a flood: still no read per event
    assert gather_pause(1, 30.0) == GATHER_MAX  # a trickle: an event is shown within this
    assert gather_pause(0, 1.0) == GATHER_MIN


@pytest.mark.parametrize(
    ("lease", "slot", "interval", "expected"),
    [
        (60.0, 30.0, 0.2, 1.0),  # the product's TTLs: one tick a second
        (5.0, 5.0, 0.2, 0.5),  # short TTLs: a tenth of the shorter
        (5.0, 1.0, 0.2, 0.2),  # never below the configured interval
        (60.0, 30.0, 2.0, 2.0),
    ],
)
def test_ticks_follow_the_ttls_not_the_read_interval(
    lease: float, slot: float, interval: float, expected: float
) -> None:
    engine = SimpleNamespace(lease_ttl=lease, slot_ttl=slot)
    assert tick_every(engine, interval) == pytest.approx(expected)  # type: ignore[arg-type]


def test_reads_stop_gathering_for_the_last_box_so_the_end_is_never_held_back() -> None:
    assert still_gathers(planned=3, finishing=0)
    assert still_gathers(planned=3, finishing=1)
    assert not still_gathers(planned=3, finishing=2)  # the last box's turn: read as they come
    assert not still_gathers(planned=1, finishing=0)  # a one-box rollout never waits
    assert still_gathers(planned=5000, finishing=4998)
    assert not still_gathers(planned=5000, finishing=5000)
