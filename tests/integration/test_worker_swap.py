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

    second = deploy.wait_end(deploy.send(deploy.request(v2, box.box_id)))
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

    again = deploy.wait_end(deploy.send(deploy.request(v1, box.box_id)))
    assert again["deploy.swap:web"].outcome == Outcome.NOOP, again["deploy.swap:web"]
    after = {c.id: c.attrs["State"]["StartedAt"] for c in running(docker_client, box.box_id)}
    assert after == before  # same container, not restarted


def test_heartbeat_says_what_runs_with_a_ttl(
    deploy: DeployKit, box_workers: BoxWorkers, pushed_images: PushedImages
) -> None:
    from schemas.contract import CONTRACT_VERSION, Heartbeat
    from tests.harness.common import TIMINGS, wait_for

    (box,) = box_workers.start(1)
    v1 = deploy.release(WEB, {"web": pushed_images.v1}, repo=pushed_images.repo)
    deploy.wait_end(deploy.send(deploy.request(v1, box.box_id)))

    def beat() -> Heartbeat | None:
        raw = deploy.client.get(deploy.keys.heartbeat(box.box_id))
        hb = Heartbeat.model_validate_json(raw) if raw else None
        return hb if hb and "web" in hb.apps else None

    hb = wait_for(beat, "a heartbeat listing the web app")
    assert hb.box_type == deploy.box_type and hb.contract_version == CONTRACT_VERSION
    assert hb.apps["web"].release == v1.id and hb.apps["web"].spec_hash == v1.spec_hash("web")
    ttl_ms = deploy.client.pttl(deploy.keys.heartbeat(box.box_id))
    assert 0 < ttl_ms <= TIMINGS.heartbeat_ttl * 1000
    box.kill9()  # no more beats: the key expires by itself
    wait_for(lambda: deploy.client.get(deploy.keys.heartbeat(box.box_id)) is None,
             "the heartbeat to expire", timeout=TIMINGS.heartbeat_ttl + 2)
