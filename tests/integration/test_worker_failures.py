"""Failures are data: a failed swap leaves the old version serving, and nothing of the new."""

from __future__ import annotations

import docker

from orchestrator.engine.chains import step
from schemas.contract import Label, Outcome, TaskName
from tests.harness.box_fx import BoxWorkers, DeployKit, PushedImages, wait_http
from tests.harness.common import wait_for

ONE_APP = """
apps:
  web:
    image: {repo}
    containers:
      web:
        ports: ["18080:8080"]
        command: {command}
        health: {{http: /health, interval: 0.1, timeout: 1, retries: 10}}
"""
SERVE = "[httpd, -f, -p, '8080', -h, /www]"
# The broken image answers 404 on /health; it says something first, for the log tail.
SAY_AND_SERVE = "[sh, -c, 'echo booting the new version; exec httpd -f -p 8080 -h /www']"

TWO_APPS = """
apps:
  a:
    image: {repo}
    containers:
      a:
        ports: ["18080:8080"]
        health: {{http: /health, interval: 0.1, timeout: 1, retries: 10}}
  b:
    depends: [a]
    image: {repo}
    containers:
      b:
        ports: ["18081:8080"]
        health: {{http: /health, interval: 0.1, timeout: 1, retries: 10}}
"""


def containers(client: docker.DockerClient, box_id: str) -> list[tuple[str, str, str]]:
    found = client.containers.list(all=True, filters={"label": f"{Label.BOX}={box_id}"})
    return sorted((c.name, c.status, c.labels.get(Label.RELEASE, "")) for c in found)


def test_failed_health_check_keeps_v1_serving(
    deploy: DeployKit, box_workers: BoxWorkers, pushed_images: PushedImages,
    docker_client: docker.DockerClient,
) -> None:
    (box,) = box_workers.start(1)
    v1 = deploy.release(ONE_APP, {"web": pushed_images.v1}, repo=pushed_images.repo,
                        command=SERVE)
    bad = deploy.release(ONE_APP, {"web": pushed_images.broken}, repo=pushed_images.repo,
                         command=SAY_AND_SERVE)
    deploy.wait_end(deploy.send(deploy.request(v1, box.box_id)))
    wait_http(f"http://{box.bind_ip}:18080/", "v1")

    out = deploy.wait_end(deploy.send(deploy.request(bad, box.box_id)))
    swap = out["deploy.swap:web"]
    assert swap.outcome == Outcome.FAILED
    assert "HealthCheckFailed" in swap.reason and "/health" in swap.reason, swap.reason
    assert "booting the new version" in swap.log_tail
    assert swap.details["restored"] == "1"
    assert out["deploy.restore:-"].outcome == Outcome.NOOP  # the swap put v1 back itself
    assert out["deploy.ensure_services:-"].outcome == Outcome.SKIPPED
    wait_http(f"http://{box.bind_ip}:18080/", "v1")
    assert containers(docker_client, box.box_id) == [(f"{box.box_id}.web.web", "running", v1.id)]


def test_second_app_failing_restores_the_first(
    deploy: DeployKit, box_workers: BoxWorkers, pushed_images: PushedImages,
    docker_client: docker.DockerClient,
) -> None:
    (box,) = box_workers.start(1)
    v1 = deploy.release(TWO_APPS, {"a": pushed_images.v1, "b": pushed_images.v1},
                        repo=pushed_images.repo)
    mixed = deploy.release(TWO_APPS, {"a": pushed_images.v2, "b": pushed_images.broken},
                           repo=pushed_images.repo)
    deploy.wait_end(deploy.send(deploy.request(v1, box.box_id)))
    wait_http(f"http://{box.bind_ip}:18080/", "v1")

    out = deploy.wait_end(deploy.send(deploy.request(mixed, box.box_id)))
    assert out["deploy.swap:a"].outcome == Outcome.OK
    assert out["deploy.swap:b"].outcome == Outcome.FAILED
    restore = out["deploy.restore:-"]
    assert restore.outcome == Outcome.OK and restore.details["restored"] == "a", restore
    wait_http(f"http://{box.bind_ip}:18080/", "v1")
    wait_http(f"http://{box.bind_ip}:18081/", "v1")
    assert containers(docker_client, box.box_id) == [
        (f"{box.box_id}.a.a", "running", v1.id),
        (f"{box.box_id}.b.b", "running", v1.id),
    ]


def test_superseded_token_changes_nothing(
    deploy: DeployKit, box_workers: BoxWorkers, pushed_images: PushedImages,
    docker_client: docker.DockerClient,
) -> None:
    (box,) = box_workers.start(1)
    v1 = deploy.release(ONE_APP, {"web": pushed_images.v1}, repo=pushed_images.repo,
                        command=SERVE)
    v2 = deploy.release(ONE_APP, {"web": pushed_images.v2}, repo=pushed_images.repo,
                        command=SERVE)
    deploy.wait_end(deploy.send(deploy.request(v1, box.box_id)))
    before = containers(docker_client, box.box_id)
    stale = deploy.request(v2, box.box_id)
    deploy.take_box(box.box_id)  # a newer claim took the box

    out = deploy.wait_end(deploy.send(stale))
    assert {r.outcome for r in out.values()} == {Outcome.SUPERSEDED}
    assert containers(docker_client, box.box_id) == before
    wait_http(f"http://{box.bind_ip}:18080/", "v1")


def test_redelivered_step_returns_its_journal_entry(
    deploy: DeployKit, box_workers: BoxWorkers, pushed_images: PushedImages,
    docker_client: docker.DockerClient,
) -> None:
    (box,) = box_workers.start(1)
    v1 = deploy.release(ONE_APP, {"web": pushed_images.v1}, repo=pushed_images.repo,
                        command=SERVE)
    v2 = deploy.release(ONE_APP, {"web": pushed_images.v2}, repo=pushed_images.repo,
                        command=SERVE)
    deploy.wait_end(deploy.send(deploy.request(v1, box.box_id)))
    req = deploy.request(v2, box.box_id)
    first = deploy.wait_end(deploy.send(req))["deploy.swap:web"]
    started = {c.id for c in docker_client.containers.list(filters={"label": f"{Label.BOX}="
                                                                        f"{box.box_id}"})}
    events_before = len(deploy.events.read(deploy.box_type))

    # The same swap message again (as the broker redelivers it), then a marker step.
    marker = deploy.request(v2, box.box_id, token=req.token)
    step(deploy.app, TaskName.SWAP, req, "web").apply_async()
    step(deploy.app, TaskName.RESTORE, marker).apply_async()
    wait_for(lambda: deploy.journal.get(marker.rollout_id, box.box_id, "deploy.restore", None),
             "the marker step")

    assert deploy.journal.get(req.rollout_id, box.box_id, "deploy.swap", "web") == first
    now = {c.id for c in docker_client.containers.list(filters={"label": f"{Label.BOX}="
                                                                    f"{box.box_id}"})}
    assert now == started  # nothing was started or replaced
    new_events = deploy.events.read(deploy.box_type)[events_before:]
    assert [e["step"] for _, e in new_events] == ["deploy.restore", "deploy.restore"]


def test_error_escaping_a_step_is_rescued_by_link_error(
    deploy: DeployKit, box_workers: BoxWorkers, pushed_images: PushedImages,
    docker_client: docker.DockerClient,
) -> None:
    from tests.harness.common import wait_for

    (box,) = box_workers.start(1)
    v1 = deploy.release(TWO_APPS, {"a": pushed_images.v1, "b": pushed_images.v1},
                        repo=pushed_images.repo)
    v2 = deploy.release(TWO_APPS, {"a": pushed_images.v2, "b": pushed_images.v2},
                        repo=pushed_images.repo)
    deploy.wait_end(deploy.send(deploy.request(v1, box.box_id)))
    box.stop()
    box.env["ORCHESTRATOR_FAULT_STEP"] = "deploy.swap:b"  # b's swap raises, after a changed
    box.start()

    req = deploy.send(deploy.request(v2, box.box_id))
    join = wait_for(lambda: deploy.journal.get(req.rollout_id, box.box_id, "deploy.join_lb",
                                               None), "the rescue's join_lb")
    out = deploy.journal.entries(req.rollout_id, box.box_id)
    assert out["deploy.swap:a"].outcome == Outcome.OK
    assert out["deploy.swap:b"].outcome == Outcome.FAILED
    assert "InjectedFault" in out["deploy.swap:b"].reason
    assert out["deploy.restore:-"].details["restored"] == "a", out["deploy.restore:-"]
    assert join.outcome == Outcome.NOOP  # no load balancer in this box type
    assert "deploy.ensure_services:-" not in out  # the chain itself stopped at the error
    wait_http(f"http://{box.bind_ip}:18080/", "v1")
    wait_http(f"http://{box.bind_ip}:18081/", "v1")
    assert [r for _, _, r in containers(docker_client, box.box_id)] == [v1.id, v1.id]
