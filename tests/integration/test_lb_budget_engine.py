"""The load balancer budget against real Redis: reserve all-or-none, a full balancer defers the
box back to pending, a release wakes the waiting rollout of another box type (whether it comes
before or after the deferred box's finish), and a dead holder's place is given back."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from orchestrator.engine.celery_app import make_celery
from orchestrator.engine.redisconn import connect
from schemas.contract import Keys
from schemas.rollout import Plan, Rollout
from tests.harness.redis_fx import ProductRedis
from tests.integration.test_rollout_engine import NoLaunch

LB = "haproxy:/run/h.sock#web"


@pytest.fixture
def engine(product_redis: ProductRedis, broker_url: str) -> Iterator[NoLaunch]:
    client = connect(product_redis.url)
    app = make_celery(broker_url)
    e = NoLaunch(client, Keys(product_redis.prefix), app, lease_ttl=30, slot_ttl=30)
    e.launched = []
    e.budgets.publish({LB: 1})
    yield e
    app.close()
    client.close()


def started(engine: NoLaunch, box_type: str, boxes: list[str]) -> tuple[Rollout, dict[str, str]]:
    """A running rollout of `box_type`, its first box in flight and claimed: box -> token."""
    r = Rollout(id=f"{box_type}-{time.time_ns()}", box_type=box_type, release_id="rel",
                release_hash="h", plan=Plan(boxes=boxes, canary=1, batch=1, max_failed=0),
                created_at=time.time())
    assert engine.lease.acquire(box_type, r.id, 30) is None
    engine.create(r)
    engine.advance(r)
    tokens = {b: engine.lease.claim(box_type, r.id, b).token for b in engine.inflight(r.id)}
    return r, tokens


def budget_events(engine: NoLaunch, *types: str) -> list[tuple[str, str]]:
    rows = [(sid, e) for t in types for sid, e in engine.events.read(t)
            if e.get("step") == "lb_budget"]
    rows.sort(key=lambda x: int(x[1]["seq"]))  # the load balancer's own order
    return [(e["box"], e["outcome"]) for _, e in rows]


def test_a_full_balancer_defers_and_the_other_types_release_fills_again(
    engine: NoLaunch,
) -> None:
    ra, ta = started(engine, "web", ["a1", "a2"])
    rb, tb = started(engine, "api", ["b1", "b2"])
    assert engine.launched == ["a1", "b1"]
    assert engine.budgets.reserve("a1", "web", ra.id, ta["a1"], [LB]).ok
    full = engine.budgets.reserve("b1", "api", rb.id, tb["b1"], [LB])
    assert not full.ok and "1/1 out (a1)" in full.reason
    # b1's chain ends without leaving: back to the front of pending, and nothing starts.
    fill = engine.advance(rb, "b1", "deferred")
    assert fill.kind == "fill" and fill.started == [] and engine.inflight(rb.id) == []
    assert engine.done(rb.id) == {} and engine.status(rb.id)["scheduled"] == "0"
    # a1 rejoins (any box type): its place is free and api's rollout fills again.
    woken = engine.budgets.release("a1")
    assert woken == [rb.id]
    engine.wake(woken)
    assert engine.launched == ["a1", "b1", "b1"]
    assert engine.budgets.reserve("b1", "api", rb.id, tb["b1"], [LB]).ok
    assert budget_events(engine, "web", "api") == [
        ("a1", "reserved"), ("b1", "full"), ("a1", "released"), ("b1", "reserved")]
    assert engine.budgets.holders(LB) == {"b1": f"{rb.id} {tb['b1']} api"}


def test_a_release_before_the_deferred_finish_is_not_lost(engine: NoLaunch) -> None:
    ra, ta = started(engine, "web", ["a1"])
    rb, tb = started(engine, "api", ["b1"])
    assert engine.budgets.reserve("a1", "web", ra.id, ta["a1"], [LB]).ok
    assert not engine.budgets.reserve("b1", "api", rb.id, tb["b1"], [LB]).ok
    engine.wake(engine.budgets.release("a1"))  # b1 is still in flight: nothing starts yet
    assert engine.launched == ["a1", "b1"]
    fill = engine.advance(rb, "b1", "deferred")
    assert fill.started == ["b1"]  # the wake was kept for it


def test_a_dead_or_revoked_holder_gives_its_place_back(engine: NoLaunch) -> None:
    ra, ta = started(engine, "web", ["a1"])
    rb, tb = started(engine, "api", ["b1"])
    assert engine.budgets.reserve("a1", "web", ra.id, ta["a1"], [LB]).ok
    engine.lease.revoke("a1", ra.id)  # counted dead: its token is gone
    assert engine.budgets.reserve("b1", "api", rb.id, tb["b1"], [LB]).ok
    assert ("a1", "released") in budget_events(engine, "web")
    # And a holder whose slot expired (reaped) is no holder either.
    engine.budgets.release("b1")
    assert engine.budgets.reserve("b1", "api", rb.id, tb["b1"], [LB]).ok
    engine.client.delete(engine.keys.slot(rb.id, "b1"))
    rc, tc = started(engine, "db", ["c1"])
    assert engine.budgets.reserve("c1", "db", rc.id, tc["c1"], [LB]).ok


def test_no_budget_no_limit_and_a_chain_without_slot_is_not_budgeted(engine: NoLaunch) -> None:
    ra, ta = started(engine, "web", ["a1"])
    rb, tb = started(engine, "api", ["b1"])
    other = "elb:not-budgeted"
    assert engine.budgets.reserve("a1", "web", ra.id, ta["a1"], [other]).ok
    assert engine.budgets.reserve("b1", "api", rb.id, tb["b1"], [other]).ok
    assert engine.budgets.holders(other) == {}
    assert engine.budgets.reserve("x1", "web", "boot-x1", "t.1", [LB]).ok  # no slot: boot
    assert engine.budgets.holders(LB) == {}
    engine.budgets.publish({})
    assert engine.budgets.limits() == {}
