"""A worker killed mid-chain, with no coordinator, ends its chain itself after a restart."""

from __future__ import annotations

from collections.abc import Callable

import docker

from devstack.haproxy import HAProxy
from orchestrator.engine.lb.haproxy import HAProxyLB
from schemas.contract import Label, Outcome
from tests.harness.box_fx import BoxWorkers, DeployKit, PushedImages, wait_http
from tests.harness.common import wait_for

WEB = """
apps:
  web:
    elb: web
    lb_kind: haproxy
    image: {repo}
    containers:
      web:
        ports: ["18080:8080"]
        health: {{http: /health, interval: 0.1, timeout: 1, retries: 20, start_period: 1}}
"""


def test_kill_after_leave_lb_then_restart_ends_the_chain(
    deploy: DeployKit, box_workers: BoxWorkers, pushed_images: PushedImages,
    docker_client: docker.DockerClient, haproxy_factory: Callable[..., HAProxy],
) -> None:
    (box,) = box_workers.start(1, start=False)
    proxy = haproxy_factory([(box.box_id, box.bind_ip, 18080)], wait_healthy=False)
    box.env["ORCHESTRATOR_HAPROXY_SOCKET"] = proxy.socket_path
    box.start()
    lb = HAProxyLB(proxy.socket_path, "web")
    v1 = deploy.release(WEB, {"web": pushed_images.v1}, repo=pushed_images.repo)
    v2 = deploy.release(WEB, {"web": pushed_images.v2}, repo=pushed_images.repo)
    first = deploy.wait_end(deploy.send(deploy.request(v1, box.box_id)))
    assert first["deploy.join_lb:-"].outcome == Outcome.OK, first
    wait_for(lambda: lb.state(box.box_id).in_service, "box in service on v1")

    req = deploy.send(deploy.request(v2, box.box_id))
    # The recorded point: the box has left HAProxy (journal), its swap is under way.
    wait_for(lambda: deploy.journal.get(req.rollout_id, box.box_id, "deploy.leave_lb", None),
             "leave_lb in the journal", interval=0.005)
    box.kill9()
    assert not lb.state(box.box_id).in_service  # out of service, and nobody to bring it back

    box.start()  # same box, same queue: it ends its interrupted chain before new work
    wait_for(lambda: lb.state(box.box_id).in_service, "box back in service after restart")
    # The broker redelivers the unacked step; the rest of the chain then runs to its end.
    out = deploy.wait_end(req, timeout=30)
    assert out["recover:-"].outcome == Outcome.FAILED
    assert out["deploy.join_lb:-"].outcome == Outcome.OK, out["deploy.join_lb:-"]
    found = docker_client.containers.list(all=True, filters={"label": f"{Label.BOX}={box.box_id}"})
    assert [(c.name, c.status) for c in found] == [(f"{box.box_id}.web.web", "running")]
    assert found[0].labels[Label.RELEASE] == v1.id
    wait_http(f"http://{box.bind_ip}:18080/", "v1")

    # And a new rollout converges.
    again = deploy.wait_end(deploy.send(deploy.request(v2, box.box_id)))
    assert again["deploy.swap:web"].outcome == Outcome.OK
    assert again["deploy.join_lb:-"].outcome == Outcome.OK
    wait_http(f"http://{box.bind_ip}:18080/", "v2")
    assert lb.state(box.box_id).in_service


def test_leave_lb_on_stop_drains_the_box_out(
    deploy: DeployKit, box_workers: BoxWorkers, pushed_images: PushedImages,
    haproxy_factory: Callable[..., HAProxy],
) -> None:
    import subprocess
    import sys

    (box,) = box_workers.start(1, start=False)
    proxy = haproxy_factory([(box.box_id, box.bind_ip, 18080)], wait_healthy=False)
    box.env["ORCHESTRATOR_HAPROXY_SOCKET"] = proxy.socket_path
    box.start()
    lb = HAProxyLB(proxy.socket_path, "web")
    v1 = deploy.release(WEB, {"web": pushed_images.v1}, repo=pushed_images.repo)
    deploy.wait_end(deploy.send(deploy.request(v1, box.box_id)))
    wait_for(lambda: lb.state(box.box_id).in_service, "box in service")

    # What systemd's ExecStop runs on scale-in, with the box's own settings.
    out = subprocess.run([sys.executable, "-m", "worker.main", "--leave-lb"], env=box.env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"{box.box_id}: left web" in out.stdout
    assert not lb.state(box.box_id).in_service
    # Scaled in: no longer a member of its box type, though its worker still beats until
    # systemd stops it, so no rollout counts it missing.
    members = deploy.keys.members(deploy.box_type)
    assert not deploy.client.hexists(members, box.box_id)
    seen = deploy.client.get(deploy.keys.heartbeat(box.box_id))
    wait_for(lambda: deploy.client.get(deploy.keys.heartbeat(box.box_id)) != seen, "a new beat")
    assert not deploy.client.hexists(members, box.box_id)
