"""The task events a message sends for the steps it runs itself (worker/taskevents.py), on a
real Redis broker read by Celery's own event receiver: a step never waits on them (the broker
paused with SIGSTOP), and they reach monitors in order, each with the time it happened."""

from __future__ import annotations

import base64
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from devstack.redis import RedisServer
from tests.harness.common import started, wait_for
from worker.taskevents import EventSender

pytestmark = pytest.mark.integration

N = 40


def receive(app: Celery, got: list[dict[str, Any]], stop: threading.Event) -> None:
    """Celery's event receiver, until `stop` (seen within its 1 s drain timeout)."""
    with app.connection_for_read() as conn:
        receiver = app.events.Receiver(conn, handlers={"*": got.append})
        receiver.should_stop = False
        threading.Thread(target=lambda: (stop.wait(), setattr(receiver, "should_stop", True)),
                         daemon=True).start()
        for _ in receiver.itercapture(limit=None, timeout=None, wakeup=False):
            pass


def test_a_step_never_waits_on_its_events_and_they_keep_order_and_time(tmp_path: Path) -> None:
    with started(RedisServer(tmp_path / "broker")) as server:
        app = Celery(broker=f"{server.url}/0")
        got: list[dict[str, Any]] = []
        stop = threading.Event()
        reader = threading.Thread(target=receive, args=(app, got, stop), daemon=True)
        reader.start()
        with redis.Redis.from_url(f"{server.url}/0") as probe:
            wait_for(lambda: probe.pubsub_numpat() or probe.pubsub_channels(),
                     "Celery's event receiver subscribed", timeout=15)
        sender = EventSender(app)

        os.kill(server.pid, signal.SIGSTOP)  # the broker answers nothing
        try:
            sent: list[float] = []

            def steps() -> None:
                for i in range(N):
                    sent.append(time.time())
                    sender.send("box1@test", "task-succeeded", uuid=f"u{i}", result="ok")

            stepping = threading.Thread(target=steps, daemon=True)
            stepping.start()
            stepping.join(10)
            # Every step went on while its events could not be published (a synchronous
            # publish blocks until the broker answers).
            assert not stepping.is_alive() and len(sent) == N
            assert not sender.flush(0.3)  # still queued: nothing is lost
            resumed = time.time()
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert sender.flush(30)
        wait_for(lambda: len(got) >= N, f"{N} events received", timeout=30)
        stop.set()
        reader.join(10)

    events = [e for e in got if e.get("type") == "task-succeeded"]
    assert [e["uuid"] for e in events] == [f"u{i}" for i in range(N)]
    assert all(e["hostname"] == "box1@test" for e in events)
    # Each carries the time its step ended, not when it could be sent.
    assert [e["timestamp"] for e in events] == pytest.approx(sent)
    assert all(e["timestamp"] < resumed for e in events)


def test_a_broker_away_for_long_costs_a_bounded_backlog_said_in_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr("worker.taskevents.BACKLOG", 20)
    with started(RedisServer(tmp_path / "broker")) as server:
        app = Celery(broker=f"{server.url}/0")
        sender = EventSender(app)
        os.kill(server.pid, signal.SIGSTOP)
        try:
            sender.send("box1@test", "task-succeeded", uuid="first")
            # The sender's thread took it and waits on the broker: the backlog is empty.
            wait_for(lambda: sender._queue.empty(), "the first event taken", timeout=10)
            for i in range(50):
                sender.send("box1@test", "task-succeeded", uuid=f"u{i}")
            assert sender._queue.qsize() == 20
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert sender.flush(30)
    said = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert said and said[0].startswith("1 task event(s) dropped"), said
    assert sender._dropped == 30


def published_uuids(server: RedisServer, sender: EventSender, uuids: list[str]) -> list[str]:
    """Send each event alone (a batch of one), and read what the broker published."""
    with redis.Redis.from_url(f"{server.url}/0") as client:
        sub = client.pubsub()
        sub.psubscribe("*")
        wait_for(lambda: sub.get_message(timeout=0.1), "subscribed", timeout=10)
        for uuid in uuids:
            sender.send("box1@test", "task-succeeded", uuid=uuid)
            assert sender.flush(30)
        got: list[str] = []
        deadline = time.monotonic() + 5
        while len(got) < len(uuids) and time.monotonic() < deadline:
            message = sub.get_message(timeout=0.2)
            if message and message["type"] == "pmessage":
                body = json.loads(base64.b64decode(json.loads(message["data"])["body"]))
                got.append(body["uuid"])
        sub.close()
        return got


def test_events_flow_again_once_a_stopped_broker_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    # The sender keeps one connection. With the broker gone, each batch fails and is dropped,
    # said in the log (not kept in the dispatcher's own buffer, which grows without bound and
    # is never sent); once the broker is back, the next batches are published.
    with started(RedisServer(tmp_path / "broker")) as server:
        app = Celery(broker=f"{server.url}/0")
        sender = EventSender(app)
        assert published_uuids(server, sender, ["a0", "a1"]) == ["a0", "a1"]
        server.stop()
        for i in range(2):  # each takes kombu's ~4 s of trying to connect
            sender.send("box1@test", "task-succeeded", uuid=f"lost{i}")
            assert sender.flush(30)
        said = [r.getMessage() for r in caplog.records if "could not tell monitors" in
                r.getMessage()]
        assert len(said) == 2, said
        server.start()
        after = [f"b{i}" for i in range(5)]
        assert published_uuids(server, sender, after) == after
