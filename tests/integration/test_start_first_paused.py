"""A start-first box worker paused (SIGSTOP) just before or just after its member's move, for
longer than its slot, under traffic: the rollout counts it dead and halts; once woken, the
box's own record puts it right (one version serving, its member on that version's port), and
the box never leaves HAProxy: 0 failed requests, no DOWN, DRAIN or maintenance.

The pause is injected at a recorded point: the worker stops itself at the action."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from devstack.traffic import TrafficLoop
from schemas.contract import Label
from tests.harness.common import wait_for
from tests.harness.rollout_fx import PORT, Fleet, json_lines, paused, with_fault
from tests.harness.start_first_fx import ALT, deployed, out_of_service_changes, write


def app_containers(client: docker.DockerClient, box_id: str) -> list[tuple[str, str, str]]:
    """(name, state, release) of the box's containers, in one engine call."""
    found = client.api.containers(all=True, filters={"label": f"{Label.BOX}={box_id}"})
    return sorted((c["Names"][0].lstrip("/"), c["State"], (c.get("Labels") or {}).get(
        Label.RELEASE, "")) for c in found)


# (fault point, where the member is while the worker sleeps)
POINTS = [("deploy.swap:move=stop", PORT), ("deploy.swap:moved=stop", ALT)]


@pytest.mark.parametrize(("point", "asleep_on"), POINTS, ids=[p for p, _ in POINTS])
def test_a_paused_start_first_box_is_put_right_by_its_record_and_never_leaves(
    fleet_factory: Callable[..., Fleet], docker_client: docker.DockerClient,
    point: str, asleep_on: int,
) -> None:
    fleet = deployed(fleet_factory, 3)
    v1 = {w.box_id: app_containers(docker_client, w.box_id)[0][2] for w in fleet.workers}
    before = len(out_of_service_changes(fleet))
    canary = sorted(fleet.workers, key=lambda w: w.box_id)[0]
    with_fault(canary, point)
    write(fleet, "v2")
    with TrafficLoop(fleet.proxy.url, threads=4, rate_per_thread=25, max_seconds=150) as loop:
        loop.wait_total(20, timeout=10)
        run = fleet.cli("rollout", fleet.box_type, "--json", timeout=90)
        assert paused(canary), run.stdout + run.stderr  # it ended while the canary slept
        assert run.returncode == 1 and '"state": "halted"' in run.stdout, run.stdout
        assert fleet.lb.member_port(canary.box_id) == asleep_on
        os.kill(canary.pid, signal.SIGCONT)

        def settled() -> list[tuple[str, str, str]] | None:
            found = app_containers(docker_client, canary.box_id)
            running = [c for c in found if c[1] == "running"]
            record = Path(canary.env["ORCHESTRATOR_STATE_DIR"]) / f"{canary.box_id}.json"
            idle = '"intents":{}' in record.read_text()
            return found if len(found) == 1 and len(running) == 1 and idle else None

        (name, _, release), = wait_for(settled, "the woken canary down to one version",
                                      timeout=60)
        loop.wait_total(loop.stats.total + 20, timeout=10)
    stats = loop.stop()
    assert stats.failed == 0, stats.summary()
    assert out_of_service_changes(fleet)[before:] == []
    assert name == f"{canary.box_id}.web.web"
    # Its member is on the port of the version that runs, whichever its record kept.
    on = fleet.lb.member_port(canary.box_id)
    assert on == (PORT if release == v1[canary.box_id] else ALT), (on, release, v1)
    wait_for(lambda: fleet.lb.state(canary.box_id).in_service, "the canary's member UP")
    if asleep_on == PORT:  # counted dead before its move: it never moved afterwards
        assert release == v1[canary.box_id]
    for w in fleet.workers:
        if w is not canary:  # the rollout halted at the canary: the others serve v1 still
            # Their preflight staged v2 beside it: each one's own heartbeat tick removes that
            # (its rollout is halted), on its own time, not before the canary settles.
            only_v1 = [(f"{w.box_id}.web.web", "running", v1[w.box_id])]
            wait_for(lambda w=w, only_v1=only_v1: app_containers(docker_client, w.box_id)
                     == only_v1, f"{w.box_id} down to v1, its staged v2 removed")
            assert fleet.lb.member_port(w.box_id) == PORT
    lock = fleet.cli("lock", "status", fleet.box_type).stdout
    assert lock.strip().endswith("free"), lock
    lines = json_lines(run.stdout)
    assert any(e.get("step") == "slot" and e.get("outcome") == "failed" for e in lines), lines
