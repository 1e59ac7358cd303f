"""The rollout state machine against real Redis: every move of the table, Lua ones included."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest

from orchestrator.engine.celery_app import make_celery
from orchestrator.engine.redisconn import connect
from orchestrator.engine.rollouts import Rollouts
from orchestrator.engine.state import ENDS, MOVES, MOVING, NEW, RolloutStates, allowed
from orchestrator.errors import IllegalTransition
from schemas.contract import Keys
from schemas.rollout import Plan, Rollout, RolloutState
from tests.harness.redis_fx import ProductRedis

S = RolloutState
SOURCES = [NEW, *[s.value for s in RolloutState]]


class NoLaunch(Rollouts):
    def launch(self, rollout: Rollout, box_id: str) -> None:
        pass


@pytest.fixture
def engine(product_redis: ProductRedis, broker_url: str) -> Iterator[NoLaunch]:
    client = connect(product_redis.url)
    app = make_celery(broker_url)
    yield NoLaunch(client, Keys(product_redis.prefix), app, lease_ttl=30, slot_ttl=30)
    app.close()
    client.close()


def in_state(engine: Rollouts, state: str, **fields: object) -> str:
    """A rollout record in `state` ('' = not recorded), set up by hand for the test."""
    rid = f"r{time.time_ns()}"
    if state:
        mapping = {"state": state, "box_type": "web", "canary": 0, "batch": 1, "max_failed": 0,
                   "scheduled": 0, "n_ok": 0, "n_failed": 0, "n_cancelled": 0, **fields}
        engine.client.hset(engine.keys.rollout(rid), mapping=mapping)  # type: ignore[arg-type]
    return rid


def rollout(rid: str, boxes: list[str], on_failure: str = "halt") -> Rollout:
    return Rollout(id=rid, box_type="web", release_id="rel", release_hash="h",
                   plan=Plan(boxes=boxes, canary=0, batch=1, max_failed=0,
                             on_failure=on_failure),  # type: ignore[arg-type]
                   created_at=time.time())


MOVE_PAIRS = [(to, frm) for to, sources in MOVES.items() for frm in sorted(sources)]
ILLEGAL = [(to, frm) for to, frm in itertools.product(RolloutState, SOURCES)
           if not allowed(to, frm) and to.value != frm]


def ids(pairs: list[tuple[RolloutState, str]]) -> list[str]:
    return [f"{frm or 'new'}->{to}" for to, frm in pairs]


@pytest.mark.parametrize(("to", "frm"), MOVE_PAIRS, ids=ids(MOVE_PAIRS))
def test_every_allowed_move(engine: Rollouts, to: RolloutState, frm: str) -> None:
    rid = in_state(engine, frm)
    before = engine.states.move(rid, to, only_from=frozenset({frm}), fields={"why": "test"})
    assert before == frm
    assert engine.states.state(rid) == to
    assert engine.status(rid)["why"] == "test"


@pytest.mark.parametrize(("to", "frm"), ILLEGAL, ids=ids(ILLEGAL))
def test_every_other_move_raises_and_changes_nothing(
    engine: Rollouts, to: RolloutState, frm: str
) -> None:
    rid = in_state(engine, frm)
    with pytest.raises(IllegalTransition, match=f"cannot become {to.value}"):
        engine.states.move(rid, to, fields={"why": "test"})
    assert engine.states.state(rid) == frm
    assert "why" not in engine.status(rid)


def test_a_narrower_source_set_must_come_from_the_table(engine: Rollouts) -> None:
    with pytest.raises(ValueError, match="not in MOVES"):
        engine.states.move(in_state(engine, "running"), S.PAUSED, only_from=frozenset({S.HALTED}))


def test_every_end_is_a_move_of_the_table_or_keeps_the_state() -> None:
    ends = [*ENDS.items(), (S.HALTED, S.ROLLBACK_PENDING), (S.RUNNING, S.FAILED)]
    assert all(allowed(to, frm) or to == frm for frm, to in ends)


# --- the Lua moves ----------------------------------------------------------------------

@pytest.mark.parametrize("state", SOURCES[1:])
def test_the_fill_halts_only_a_moving_rollout(engine: Rollouts, state: str) -> None:
    rid = in_state(engine, state)
    engine.fill(rollout(rid, ["b1"]), "b1", "failed", "boom")
    expected = S.HALTED if state in MOVING else state
    assert engine.states.state(rid) == expected


@pytest.mark.parametrize(
    ("state", "failed", "on_failure", "final"),
    [
        (S.RUNNING, 0, "halt", S.SUCCEEDED),
        (S.RUNNING, 1, "continue", S.FAILED),
        (S.HALTED, 1, "halt", S.HALTED),
        (S.HALTED, 1, "rollback", S.ROLLBACK_PENDING),
        (S.ABORTED, 0, "halt", S.ABORTED),
    ],
)
def test_the_end_moves_once(
    engine: Rollouts, state: S, failed: int, on_failure: str, final: S
) -> None:
    rid = in_state(engine, state, n_failed=failed)
    assert engine.end(rollout(rid, [], on_failure)) == final
    assert engine.states.state(rid) == final and engine.status(rid)["ended"]
    assert engine.end(rollout(rid, [], on_failure)) is None  # exactly one caller ends it


@pytest.mark.parametrize("state", [S.PREFLIGHT, S.PAUSED])
def test_states_that_do_not_end(engine: Rollouts, state: S) -> None:
    rid = in_state(engine, state)
    assert engine.states.end(rid, S.HALTED) == (False, state)
    assert "ended" not in engine.status(rid)


@pytest.mark.parametrize("state", SOURCES[1:])
def test_a_box_is_claimed_only_while_the_rollout_moves(engine: Rollouts, state: str) -> None:
    rid = in_state(engine, state)
    assert engine.lease.acquire("web", rid, 30) is None
    try:
        claim = engine.lease.claim("web", rid, "b1")
        assert claim.ok == (state in MOVING), claim
    finally:
        engine.lease.release("web", rid)


def test_the_machine_owns_active_current_and_ids(engine: Rollouts) -> None:
    states: RolloutStates = engine.states
    rid = in_state(engine, NEW)
    states.open(rid, "web", "why")
    engine.create(rollout(rid, ["b1"]))
    assert states.active("web") == rid and states.state(rid) == S.RUNNING
    states.move(rid, S.HALTED)
    states.resume(rid, "web")
    assert states.state(rid) == S.RUNNING
    states.set_current("web", "rel")
    assert states.current("web") == "rel"
    assert engine.end(rollout(rid, ["b1"])) == S.SUCCEEDED
    assert states.active("web") is None


def test_a_refused_preflight_ends_failed_with_its_reason(engine: Rollouts) -> None:
    rid = in_state(engine, NEW)
    engine.states.open(rid, "web", "why")
    assert engine.states.refuse(rid, "PreflightFailed: b1: no disk")
    st = engine.status(rid)
    assert st["state"] == S.FAILED and st["ended"] and "no disk" in st["halt_reason"]
    assert not engine.states.refuse(rid, "again")  # only from preflight


def test_a_box_that_never_started_ends_the_rollout_halted_and_resume_starts_it(
    engine: Rollouts,
) -> None:
    """A refused claim (the lease lost, or a pause first) is not a success: the release must
    not become current while a box never ran it; resume puts the box back in the queue."""
    states: RolloutStates = engine.states
    rid = in_state(engine, NEW)
    states.open(rid, "web", "why")
    r = rollout(rid, ["b1", "b2"])
    engine.create(r)
    engine.client.delete(engine.keys.rollout_part(rid, "pending"))
    engine.client.sadd(engine.keys.rollout_part(rid, "inflight"), "b1", "b2")
    engine.advance(r, "b1", "ok")
    engine.advance(r, "b2", "cancelled")
    assert states.state(rid) == S.HALTED
    assert "1 box(es) never started" in engine.status(rid)["halt_reason"]
    assert states.current("web") is None  # nothing promoted
    states.resume(rid, "web")
    assert engine.retry_failed(r) == ["b2"]
    assert engine.client.lrange(engine.keys.rollout_part(rid, "pending"), 0, -1) == [b"b2"]
    assert engine.status(rid)["n_cancelled"] == "0" and "halt_reason" not in engine.status(rid)
