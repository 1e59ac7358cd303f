"""Limits on the box: a release asking for a denied host path is refused before anything acts.

Real Docker, Redis, HAProxy and an `orchestrator-worker` subprocess. The box runs v1 behind
HAProxy; then a release mounting `/etc`, one mounting a link to `/etc` made in a tmp dir, and
one reading the worker's own settings file as a `file:` secret are each sent as preflight,
as a whole box chain (no preflight: what a forged task does) and as one lone `deploy.swap`.
Every one is refused naming the rule and the path; no container is swapped and HAProxy never
sees its server leave.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from devstack.haproxy import HAProxy
from devstack.net import port_free_on
from orchestrator.engine.chains import step
from schemas.contract import Label, Outcome, StepResult, TaskName, queue_for
from schemas.fleet import FleetSettings, ServiceSpec
from schemas.release import Release
from tests.harness.box_fx import BoxWorkers, DeployKit, PushedImages, wait_http
from tests.harness.common import wait_for

BOX = """
apps:
  web:
    image: {repo}
    elb: web
    lb_kind: haproxy
    containers:
      web:
        ports: ["{port}:8080"]
        health: {{http: /health, interval: 0.1, timeout: 1, retries: 20}}
"""
MOUNT = "        volumes: [\"{source}:/host:ro\"]\n"
SECRET = (
    "        env:\n"
    "          STOLEN: {{secret: \"file:/etc/orchestrator/worker.env#ORCHESTRATOR_BROKER_URL\"}}\n"
)


def containers(client: docker.DockerClient, box_id: str) -> list[tuple[str, str, str, str]]:
    found = client.containers.list(all=True, filters={"label": f"{Label.BOX}={box_id}"})
    return sorted((c.id, c.name, c.status, c.labels.get(Label.RELEASE, "")) for c in found)


def check_passed(proxy: HAProxy, server: str) -> bool:
    # HAProxy marks a check under way with "* " before the last result.
    return proxy.server_checks().get(server, "").removeprefix("* ") == "L7OK"


def journal_entry(deploy: DeployKit, rollout: str, box: str, name: str,
                  app: str | None = None) -> StepResult:
    return wait_for(lambda: deploy.journal.get(rollout, box, name, app),
                    f"{name} of {box} in the journal", timeout=30)


@pytest.mark.parametrize("what", ["etc", "link-to-etc", "worker-env-secret"])
def test_a_denied_host_path_is_refused_with_nothing_swapped(
    what: str, deploy: DeployKit, box_workers: BoxWorkers, pushed_images: PushedImages,
    haproxy_factory: Callable[..., HAProxy], docker_client: docker.DockerClient, tmp_path: Path,
) -> None:
    (box,) = box_workers.start(1, start=False)
    port = port_free_on([box.bind_ip], span=(20_000, 30_000))
    proxy = haproxy_factory([(box.box_id, box.bind_ip, port)], wait_healthy=False)
    box.env["ORCHESTRATOR_HAPROXY_SOCKET"] = proxy.socket_path
    box.start()
    v1 = deploy.release(BOX, {"web": pushed_images.v1}, repo=pushed_images.repo, port=port)
    first = deploy.wait_end(deploy.send(deploy.request(v1, box.box_id)))
    assert first[f"{TaskName.SWAP.value}:web"].outcome == Outcome.OK
    wait_http(f"http://{box.bind_ip}:{port}/", "v1")
    wait_for(lambda: check_passed(proxy, box.box_id), "v1 healthy in HAProxy")

    if what == "worker-env-secret":
        extra, rule = SECRET, "/etc/orchestrator/worker.env is the worker's settings file"
        field = "apps.web.containers.web.env.STOLEN: file secret /etc/orchestrator/worker.env"
    else:
        source = "/etc"
        if what == "link-to-etc":
            link = tmp_path / "innocent-data"
            link.symlink_to("/etc")
            source = str(link)
        extra, rule = MOUNT.format(source=source), "it is /etc (the host's configuration)"
        via = " (a link to /etc)" if what == "link-to-etc" else ""
        field = f"apps.web.containers.web.volumes[0]: volume {source}{via} refused"
    bad = deploy.release(BOX + extra, {"web": pushed_images.v2}, repo=pushed_images.repo,
                         port=port)
    before = containers(docker_client, box.box_id)
    changes_before = len(proxy.state_changes())

    # 1. preflight says no, naming the field, the path and the rule
    req = deploy.request(bad, box.box_id)
    deploy.app.send_task(TaskName.PREFLIGHT.value, args=(req.model_dump(mode="json"),),
                         queue=queue_for(box.box_id))
    pre = journal_entry(deploy, req.rollout_id, box.box_id, TaskName.PREFLIGHT.value)
    assert pre.outcome == Outcome.FAILED
    assert "HostPathDenied" in pre.reason and field in pre.reason and rule in pre.reason, pre

    # 2. a whole chain sent without preflight: refused at its first step, nothing after acts
    out = deploy.wait_end(deploy.send(deploy.request(bad, box.box_id)))
    pull = out[f"{TaskName.PULL.value}:-"]
    assert pull.outcome == Outcome.FAILED
    assert "HostPathDenied" in pull.reason and field in pull.reason and rule in pull.reason
    assert out[f"{TaskName.LEAVE_LB.value}:-"].outcome == Outcome.SKIPPED
    assert out[f"{TaskName.SWAP.value}:web"].outcome == Outcome.SKIPPED
    assert out[f"{TaskName.ENSURE_SERVICES.value}:-"].outcome == Outcome.SKIPPED

    # 3. one lone deploy.swap, as an attacker with the box's token would send it
    lone = deploy.request(bad, box.box_id)
    step(deploy.app, TaskName.SWAP, lone, "web").apply_async()
    swap = journal_entry(deploy, lone.rollout_id, box.box_id, TaskName.SWAP.value, "web")
    assert swap.outcome == Outcome.FAILED
    assert "HostPathDenied" in swap.reason and field in swap.reason, swap

    # nothing swapped, nothing left the load balancer, v1 still serves
    assert containers(docker_client, box.box_id) == before
    assert [c[3] for c in before] == [v1.id]
    assert len(proxy.state_changes()) == changes_before, proxy.state_changes()
    assert check_passed(proxy, box.box_id)
    wait_http(f"http://{box.bind_ip}:{port}/", "v1")
    assert "ORCHESTRATOR_BROKER_URL=" not in pull.reason + pre.reason + swap.reason


def test_an_allowed_sub_path_of_etc_mounts(
    deploy: DeployKit, box_workers: BoxWorkers, pushed_images: PushedImages,
    docker_client: docker.DockerClient,
) -> None:
    """The allow-list opens a sub-path of a denied parent: the same mount then runs."""
    (box,) = box_workers.start(
        1, extra_env={"ORCHESTRATOR_ALLOWED_HOST_PATHS": '["/etc/ssl"]'})
    ok: Release = deploy.release(
        BOX.replace("    elb: web\n    lb_kind: haproxy\n", "") + MOUNT.format(source="/etc/ssl"),
        {"web": pushed_images.v1}, repo=pushed_images.repo, port=18080)
    out = deploy.wait_end(deploy.send(deploy.request(ok, box.box_id)))
    assert out[f"{TaskName.SWAP.value}:web"].outcome == Outcome.OK, out
    (container,) = docker_client.containers.list(filters={"label": f"{Label.BOX}={box.box_id}"})
    assert any(m["Source"] == "/etc/ssl" for m in container.attrs["Mounts"])


def test_the_service_reconciler_refuses_a_pointer_to_a_denied_release(
    deploy: DeployKit, box_workers: BoxWorkers, pushed_images: PushedImages,
    docker_client: docker.DockerClient,
) -> None:
    """`services:<box>` is a pointer anyone with Redis can set: the tick checks it too."""
    (box,) = box_workers.start(1)
    fleet = FleetSettings(services={
        "agent": ServiceSpec(image=pushed_images.v1, volumes=["/:/host:ro"]),
    })
    bad = deploy.release("services: [agent]\napps: {{}}\n", {}, fleet=fleet)
    deploy.client.set(deploy.keys.services(box.box_id), f"{bad.id} 1.1")
    wait_for(lambda: "service reconcile failed: release" in box.log(), "the refusal in the log")
    line = next(x for x in box.log().splitlines() if "service reconcile failed" in x)
    assert "services.agent.volumes[0]: volume / refused: it is / (the host's root)" in line
    assert docker_client.containers.list(
        all=True, filters={"label": f"{Label.BOX}={box.box_id}"}) == []
