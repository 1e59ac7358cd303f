"""The box worker swaps apps on the real engine, through Redis, as a worker subprocess."""

from __future__ import annotations

import docker

from schemas.contract import Label, Outcome
from tests.harness.box_fx import BoxWorkers, DeployKit, PushedImages, untag_local, wait_http

WEB = """
apps:
  web:
    image: {repo}
    containers:
      web:
        ports: ["18080:8080"]
        health: {{http: /health, interval: 0.1, timeout: 1, retries: 20}}
        logs: [/var/log/web]
"""


def running(client: docker.DockerClient, box_id: str) -> list[docker.models.containers.Container]:
    return client.containers.list(all=True, filters={"label": f"{Label.BOX}={box_id}"})


def test_swap_v1_to_v2_pulled_by_digest(
    deploy: DeployKit, box_workers: BoxWorkers, pushed_images: PushedImages,
    docker_client: docker.DockerClient,
) -> None:
    (box,) = box_workers.start(1)
    v1 = deploy.release(WEB, {"web": pushed_images.v1}, repo=pushed_images.repo)
    v2 = deploy.release(WEB, {"web": pushed_images.v2}, repo=pushed_images.repo)
    untag_local(docker_client, pushed_images.v1)
    untag_local(docker_client, pushed_images.v2)

    first = deploy.wait_end(deploy.send(deploy.request(v1, box.box_id)))
    # Pulled from the registry: the local copies of the references were removed above.
    assert first["deploy.pull:-"].outcome == Outcome.OK, first["deploy.pull:-"]
    assert first["deploy.swap:web"].outcome == Outcome.OK, first["deploy.swap:web"]
    wait_http(f"http://{box.bind_ip}:18080/", "v1")

    second = deploy.wait_end(deploy.send(deploy.request(v2, box.box_id, token=2)))
    assert second["deploy.swap:web"].outcome == Outcome.OK, second["deploy.swap:web"]
    assert second["deploy.swap:web"].details["previous_release"] == v1.id
    wait_http(f"http://{box.bind_ip}:18080/", "v2")
    containers = running(docker_client, box.box_id)
    assert [c.labels[Label.RELEASE] for c in containers] == [v2.id]
    assert containers[0].image.id == docker_client.images.get(pushed_images.v2).id


def test_same_swap_twice_is_a_noop(
    deploy: DeployKit, box_workers: BoxWorkers, pushed_images: PushedImages,
    docker_client: docker.DockerClient,
) -> None:
    (box,) = box_workers.start(1)
    v1 = deploy.release(WEB, {"web": pushed_images.v1}, repo=pushed_images.repo)
    deploy.wait_end(deploy.send(deploy.request(v1, box.box_id)))
    before = {c.id: c.attrs["State"]["StartedAt"] for c in running(docker_client, box.box_id)}

    again = deploy.wait_end(deploy.send(deploy.request(v1, box.box_id, token=2)))
    assert again["deploy.swap:web"].outcome == Outcome.NOOP, again["deploy.swap:web"]
    after = {c.id: c.attrs["State"]["StartedAt"] for c in running(docker_client, box.box_id)}
    assert after == before  # same container, not restarted
