"""Catch-up and missing members: the pure decisions, table-tested without services."""

from __future__ import annotations

from dataclasses import replace

import pytest

from orchestrator.engine.fleet import forget_refusal, last_seen, missing_members
from worker.decide import CatchUpFacts, decide_catch_up

pytestmark = pytest.mark.unit

# A box on v1 that missed the rollout which made v2 current, everything else quiet.
BEHIND = CatchUpFacts(
    current="v2",
    behind=("web",),
    fresh=False,
    newer=None,
    made_current="web-r2",
    took_part=False,
    latest="web-r2",
    latest_state="succeeded",
    active=None,
    at_rest=True,
)
FRESH = replace(BEHIND, fresh=True, behind=("web", "api"))


@pytest.mark.parametrize(
    ("facts", "go", "why"),
    [
        (BEHIND, True, "missed web-r2"),
        (FRESH, True, "fresh box converges to current v2"),
        (replace(BEHIND, made_current=None), True, "missed the rollout that made it current"),
        # A fresh box waits like any other: never while a person must decide.
        *[
            (replace(f, latest="web-r3", latest_state=s), False, f"web-r3 is {s}")
            for f in (BEHIND, FRESH)
            for s in ("halted", "paused", "rollback-pending")
        ],
        (replace(BEHIND, latest="web-r3", latest_state="failed"), True, "missed"),
        (replace(BEHIND, latest="web-r3", latest_state="aborted"), True, "missed"),
        (replace(BEHIND, current=None), False, "no successful release"),
        (replace(BEHIND, active="web-r3"), False, "rollout web-r3 is running"),
        (replace(BEHIND, at_rest=False), False, "in the middle"),
        (replace(BEHIND, behind=()), False, ""),
        # Up to date: nothing to say, whatever else is going on.
        (replace(BEHIND, behind=(), active="web-r3", latest_state="halted"), False, ""),
        (replace(BEHIND, newer="v3"), False, "never downgraded"),
        (replace(BEHIND, took_part=True), False, "took part in web-r2"),
        (replace(FRESH, took_part=True), True, "fresh box"),
        (replace(BEHIND, refused="bad signature"), False, "not authorised: bad signature"),
        # A frozen type holds catch-up and boot convergence alike.
        *[(replace(f, frozen="frozen by ops@host 5s ago: incident 42"), False, "incident 42")
          for f in (BEHIND, FRESH)],
    ],
)
def test_catch_up_decision(facts: CatchUpFacts, go: bool, why: str) -> None:
    got, said = decide_catch_up(facts)
    assert got is go, said
    assert why in said if why else said == ""


def test_forget_refuses_an_unknown_box_and_a_live_one() -> None:
    assert "not a member of any box type" in forget_refusal("b9", [], None)
    live = forget_refusal("b1", ["web"], "web")
    assert "still heartbeats as web" in live and "stop its worker" in live
    assert forget_refusal("b1", ["web"], None) == ""


def test_missing_members_are_those_without_a_live_heartbeat() -> None:
    members = {"b1": 100.0, "b2": 200.0, "b3": 300.0}
    assert missing_members(members, {"b1", "b3", "b4"}) == {"b2": 200.0}
    assert missing_members({}, {"b1"}) == {}
    assert "last heartbeat 1970-01-01 00:03:20 UTC" in last_seen(200.0)
    assert last_seen(0.0) == "no heartbeat ever seen"


def test_a_note_from_before_a_rollout_is_dropped_while_it_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The heartbeat showed "its box type has no successful release yet" after the first
    release had landed on the box: the word from before it stood until the next look."""
    import worker.catchup
    from worker.main import catch_up_all

    words: dict[str, str | None] = {"b1": "its box type has no successful release yet",
                                    "b2": "held: its box type is frozen"}
    monkeypatch.setattr(worker.catchup, "catch_up", lambda _ctx, box, _type: words[box])
    notes: dict[str, str] = {}
    catch_up_all(None, ["b1", "b2"], "web", notes)  # type: ignore[arg-type]
    assert notes == words
    words["b1"] = None  # the first rollout runs on b1
    catch_up_all(None, ["b1", "b2"], "web", notes)  # type: ignore[arg-type]
    assert notes == {"b2": "held: its box type is frozen"}
    words["b1"] = ""  # it ended: up to date, nothing to say
    catch_up_all(None, ["b1", "b2"], "web", notes)  # type: ignore[arg-type]
    assert notes["b1"] == ""
