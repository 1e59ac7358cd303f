"""A box worker paused (SIGSTOP) inside a step for longer than its slot, with and without a
second rollout meanwhile: once its rollout counted it dead, it takes no forward action (shown
from Docker's event timestamps and HAProxy's state-change log), then it restores from its own
record, rejoins, and the box ends on the box type's current release, under traffic.

The pause is injected at a recorded point: the worker stops itself just before the action.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import docker
import pytest

from devstack.traffic import TrafficLoop
from orchestrator.engine.events import stream_ms
from schemas.contract import Label
from tests.harness.common import wait_for
from tests.harness.docker_fx import container_events
from tests.harness.rollout_fx import Fleet, json_lines, paused, with_fault


def halted_at(fleet: Fleet, out: str) -> datetime:
    """When the rollout counted the canary dead: its `slot` event, by its stream id's clock."""
    for line in json_lines(out):
        if line.get("step") == "slot" and line.get("outcome") == "failed":
            return datetime.fromtimestamp(stream_ms(str(line["id"])) / 1000, UTC)
    raise AssertionError(f"the rollout never counted a box dead:\n{out}")


def docker_actions(client: docker.DockerClient, box: str, since: datetime) -> list[dict]:
    """The engine's own record of what happened to the box's containers since `since`."""
    acts = ("create", "start", "stop", "rename", "destroy", "kill")
    return [e for e in container_events(client, box, since) if e.get("Action") in acts]


POINTS = [
    ("deploy.leave_lb:leave", False),
    ("deploy.swap:stop", False),
    ("deploy.swap:run", False),
    ("deploy.join_lb:join", False),
    ("deploy.swap:run", True),
    ("deploy.leave_lb:leave", True),
]


@pytest.mark.parametrize(("point", "second"), POINTS, ids=[f"{p}{'+rollout' if s else ''}"
                                                           for p, s in POINTS])
def test_a_paused_worker_acts_no_more_once_counted_dead(
    fleet_factory: Callable[..., Fleet], docker_client: docker.DockerClient,
    point: str, second: bool,
) -> None:
    fleet = fleet_factory(3)
    fleet.write(f"{fleet.images.repo}:v1")
    assert fleet.cli("rollout", fleet.box_type).returncode == 0
    fleet.wait_all_in_service()
    canary = sorted(fleet.workers, key=lambda w: w.box_id)[0]
    with_fault(canary, point)

    with TrafficLoop(fleet.proxy.url, threads=4, rate_per_thread=25, max_seconds=120) as loop:
        loop.wait_total(20, timeout=10)
        run = fleet.cli("rollout", fleet.box_type, "--image", f"web={fleet.images.repo}:v2",
                        "--json", timeout=60)
        assert paused(canary), run.stdout + run.stderr  # it ended while the canary slept
        assert run.returncode == 1 and '"state": "halted"' in run.stdout, run.stdout
        halt = halted_at(fleet, run.stdout)
        if second:  # meanwhile: a rollout to the current release, without the sleeping box
            meanwhile = fleet.cli("rollout", fleet.box_type, "--image",
                                  f"web={fleet.images.repo}:v1", "--skip-missing", "--json")
            assert meanwhile.returncode == 0, meanwhile.stdout + meanwhile.stderr
        os.kill(canary.pid, signal.SIGCONT)
        fleet.wait_all_in_service()
        loop.wait_total(loop.stats.total + 20, timeout=10)
    stats = loop.stop()
    assert stats.failed == 0, stats.summary()

    v2 = json_lines(run.stdout)[-1]["summary"]["release"]  # type: ignore[index]
    actions = docker_actions(docker_client, canary.box_id, halt)
    forward = [e for e in actions if e["Actor"]["Attributes"].get(Label.RELEASE) == v2
               and e["Action"] in ("create", "start")]
    assert forward == [], forward  # nothing of the halted rollout's release started after it
    changes = [c for c in fleet.proxy.state_changes()
               if c.server == canary.box_id and c.at > halt]
    left = [c for c in changes if "maintenance" in c.text and "going DOWN" in c.text
            or "drain" in c.text]
    assert left == [], changes  # it did not leave HAProxy after the halt

    def beating() -> dict[str, Any] | None:  # its first beat after SIGCONT asks Docker first
        status = fleet.cli("status", fleet.box_type, "--json")
        assert status.returncode in (0, 1), status.stdout + status.stderr
        found = {str(r["box"]): r for r in json_lines(status.stdout)}
        # A busy box is not flagged for its release (it is moving): wait until it has settled.
        settled = canary.box_id in found and not found[canary.box_id]["busy"]
        return found if settled and status.returncode == 0 else None

    rows = wait_for(beating, "the woken canary's heartbeat in status", timeout=30)
    current = rows[canary.box_id]["apps"]["web"]["release"]  # type: ignore[index]
    assert len({r["apps"]["web"]["release"] for r in rows.values()}) == 1  # type: ignore[index]
    assert current != v2
    assert fleet.cli("lock", "status", fleet.box_type).stdout.strip().endswith("free")
