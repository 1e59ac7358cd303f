"""`strategy: start-first` on real Docker and HAProxy, under traffic: the member moves to the new
containers' port and is never DRAIN or MAINT; a failing version never gets traffic; a worker
killed -9 just before or just after the move is put right by the box's own record; the next
version is staged in preflight and adopted by the box's turn, and nothing staged outlives the
rollout it was staged for."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from functools import partial
from pathlib import Path

import docker
import pytest

from devstack.traffic import TrafficLoop
from devstack.workers import BoxWorker
from schemas.contract import Label
from tests.harness.common import started, wait_for
from tests.harness.rollout_fx import PORT, Fleet, json_lines, wait_paused, with_fault
from tests.harness.start_first_fx import (
    ALT,
    Sampler,
    deployed,
    out_of_service_changes,
    ports,
    write,
)


def test_start_first_rollout_moves_members_under_traffic_never_out_of_service(
    fleet_factory: Callable[..., Fleet],
) -> None:
    fleet = deployed(fleet_factory, 3)
    before = len(out_of_service_changes(fleet))
    for tag, port in (("v2", ALT), ("v1", PORT)):  # blue -> green -> blue
        write(fleet, tag)
        with TrafficLoop(fleet.proxy.url, threads=4, rate_per_thread=40,
                         max_seconds=60) as loop, Sampler(fleet).running() as sampler:
            loop.wait_total(40, timeout=10)
            run = fleet.cli("rollout", fleet.box_type, "--json", "--reason", tag)
            loop.wait_total(loop.stats.total + 40, timeout=10)
        stats = loop.stop()
        assert run.returncode == 0, run.stderr + run.stdout
        assert stats.failed == 0, stats.summary()
        assert stats.bodies[f"{tag}\n"] > 0, stats.bodies
        assert sampler.samples > 10 and sampler.admin_seen == {0}, sampler.admin_seen
        assert sampler.fewest == 3, sampler.fewest  # served capacity never below 3
        assert out_of_service_changes(fleet)[before:] == []
        assert set(ports(fleet).values()) == {port}
        events = json_lines(run.stdout)
        left = [e for e in events[:-1] if e.get("step") == "deploy.leave_lb"
                and e.get("outcome") == "ok"]
        assert left == [], left  # nobody left HAProxy
        moved = [e for e in events[:-1] if e.get("step") == "deploy.swap"
                 and e.get("phase") == "end"]
        assert len(moved) == 3 and all("member moved" in str(e["reason"]) for e in moved)

    status = fleet.cli("status", fleet.box_type)
    assert status.returncode == 0, status.stdout + status.stderr
    # (An HAProxy reload that puts members back on their configured port: test_haproxy_reload.)


def test_a_failing_new_version_never_gets_traffic(
    fleet_factory: Callable[..., Fleet], docker_client: docker.DockerClient,
) -> None:
    fleet = deployed(fleet_factory, 3)
    before = len(out_of_service_changes(fleet))
    write(fleet, "broken")
    with TrafficLoop(fleet.proxy.url, threads=4, rate_per_thread=40,
                     max_seconds=60) as loop, Sampler(fleet).running() as sampler:
        loop.wait_total(40, timeout=10)
        run = fleet.cli("rollout", fleet.box_type, "--json")
        loop.wait_total(loop.stats.total + 20, timeout=10)
    stats = loop.stop()
    assert run.returncode == 1, run.stdout + run.stderr
    assert stats.failed == 0, stats.summary()
    assert stats.bodies.keys() == {"v1\n"}, stats.bodies
    assert sampler.admin_seen == {0} and sampler.fewest == 3
    assert out_of_service_changes(fleet)[before:] == []
    assert set(ports(fleet).values()) == {PORT}  # traffic never moved
    # Staged in preflight, it fails there, on every box: the rollout never starts.
    said = run.stdout + run.stderr
    assert "preflight failed on 3 of 3 boxes" in said, said
    assert said.count("staging its next version failed") == 3, said
    for w in fleet.workers:
        found = docker_client.containers.list(all=True,
                                              filters={"label": f"{Label.BOX}={w.box_id}"})
        assert [(c.name, c.status) for c in found] == [(f"{w.box_id}.web.web", "running")]


@pytest.mark.parametrize("point", ["deploy.swap:move=kill", "deploy.swap:moved=kill"])
def test_killed_at_the_move_the_record_puts_traffic_on_the_kept_version(
    fleet_factory: Callable[..., Fleet], docker_client: docker.DockerClient, point: str,
) -> None:
    fleet = deployed(fleet_factory, 1)
    before = len(out_of_service_changes(fleet))  # DOWN until its first deploy
    (box,) = fleet.workers
    with_fault(box, point)
    write(fleet, "v2")
    with TrafficLoop(fleet.proxy.url, threads=2, rate_per_thread=40, max_seconds=90) as loop:
        loop.wait_total(20, timeout=10)
        run = fleet.start_cli("rollout", fleet.box_type, "--json")
        wait_for(lambda: not box.running, "the worker killed at its fault point", timeout=60)
        moved = fleet.lb.member_port(box.box_id)
        assert moved == (ALT if point.endswith("moved=kill") else PORT)
        box.env.pop("ORCHESTRATOR_FAULT_POINT")
        started(box)  # the same box: its record puts traffic back on v1, then ends the chain
        wait_for(lambda: fleet.lb.member_port(box.box_id) == PORT, "member back on v1's port")
        out, err = run.communicate(timeout=90)
        loop.wait_total(loop.stats.total + 20, timeout=10)
    stats = loop.stop()
    assert run.returncode == 1, out + err  # the box failed: the rollout halted
    assert stats.failed == 0, stats.summary()
    assert out_of_service_changes(fleet)[before:] == []
    wait_for(lambda: len(docker_client.containers.list(
        all=True, filters={"label": f"{Label.BOX}={box.box_id}"})) == 1, "v2 removed")
    found = docker_client.containers.list(all=True,
                                          filters={"label": f"{Label.BOX}={box.box_id}"})
    assert [(c.name, c.status, c.labels[Label.RELEASE] != "") for c in found] == [
        (f"{box.box_id}.web.web", "running", True)]
    assert fleet.lb.state(box.box_id).in_service
    record = Path(box.env["ORCHESTRATOR_STATE_DIR"]) / f"{box.box_id}.json"
    assert '"intents":{}' in record.read_text()


# --- staging: the next version starts in preflight, the box's turn adopts it ----------------
STAGED = ".staged"


def containers(docker_client: docker.DockerClient, box_id: str) -> list[tuple[str, str, str]]:
    """(name, status, release) of every container of the box, in one engine call (no inspect
    of each: one removed meanwhile, an old version retiring, is simply not there)."""
    found = docker_client.api.containers(all=True, filters={"label": f"{Label.BOX}={box_id}"})
    return sorted((c["Names"][0].lstrip("/"), c["State"], (c.get("Labels") or {}).get(
        Label.RELEASE, "")) for c in found)


def staged(docker_client: docker.DockerClient, fleet: Fleet) -> list[str]:
    return [name for w in fleet.workers for name, _, _ in containers(docker_client, w.box_id)
            if name.endswith(STAGED)]


def pause_canary_at_its_turn(fleet: Fleet) -> BoxWorker:
    """The canary stops (SIGSTOP) at its swap's first change: after every preflight, before
    any box's turn acted."""
    canary = sorted(fleet.workers, key=lambda w: w.box_id)[0]
    with_fault(canary, "deploy.swap:rename=stop")
    return canary


def test_the_next_version_is_staged_in_preflight_and_each_turn_adopts_it(
    fleet_factory: Callable[..., Fleet], docker_client: docker.DockerClient,
) -> None:
    fleet = deployed(fleet_factory, 3)
    v1 = {w.box_id: containers(docker_client, w.box_id)[0][2] for w in fleet.workers}
    canary = pause_canary_at_its_turn(fleet)
    write(fleet, "v2")
    with TrafficLoop(fleet.proxy.url, threads=4, rate_per_thread=40, max_seconds=90) as loop:
        loop.wait_total(40, timeout=10)
        run = fleet.start_cli("rollout", fleet.box_type, "--json")
        wait_paused(canary, run, "the canary paused at its turn")
        # Before any box's turn: each box serves v1 and runs v2 staged beside it, unserved.
        seen = {w.box_id: containers(docker_client, w.box_id) for w in fleet.workers}
        moved = ports(fleet)
        os.kill(canary.pid, signal.SIGCONT)
        out, err = run.communicate(timeout=120)
        loop.wait_total(loop.stats.total + 40, timeout=10)
    stats = loop.stop()
    for box, found in seen.items():
        (name, status, rel), (staged_name, staged_status, staged_rel) = found
        assert (name, status, rel) == (f"{box}.web.web", "running", v1[box]), found
        assert (staged_name, staged_status) == (f"{box}.web.web{STAGED}", "running"), found
        assert staged_rel != v1[box]
    assert set(moved.values()) == {PORT}  # staging touched no load balancer
    assert run.returncode == 0, out + err
    assert stats.failed == 0, stats.summary()
    assert stats.bodies["v2\n"] > 0, stats.bodies
    swaps = [e for e in json_lines(out)[:-1] if e.get("step") == "deploy.swap"
             and e.get("phase") == "end"]
    assert len(swaps) == 3, swaps
    assert all("adopted the containers staged in preflight" in str(e["reason"])
               for e in swaps), [e["reason"] for e in swaps]
    assert staged(docker_client, fleet) == []
    def only_adopted() -> bool:  # the old version stops after the box's chain
        return all(containers(docker_client, w.box_id) == [
            (f"{w.box_id}.web.web", "running", seen[w.box_id][1][2])] for w in fleet.workers)

    wait_for(only_adopted, "only the adopted versions left")
    assert set(ports(fleet).values()) == {ALT}
    assert fleet.cli("status", fleet.box_type).returncode == 0


def test_an_aborted_rollout_leaves_nothing_staged(
    fleet_factory: Callable[..., Fleet], docker_client: docker.DockerClient,
) -> None:
    fleet = deployed(fleet_factory, 2)
    canary = pause_canary_at_its_turn(fleet)
    write(fleet, "v2")
    run = fleet.start_cli("rollout", fleet.box_type, "--json")
    wait_paused(canary, run, "the canary paused at its turn")
    assert len(staged(docker_client, fleet)) == 2
    rollout = str(json.loads(fleet.cli("history", fleet.box_type, "--json").stdout)[0]["rollout"])
    assert fleet.cli("abort", rollout).returncode == 0
    os.kill(canary.pid, signal.SIGCONT)
    out, err = run.communicate(timeout=120)
    assert run.returncode != 0, out + err
    wait_for(lambda: staged(docker_client, fleet) == [], "nothing staged left", timeout=60)
    def one_version(box_id: str) -> bool:
        return [(n, s) for n, s, _ in containers(docker_client, box_id)] == [
            (f"{box_id}.web.web", "running")]

    for w in fleet.workers:  # the canary's old version may still be retiring
        wait_for(partial(one_version, w.box_id), f"{w.box_id}: one version running")
        record = Path(w.env["ORCHESTRATOR_STATE_DIR"]) / f"{w.box_id}.json"
        wait_for(lambda: '"staged":{}' in record.read_text(),  # noqa: B023 (waited here)
                 "the staging notes dropped")
    # The canary was in flight (abort lets it finish); the other box never had its turn.
    assert {b: p for b, p in ports(fleet).items() if b != canary.box_id} == {
        w.box_id: PORT for w in fleet.workers if w is not canary}


def test_a_worker_killed_mid_staging_leaves_nothing_staged_once_restarted(
    fleet_factory: Callable[..., Fleet], docker_client: docker.DockerClient,
) -> None:
    fleet = deployed(fleet_factory, 1)
    (box,) = fleet.workers
    with_fault(box, "deploy.preflight:staged=kill")
    write(fleet, "v2")
    fleet.env["ORCHESTRATOR_PREFLIGHT_TIMEOUT"] = "5"  # its preflight never answers
    run = fleet.cli("rollout", fleet.box_type, "--json")
    wait_for(lambda: not box.running, "the worker killed mid-staging")
    assert run.returncode != 0, run.stdout + run.stderr
    names = [(n, s) for n, s, _ in containers(docker_client, box.box_id)]
    assert names == [(f"{box.box_id}.web.web", "running"),
                     (f"{box.box_id}.web.web{STAGED}", "running")]
    record = Path(box.env["ORCHESTRATOR_STATE_DIR"]) / f"{box.box_id}.json"
    assert '"state":"starting"' in record.read_text()  # noted before it started
    box.env.pop("ORCHESTRATOR_FAULT_POINT")
    started(box)
    wait_for(lambda: staged(docker_client, fleet) == [], "the staged container removed")
    assert [(n, s) for n, s, _ in containers(docker_client, box.box_id)] == [
        (f"{box.box_id}.web.web", "running")]
    # The sweep removes the containers, then drops their notes: wait for its second half.
    wait_for(lambda: '"staged":{}' in record.read_text(), "the staging note dropped")
    assert fleet.lb.member_port(box.box_id) == PORT


def test_a_worker_killed_before_the_old_version_stopped_stops_it_once_restarted(
    fleet_factory: Callable[..., Fleet], docker_client: docker.DockerClient,
) -> None:
    fleet = deployed(fleet_factory, 1)
    (box,) = fleet.workers
    v1 = containers(docker_client, box.box_id)[0][2]
    with_fault(box, "retire:stop=kill")
    write(fleet, "v2")
    with TrafficLoop(fleet.proxy.url, threads=2, rate_per_thread=40, max_seconds=90) as loop:
        loop.wait_total(20, timeout=10)
        run = fleet.start_cli("rollout", fleet.box_type, "--json")
        wait_for(lambda: not box.running, "the worker killed before stopping the old version")
        found = containers(docker_client, box.box_id)
        record = Path(box.env["ORCHESTRATOR_STATE_DIR"]) / f"{box.box_id}.json"
        assert '"retiring":{"web"' in record.read_text()  # what remains to stop, on its disk
        box.env.pop("ORCHESTRATOR_FAULT_POINT")
        started(box)
        run.communicate(timeout=90)
        loop.wait_total(loop.stats.total + 20, timeout=10)
    stats = loop.stop()
    assert [(n, s) for n, s, r in found if r == v1] == [(f"{box.box_id}.web.web.prev", "running")]
    assert stats.failed == 0, stats.summary()
    wait_for(lambda: [(n, s) for n, s, _ in containers(docker_client, box.box_id)] == [
        (f"{box.box_id}.web.web", "running")], "the old version stopped and removed")
    assert containers(docker_client, box.box_id)[0][2] != v1
    assert fleet.lb.member_port(box.box_id) == ALT
    assert '"retiring":{}' in record.read_text()
