"""The fill against real Redis: exactly one successor, canary barrier, budget, one end."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from orchestrator.engine.celery_app import make_celery
from orchestrator.engine.lease import Lease
from orchestrator.engine.redisconn import connect
from orchestrator.engine.rollouts import Rollouts
from schemas.contract import Keys
from schemas.rollout import Plan, Rollout, RolloutState
from tests.harness.redis_fx import ProductRedis


class NoLaunch(Rollouts):
    """The real engine, but started boxes are recorded instead of enqueued."""

    launched: list[str]

    def launch(self, rollout: Rollout, box_id: str) -> None:
        self.launched.append(box_id)


@pytest.fixture
def engine(product_redis: ProductRedis, broker_url: str) -> Iterator[NoLaunch]:
    client = connect(product_redis.url)
    app = make_celery(broker_url)
    e = NoLaunch(client, Keys(product_redis.prefix), app, lease_ttl=30, slot_ttl=30)
    e.launched = []
    yield e
    app.close()
    client.close()


def rollout(boxes: list[str], canary: int = 1, batch: int = 2, max_failed: int = 0) -> Rollout:
    return Rollout(id=f"r{time.time_ns()}", box_type="web", release_id="rel", release_hash="h",
                   plan=Plan(boxes=boxes, canary=canary, batch=batch, max_failed=max_failed),
                   created_at=time.time())


def start(engine: NoLaunch, r: Rollout) -> None:
    assert engine.lease.acquire("web", r.id, 30) is None
    engine.create(r)
    engine.advance(r)


def test_canary_is_a_barrier_then_the_window_is_the_batch(engine: NoLaunch) -> None:
    r = rollout(["b1", "b2", "b3", "b4", "b5"], canary=1, batch=2)
    start(engine, r)
    assert engine.launched == ["b1"]
    engine.advance(r, "b1", "ok")
    assert engine.launched == ["b1", "b2", "b3"]
    engine.advance(r, "b2", "ok")
    assert engine.launched[-1] == "b4" and len(engine.inflight(r.id)) == 2


def test_a_redelivered_finish_starts_no_second_successor(engine: NoLaunch) -> None:
    r = rollout(["b1", "b2", "b3"], canary=1, batch=1)
    start(engine, r)
    first = engine.advance(r, "b1", "ok")
    again = engine.advance(r, "b1", "ok")  # the same finish, delivered twice
    assert first.started == ["b2"] and again.kind == "dup" and again.started == []
    assert engine.launched == ["b1", "b2"]


def test_failure_beyond_budget_halts_and_ends_once(engine: NoLaunch) -> None:
    r = rollout(["b1", "b2", "b3"], canary=1, batch=1)
    start(engine, r)
    engine.advance(r, "b1", "failed")
    assert engine.launched == ["b1"]  # nothing more starts
    st = engine.status(r.id)
    assert st["state"] == "halted" and st["ended"], st
    assert "b1 failed" in st["halt_reason"]
    assert engine.end(r) is None  # a second caller does not run the end again
    assert Lease(engine.client, engine.keys).holder("web") == (None, None)


def test_success_sets_current_release_and_frees_the_lease(engine: NoLaunch) -> None:
    r = rollout(["b1", "b2"], canary=1, batch=2)
    start(engine, r)
    engine.advance(r, "b1", "ok")
    engine.advance(r, "b2", "ok")
    assert engine.state(r.id) == "succeeded"
    assert engine.client.get(engine.keys.current("web")) == b"rel"
    assert engine.lease.holder("web") == (None, None)


def test_a_stale_claim_is_refused(engine: NoLaunch) -> None:
    r = rollout(["b1"], canary=1, batch=1)
    start(engine, r)
    got = engine.lease.claim("web", r.id, "b1")
    assert got.ok and got.token.endswith(".1")
    assert engine.lease.claim("web", r.id, "b1").token == got.token  # a duplicate: same token
    assert not engine.lease.claim("web", "someone-else", "b1").ok
    engine.states.move(r.id, RolloutState.PAUSED, only_from=frozenset({RolloutState.RUNNING}))
    refused = engine.lease.claim("web", r.id, "b2")
    assert not refused.ok and "paused" in refused.reason


def test_dead_box_is_reaped_and_halts(engine: NoLaunch) -> None:
    r = rollout(["b1", "b2"], canary=1, batch=1)
    start(engine, r)
    engine.client.delete(engine.keys.slot(r.id, "b1"))  # its worker died: nothing renews it
    assert engine.reap_dead("web") == ["b1"]
    st = engine.status(r.id)
    assert st["state"] == "halted" and "b1 dead" in st["halt_reason"]


def test_resume_tries_a_dead_box_again(engine: NoLaunch) -> None:
    """A box counted dead (its chain message lost in a failover, its worker killed) is tried
    again by resume, as README says: it was left out, and the resumed rollout ended failed."""
    r = rollout(["b1", "b2"], canary=1, batch=1)
    start(engine, r)
    engine.client.delete(engine.keys.slot(r.id, "b1"))
    assert engine.reap_dead("web") == ["b1"]
    engine.states.resume(r.id, "web")
    assert engine.retry_failed(r) == ["b1"]
    st = engine.status(r.id)
    assert st["n_failed"] == "0" and "halt_reason" not in st
    assert engine.client.lrange(engine.keys.rollout_part(r.id, "pending"), 0, 0) == [b"b1"]
    engine.advance(r)  # b1 goes again first; then b2 (canary 1, batch 1)
    engine.advance(r, "b1", "ok")
    engine.advance(r, "b2", "ok")
    assert engine.state(r.id) == "succeeded"


def test_a_rollout_nothing_advances_is_marked_abandoned(engine: NoLaunch) -> None:
    r = rollout(["b1"], canary=1, batch=1)
    assert engine.lease.acquire("web", r.id, 0.3) is None  # a short lease nobody renews
    engine.create(r)
    assert engine.abandon_if_stale("web") is None  # still held: not abandoned
    from tests.harness.common import wait_for

    wait_for(lambda: engine.lease.holder("web")[0] is None, "the lease to expire")
    assert engine.abandon_if_stale("web") == r.id
    st = engine.status(r.id)
    assert st["state"] == "abandoned" and "lease expired" in st["halt_reason"]
