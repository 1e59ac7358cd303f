"""Log forwarding, standard services and secrets, through a real worker subprocess and engine."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import redis

from devstack.flower import Flower
from devstack.workers import BoxWorker
from schemas.contract import Label, Outcome, StepResult
from schemas.fleet import FleetSettings, ServiceSpec
from tests.harness.box_fx import (
    BoxWorkers,
    DeployKit,
    PushedImages,
    untag_local,
    wait_http,
)
from tests.harness.common import free_port, started, wait_for
from tests.harness.redis_fx import ProductRedis

Containers = list[docker.models.containers.Container]


def box_containers(client: docker.DockerClient, box: BoxWorker, **labels: str) -> Containers:
    wanted = [f"{Label.BOX}={box.box_id}", *(f"{k}={v}" for k, v in labels.items())]
    # ignore_removed: a container removed between the listing and its inspect is not there.
    return list(client.containers.list(all=True, filters={"label": wanted}, ignore_removed=True))


def assert_chain_ok(results: dict[str, StepResult]) -> None:
    failed = {k: r for k, r in results.items() if r.outcome not in (Outcome.OK, Outcome.NOOP)}
    assert not failed, failed


# --- 1. logs forwarding ------------------------------------------------------------------

LOGGING_APP = """
apps:
  web:
    image: {repo}
    containers:
      front:
        command: "sh -c 'echo hello-{marker} > /var/log/web/app.log; exec httpd -f -p 8080 -h /www'"
        ports: ["{port}:8080"]
        health: {{http: /health, interval: 0.1, timeout: 1, retries: 20}}
        logs: [/var/log/web]
"""


def test_app_log_directory_is_forwarded_to_the_box_log_root(
    deploy: DeployKit,
    box_workers: BoxWorkers,
    pushed_images: PushedImages,
    docker_client: docker.DockerClient,
) -> None:
    (box,) = box_workers.start(1)
    port, marker = free_port(box.bind_ip), uuid.uuid4().hex[:8]
    release = deploy.release(
        LOGGING_APP, {"web": pushed_images.v1}, repo=pushed_images.repo, port=port, marker=marker
    )
    host_file = box.log_root / "web" / "front" / "app.log"  # <log_root>/<app>/<container>/
    assert not host_file.exists()

    results = deploy.wait_end(deploy.send(deploy.request(release, box.box_id)))
    assert results["deploy.swap:web"].outcome == Outcome.OK, results["deploy.swap:web"]
    wait_http(f"http://{box.bind_ip}:{port}/", "v1")

    # The echo ran before httpd, and httpd answered its health check: the file is there now.
    assert host_file.read_text() == f"hello-{marker}\n"
    (container,) = box_containers(docker_client, box, **{Label.APP: "web"})
    mounts = {m["Destination"]: m["Source"] for m in container.attrs["Mounts"]}
    assert mounts["/var/log/web"] == str(host_file.parent)


# --- 2. standard services ----------------------------------------------------------------

SERVICES_ONLY = """
services: [statsd]
apps: {{}}
"""


def test_catalog_service_started_and_reconciled_after_removal(
    deploy: DeployKit,
    box_workers: BoxWorkers,
    pushed_images: PushedImages,
    docker_client: docker.DockerClient,
) -> None:
    (box,) = box_workers.start(1)
    port = free_port(box.bind_ip)
    fleet = FleetSettings(
        services={
            "statsd": ServiceSpec(image=pushed_images.v1, ports=[f"{port}:8080"]),
            "unused": ServiceSpec(image=pushed_images.v2),  # not named by this box type
        }
    )
    release = deploy.release(SERVICES_ONLY, {}, fleet=fleet)
    assert list(release.services) == ["statsd"]
    untag_local(docker_client, pushed_images.v1)  # the chain's pull must fetch service images

    results = deploy.wait_end(deploy.send(deploy.request(release, box.box_id)))
    assert_chain_ok(results)
    assert results["deploy.pull:-"].outcome == Outcome.OK, results["deploy.pull:-"]
    ensured = results["deploy.ensure_services:-"]
    assert ensured.outcome == Outcome.OK and "statsd" in ensured.reason, ensured

    (service,) = box_containers(docker_client, box, **{Label.ROLE: "service"})
    assert service.status == "running", (service.status, box.log()[-3000:])
    assert service.labels[Label.CONTAINER] == "statsd"
    assert service.name == f"{box.box_id}.svc.statsd"
    wait_http(f"http://{box.bind_ip}:{port}/", "v1")

    interval = float(box.env["ORCHESTRATOR_SERVICES_INTERVAL"])
    margin = 4.0  # the tick's list + create + start, on a loaded CI machine
    service.remove(force=True)
    removed_at = time.monotonic()

    def replacement() -> docker.models.containers.Container | None:
        found = box_containers(docker_client, box, **{Label.ROLE: "service"})
        return next((c for c in found if c.id != service.id and c.status == "running"), None)

    back = wait_for(replacement, "statsd reconciled back", timeout=interval + margin)
    took = time.monotonic() - removed_at
    assert took <= interval + margin
    assert back.name == service.name
    assert back.labels[Label.SPEC_HASH] == service.labels[Label.SPEC_HASH]
    wait_http(f"http://{box.bind_ip}:{port}/", "v1")
    wait_for(lambda: "services reconciled: statsd" in box.log(), "the reconcile in the log")
    # Only what the release names: the unused catalog entry never ran here.
    assert [c.labels[Label.CONTAINER] for c in box_containers(docker_client, box)] == ["statsd"]


# --- 3. secrets --------------------------------------------------------------------------

SECRET_APP = """
apps:
  web:
    image: {repo}
    containers:
      web:
        command: >-
          sh -c 'mkdir -p /www2 && echo "$DB_PASSWORD" > /www2/index.html
          && echo ok > /www2/health && exec httpd -f -p 8080 -h /www2'
        ports: ["{port}:8080"]
        health: {{http: /health, interval: 0.1, timeout: 1, retries: 20}}
        env:
          PLAIN: visible
          DB_PASSWORD: {{secret: "file:{path}#DB_PASSWORD"}}
"""

@pytest.fixture
def flower(broker_url: str, tmp_path: Path) -> Iterator[Flower]:
    """Flower on the broker, with basic auth; started before any chain so it sees the events."""
    with started(Flower(tmp_path, broker_url, user="orch", password="flower-pw")) as fl:
        yield fl


def redis_dump(client: redis.Redis[str], pattern: str) -> dict[str, str]:
    """Every key matching `pattern` and its whole value, whatever its type, as text."""
    out: dict[str, str] = {}
    for key in client.scan_iter(match=pattern, count=500):
        kind = client.type(key)  # type: ignore[no-untyped-call]
        value: object
        if kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "set":
            value = sorted(client.smembers(key))
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = client.xrange(key)
        else:
            raise AssertionError(f"{key}: unexpected Redis type {kind}")
        out[key] = json.dumps(value, default=str)
    return out


def test_secret_reaches_the_container_and_nothing_else(
    deploy: DeployKit,
    box_workers: BoxWorkers,
    pushed_images: PushedImages,
    docker_client: docker.DockerClient,
    product_redis: ProductRedis,
    flower: Flower,
    tmp_path: Path,
) -> None:
    secret = f"s3cr3t-{uuid.uuid4()}"
    env_file = tmp_path / "web.env"
    env_file.write_text(f"# the box's own secrets\nOTHER=x\nDB_PASSWORD={secret}\n")
    (box,) = box_workers.start(1)
    node = f"box-{box.box_id}@{socket.gethostname()}"
    wait_for(lambda: flower.sees_worker(node), f"flower receiving {node}'s events")

    port = free_port(box.bind_ip)
    release = deploy.release(
        SECRET_APP, {"web": pushed_images.v1}, repo=pushed_images.repo, port=port, path=env_file
    )
    req = deploy.send(deploy.request(release, box.box_id))
    results = deploy.wait_end(req)
    assert_chain_ok(results)
    assert results["deploy.swap:web"].outcome == Outcome.OK, results["deploy.swap:web"]

    # The control: the value did reach the container, so every "absent" below can fail.
    assert wait_http(f"http://{box.bind_ip}:{port}/", secret) == secret
    (container,) = box_containers(docker_client, box, **{Label.APP: "web"})
    assert f"DB_PASSWORD={secret}" in container.attrs["Config"]["Env"]
    assert "PLAIN=visible" in container.attrs["Config"]["Env"]
    assert secret not in json.dumps(container.labels)

    # Flower: it shows every task's arguments and results; wait until it has the whole chain.
    def chain_in_flower() -> dict[str, dict[str, object]] | None:
        tasks: dict[str, dict[str, object]] = json.loads(flower.get("/api/tasks"))
        mine = {k: t for k, t in tasks.items() if req.rollout_id in str(t.get("args"))}
        done = [t for t in mine.values() if t.get("state") == "SUCCESS"]
        return mine if len(done) == len(results) else None

    seen = wait_for(chain_in_flower, "flower listing the chain's tasks as SUCCESS")
    assert {t["name"] for t in seen.values()} == {k.split(":")[0] for k in results}
    flower_text = flower.get("/api/tasks") + json.dumps(seen)
    assert secret not in flower_text

    # Product state: every key under this test's prefix, strings, hashes and streams alike.
    dump = redis_dump(product_redis.client, f"{product_redis.prefix}*")
    journal_key = deploy.keys.journal(req.rollout_id, box.box_id)
    events_key = deploy.keys.events(deploy.box_type)
    assert {journal_key, events_key, deploy.keys.release(release.id)} <= set(dump)
    assert str(env_file) in dump[deploy.keys.release(release.id)]  # by reference only
    leaked = [key for key, text in dump.items() if secret in text]
    assert not leaked, f"the secret is stored in {leaked}"

    events = deploy.events.read(deploy.box_type)
    assert any(fields.get("rollout") == req.rollout_id for _, fields in events)
    assert secret not in json.dumps(events)

    worker_log = box.log()
    assert req.rollout_id in worker_log  # the step results are logged: the log is not empty
    assert secret not in worker_log
    assert secret not in flower.log()
