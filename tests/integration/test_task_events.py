"""The task events a message sends for the steps it runs itself (worker/taskevents.py), on a
real Redis broker read by Celery's own event receiver: a step never waits on them (the broker
paused with SIGSTOP), and they reach monitors in order, each with the time it happened."""

from __future__ import annotations

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
