"""Crashes: the coordinator or a box worker killed mid-rollout (kill -9, at recorded events)."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable

import redis

from tests.harness.common import TIMINGS, wait_for
from tests.harness.rollout_fx import Fleet, json_lines


def read_until(proc: object, predicate: Callable[[dict[str, object]], bool]) -> list[dict]:
    """Read --json events from a running CLI until one matches (a recorded point)."""
    seen = []
    stdout = proc.stdout  # type: ignore[attr-defined]
    for line in stdout:
        event = json.loads(line)
        seen.append(event)
        if predicate(event):
            return seen
    raise AssertionError(f"the CLI ended before the recorded point; saw {seen}")


def test_killed_coordinator_the_rollout_finishes_and_watch_reattaches(
    fleet_factory: Callable[..., Fleet], broker_url: str,
) -> None:
    fleet = fleet_factory(3)
    fleet.write(f"{fleet.images.repo}:v1")
    assert fleet.cli("rollout", fleet.box_type).returncode == 0
    cli = fleet.start_cli("rollout", fleet.box_type, "--image", f"web={fleet.images.repo}:v2",
                          "--json")
    seen = read_until(cli, lambda e: e.get("step") == "deploy.swap" and e.get("phase") == "end")
    cli.send_signal(signal.SIGKILL)
    rollout_id = str(seen[0]["rollout"])
    in_flight = str(seen[-1]["box"])

    # Nothing was pre-enqueued: only the box in flight has messages, and none has an ETA.
    broker = redis.Redis.from_url(broker_url)
    try:
        for w in fleet.workers:
            queued = broker.lrange(f"box.{w.box_id}", 0, -1)
            if w.box_id != in_flight:
                assert queued == [], (w.box_id, queued)
            for raw in queued:
                assert json.loads(raw)["headers"].get("eta") is None
    finally:
        broker.close()

    again = fleet.cli("watch", rollout_id, "--json")
    assert again.returncode == 0, again.stderr
    summary = json_lines(again.stdout)[-1]["summary"]
    assert summary["state"] == "succeeded" and summary["ok"] == 3, summary  # type: ignore[index]
    fleet.wait_all_in_service()


def test_killed_box_worker_halts_the_rollout_and_recovers(
    fleet_factory: Callable[..., Fleet],
) -> None:
    fleet = fleet_factory(3)
    fleet.write(f"{fleet.images.repo}:v1")
    assert fleet.cli("rollout", fleet.box_type).returncode == 0
    fleet.wait_all_in_service()
    canary = min(fleet.workers, key=lambda w: w.box_id)

    cli = fleet.start_cli("rollout", fleet.box_type, "--image", f"web={fleet.images.repo}:v2",
                          "--json")
    seen = read_until(cli, lambda e: e.get("step") == "deploy.leave_lb" and e.get("phase")
                      == "end" and e.get("box") == canary.box_id)
    cli.send_signal(signal.SIGKILL)  # no coordinator attached from here on
    canary.kill9()
    rollout_id = str(seen[0]["rollout"])

    # The other workers notice the silent box, halt the rollout naming it, free the lease.
    def halted() -> dict[str, str] | None:
        st = fleet.cli("history", fleet.box_type).stdout
        return {"line": st} if f"{rollout_id}" in st and "halted" in st else None

    wait_for(halted, "the rollout halted", timeout=TIMINGS.lease_ttl * 4 + 10)
    lock = fleet.cli("lock", "status", fleet.box_type)
    assert "free" in lock.stdout, lock.stdout
    assert not fleet.in_service()[canary.box_id]

    canary.start()  # it ends its interrupted chain itself: restore, rejoin
    fleet.wait_all_in_service()
    again = fleet.cli("rollout", fleet.box_type, "--image", f"web={fleet.images.repo}:v2")
    assert again.returncode == 0, again.stderr
    fleet.wait_all_in_service()
