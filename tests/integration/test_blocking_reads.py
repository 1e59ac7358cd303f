"""The coordinator waits on Redis, not on a clock: a preflight answer wakes its BLPOP, an event
wakes the watch's XREAD BLOCK, and a Redis lost during that wait only pauses the watcher."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import orchestrator.preflight as coordinator_preflight
from devstack.redis import RedisServer
from orchestrator.engine.celery_app import make_celery
from orchestrator.engine.events import Events
from orchestrator.engine.journal import Journal
from orchestrator.engine.redisconn import client_for
from orchestrator.engine.rollouts import Rollouts
from orchestrator.preflight import Answers
from orchestrator.watch import Feed, follow
from schemas.contract import Keys, Outcome, StepResult, TaskName
from tests.harness.common import started, wait_for
from tests.harness.redis_fx import ProductRedis
from worker.preflight import announce

pytestmark = pytest.mark.integration


def blocked_in(client: Any, command: str) -> bool:
    """Some connection is blocked in `command` now (CLIENT LIST: its flags say b)."""
    return any(c.get("cmd") == command and "b" in c.get("flags", "")
               for c in client.client_list())


def in_thread(fn: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def answer(client: Any, keys: Keys, rollout_id: str, box: str, reason: str) -> None:
    """What a box's preflight does at its end: journal its answer, then announce it."""
    now = time.time()
    Journal(client, keys).record(StepResult(
        step=TaskName.PREFLIGHT.value, rollout_id=rollout_id, box_id=box,
        outcome=Outcome.FAILED if reason else Outcome.OK, reason=reason,
        started=now, ended=now))
    announce(SimpleNamespace(keys=keys, redis=client), rollout_id, box)  # type: ignore[arg-type]


def test_preflight_answers_wake_the_coordinator_without_polling(
    product_redis: ProductRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, keys = client_for(product_redis.url), Keys(product_redis.prefix)
    observer = client_for(product_redis.url, decode_responses=True)
    # The journal is read again only once an hour: an answer seen comes from the wake-up.
    monkeypatch.setattr(coordinator_preflight, "LOOK_EVERY", 3600.0)

    def boxes_answer() -> None:
        wait_for(lambda: blocked_in(observer, "blpop"), "the coordinator in BLPOP", timeout=30)
        answer(client, keys, "r-1", "b1", "")
        wait_for(lambda: blocked_in(observer, "blpop"), "the coordinator in BLPOP again",
                 timeout=30)
        answer(client, keys, "r-1", "b2", "Docker does not answer")

    thread = in_thread(boxes_answer)
    got = Answers(client, keys, "r-1", "web", ["b1", "b2"]).wait(timeout=60)
    thread.join(10)
    assert got == {"b1": "", "b2": "Docker does not answer"}


def test_an_answer_whose_wake_up_was_lost_is_read_once_the_others_stop(
    product_redis: ProductRedis
) -> None:
    """One box journals its answer and its wake-up is lost; the others keep answering, each
    with its wake-up. The lost one is read by a look (journals read by the coordinator itself)
    after the answers stop, not one in every LOOK_EVERY while they come."""
    client, keys = client_for(product_redis.url), Keys(product_redis.prefix)
    others = [f"b{i:02d}" for i in range(30)]
    looks: list[list[str]] = []

    class Counting(Answers):
        def waiting(self) -> list[str]:  # called by a look only
            boxes = super().waiting()
            looks.append(boxes)
            return boxes

    def boxes_answer() -> None:
        now = time.time()
        Journal(client, keys).record(StepResult(  # journaled, never announced
            step=TaskName.PREFLIGHT.value, rollout_id="r-6", box_id="lost", outcome=Outcome.OK,
            started=now, ended=now))
        for box in others:  # one every 0.05 s for 1.5 s: never LOOK_EVERY of quiet
            time.sleep(0.05)
            answer(client, keys, "r-6", box, "")

    thread = in_thread(boxes_answer)
    got = Counting(client, keys, "r-6", "web", ["lost", *others]).wait(timeout=60)
    thread.join(10)
    assert got == {b: "" for b in ["lost", *others]}
    # The first look came after the answers stopped: it found only the lost one waiting.
    assert looks and looks[0] == ["lost"], looks[:3]


def test_a_worker_dead_while_the_others_answer_is_named_at_the_deadline(
    product_redis: ProductRedis
) -> None:
    """Answers come all along, so no look runs before the deadline; the deadline's own look
    names the box whose heartbeat is gone, and leaves a live box that never answered as
    unanswered."""
    client, keys = client_for(product_redis.url), Keys(product_redis.prefix)
    others = [f"b{i:02d}" for i in range(40)]
    for box in ["mute", *others]:
        client.set(keys.heartbeat(box), "{}", ex=60)  # "dead" has none

    def boxes_answer() -> None:
        for box in others:  # one every 0.05 s for 2 s: past the 1 s deadline, never quiet
            time.sleep(0.05)
            answer(client, keys, "r-7", box, "")

    thread = in_thread(boxes_answer)
    got = Answers(client, keys, "r-7", "web", ["dead", "mute", *others]).wait(timeout=1.0)
    thread.join(10)
    assert got.pop("dead").startswith("no live worker: "), got
    assert "mute" not in got
    assert got and set(got.values()) == {""}, got


def test_the_watch_sees_an_event_when_it_is_written_with_one_blocking_read(
    product_redis: ProductRedis, redis_server: RedisServer
) -> None:
    client, keys = client_for(product_redis.url), Keys(product_redis.prefix)
    observer = client_for(product_redis.url, decode_responses=True)
    events = Events(client, keys)
    rollout = SimpleNamespace(box_type="web", id="r-2", created_at=time.time(),
                              plan=SimpleNamespace(boxes=["b1"]))
    shown: list[dict[str, str]] = []
    feed = Feed(SimpleNamespace(events=events), rollout,  # type: ignore[arg-type]
                lambda sid, e: shown.append(e))

    def the_rollout_ends() -> None:
        wait_for(lambda: blocked_in(observer, "xread"), "the watch in XREAD", timeout=30)
        # Both at once (MULTI): one wake-up brings another rollout's event and this one's end.
        pipe = client.pipeline(transaction=True)
        pipe.xadd(keys.events("web"), {"rollout": "r-other", "step": "deploy.pull"})
        pipe.xadd(keys.events("web"), {"rollout": "r-2", "step": "rollout", "phase": "end"})
        pipe.execute()

    before = redis_server.commandstats()
    thread = in_thread(the_rollout_ends)
    ended = feed.drain(60.0)
    thread.join(10)
    used = redis_server.commandstats() - before
    # Woken by the events: one XREAD, no read of the stream by range (a poll's).
    assert used["xread"] == 1 and used["xrange"] == 0, used
    assert ended and [e["step"] for e in shown] == ["rollout"]


def test_redis_lost_while_the_watch_blocks_pauses_it_and_it_reattaches(tmp_path: Path) -> None:
    with started(RedisServer(tmp_path)) as server:
        url = f"{server.url}/1"
        client, keys = client_for(url), Keys("w:")
        observer = client_for(url, decode_responses=True)
        engine = Rollouts(client, keys, make_celery(f"{server.url}/0"))
        rollout = SimpleNamespace(box_type="web", id="r-3", created_at=time.time(),
                                  plan=SimpleNamespace(boxes=["b1"]))
        client.hset(keys.rollout("r-3"), "state", "running")
        err = io.StringIO()
        out: list[dict[str, str]] = []

        def watch() -> None:
            out.append(follow(engine, rollout, lambda sid, e: None,  # type: ignore[arg-type]
                              err, 0.2, None))

        thread = in_thread(watch)
        wait_for(lambda: blocked_in(observer, "xread"), "the watch in XREAD", timeout=30)
        server.stop()  # SIGTERM: the append-only file keeps the record for the re-attach
        wait_for(lambda: "lost Redis" in err.getvalue() or None, "the watcher pausing",
                 timeout=60)
        server.start()
        fresh = client_for(url)
        wait_for(lambda: "re-attached" in err.getvalue() or None, "the watcher re-attaching",
                 timeout=60)
        fresh.hset(keys.rollout("r-3"), mapping={"state": "succeeded", "ended": time.time()})
        Events(fresh, keys).emit("web", rollout="r-3", step="rollout", phase="end",
                                 outcome="succeeded")
        thread.join(30)
        assert out and out[0]["state"] == "succeeded", (out, err.getvalue())
        assert "Traceback" not in err.getvalue()
        for c in (client, observer, fresh):
            c.close()


def test_the_lease_outlives_a_preflight_longer_than_its_ttl(
    product_redis: ProductRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """5,000 boxes took longer to answer than the lease's TTL: every claim then found no lease."""
    from orchestrator.engine.lease import Lease

    client, keys = client_for(product_redis.url), Keys(product_redis.prefix)
    lease = Lease(client, keys)
    assert lease.acquire("web", "r-4", 1.0) is None
    monkeypatch.setattr(coordinator_preflight, "RENEW_EVERY", 0.2)
    client.set(keys.heartbeat("silent"), "{}", ex=60)  # alive, slow to answer
    got = Answers(client, keys, "r-4", "web", ["silent"]).wait(
        timeout=3.0, renew=lambda: lease.renew("web", "r-4", 1.0))
    assert got == {}  # nobody answered: the wait ran its whole timeout, three TTLs
    assert lease.holder("web")[0] == "r-4"


def test_a_start_keeps_its_lease_or_ends_before_any_box_starts(product_redis: ProductRedis) -> None:
    """A start slower than the lease's TTL between renewals (5,000 boxes on a loaded machine):
    an expired lease nobody took is taken again; one another rollout took ends this start,
    instead of a rollout whose every claim would be refused."""
    from orchestrator.coordinator import Coordinator
    from orchestrator.errors import LeaseHeld
    from orchestrator.settings import CoordinatorSettings

    client, keys = client_for(product_redis.url), Keys(product_redis.prefix)
    app = make_celery(product_redis.url)
    engine = Rollouts(client, keys, app, lease_ttl=30.0)
    c = Coordinator(CoordinatorSettings(), client, keys, app, engine)
    engine.states.open("r-5", "web", "test", "me")
    assert engine.lease.acquire("web", "r-5", 30.0) is None
    client.delete(keys.lease("web"))  # expired, nobody took it
    c.keep_lease("web", "r-5")
    assert engine.lease.holder("web")[0] == "r-5"
    client.delete(keys.lease("web"))
    assert engine.lease.acquire("web", "r-other", 30.0) is None  # another rollout took it
    with pytest.raises(LeaseHeld, match="lost the lease of web before any box started"):
        c.keep_lease("web", "r-5")
    assert engine.lease.holder("web")[0] == "r-other"
