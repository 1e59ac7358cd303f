"""Fixtures: real `orchestrator-worker` subprocesses (one per simulated box) and a deploy kit."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml
from celery import Celery

from devstack import engine
from devstack.net import subnet
from devstack.registry import Registry
from devstack.workers import BoxWorker, dev_signer, worker_env
from orchestrator.engine.celery_app import make_celery
from orchestrator.engine.chains import box_chain
from orchestrator.engine.events import Events
from orchestrator.engine.journal import Journal
from orchestrator.engine.lease import Lease
from orchestrator.engine.redisconn import RedisClient, connect
from orchestrator.engine.releases import ReleaseStore, make_release
from orchestrator.engine.state import RolloutStates
from schemas.boxfile import BoxSpec
from schemas.contract import Keys, Label, StepRequest, StepResult, TaskName
from schemas.fleet import FleetSettings
from schemas.release import Release
from schemas.rollout import Policy, RolloutState
from schemas.trust import Warrant
from tests.harness.common import TIMINGS, started, wait_for
from tests.harness.docker_fx import TEST_CONTAINER_LABELS, WebImages
from tests.harness.redis_fx import ProductRedis


@dataclass(frozen=True)
class PushedImages:
    """The test web images in the local registry, each pinned by digest."""

    repo: str  # HOST/orch-test-web
    v1: str
    v2: str
    broken: str


@pytest.fixture(scope="session")
def pushed_images(
    docker_client: docker.DockerClient, test_images: WebImages, registry: Registry
) -> PushedImages:
    refs = {
        name: registry.push(docker_client, getattr(test_images, name), "orch-test-web", name)
        for name in ("v1", "v2", "broken")
    }
    return PushedImages(repo=f"{registry.host}/orch-test-web", **refs)


def untag_local(client: docker.DockerClient, ref: str) -> None:
    """Forget a registry reference locally (the image stays under its test tag)."""
    engine.forget(client, ref)


@dataclass
class BoxWorkers:
    broker_url: str
    product: ProductRedis
    tmp: Path
    box_type: str
    started: list[BoxWorker] = field(default_factory=list)
    # Each fixture gets its own 127.x.y.0/24: parallel sessions never share an address.
    subnet: str = field(default_factory=subnet)

    def start(
        self, n: int = 1, *, extra_env: dict[str, str] | None = None, start: bool = True
    ) -> list[BoxWorker]:
        out = []
        for _ in range(n):
            index = len(self.started) + 1
            box_id = f"box{index}-{uuid.uuid4().hex[:6]}"
            env = worker_env(
                box_id, self.box_type, self.broker_url, self.product.url, self.product.prefix,
                TEST_CONTAINER_LABELS,
                bind_ip=f"{self.subnet}.{10 + index}",
                log_root=str(self.tmp / box_id / "logs"),
                heartbeat_interval=str(TIMINGS.heartbeat_interval),
                heartbeat_ttl=str(TIMINGS.heartbeat_ttl),
                step_deadline=str(TIMINGS.step_deadline),
                visibility_timeout=str(TIMINGS.visibility_timeout),
                restore_interval=str(TIMINGS.restore_interval),
                settle_time="0.3",
                drain_timeout="10",
                services_interval="1",
            )
            worker = BoxWorker(self.tmp, {**env, **(extra_env or {})})
            self.started.append(worker)
            if start:
                started(worker)
            out.append(worker)
        return out


@pytest.fixture
def box_workers(
    broker_url: str, product_redis: ProductRedis, tmp_path: Path, docker_client: docker.DockerClient
) -> Iterator[BoxWorkers]:
    workers = BoxWorkers(broker_url, product_redis, tmp_path, f"web{uuid.uuid4().hex[:6]}")
    yield workers
    for w in workers.started:
        w.stop()
    for w in workers.started:
        engine.remove_containers(docker_client, f"{Label.BOX}={w.box_id}")


@dataclass
class DeployKit:
    """The coordinator's side, as tests need it before the rollout CLI exists."""

    app: Celery
    client: RedisClient
    keys: Keys
    releases: ReleaseStore
    journal: Journal
    events: Events
    box_type: str

    def release(self, box_yml: str, images: dict[str, str], fleet: FleetSettings | None = None,
                **fmt: Any) -> Release:
        spec = BoxSpec.model_validate(yaml.safe_load(box_yml.format(**fmt)))
        release = dev_signer().release(make_release(self.box_type, spec, images, fleet,
                                                    reason="test"))
        self.releases.put(release)
        return release

    def set_current(self, release: Release) -> None:
        """Make `release` the box type's last successful one (as a rollout's end does), with
        the record the coordinator signs."""
        signed = dev_signer().current(f"t{uuid.uuid4().hex[:8]}", release)
        RolloutStates(self.client, self.keys).set_current(release.box_type, release.id, signed)

    def sign(self, req: StepRequest, release: Release, **order: Any) -> None:
        """The signed order the coordinator writes for a rollout (here, a bare box chain)."""
        states = RolloutStates(self.client, self.keys)
        signed = dev_signer().order(order.pop("kind", "rollout"), req.rollout_id, release,
                                    Policy(), **order)
        states.set_warrant(req.rollout_id, Warrant(order=signed))

    def request(self, release: Release, box_id: str, *, token: str | None = None,
                changed: list[str] | None = None, lb: list[str] | None = None,
                rollout_id: str | None = None) -> StepRequest:
        """A bare box chain's request. Its token is minted for the box now (as a claim would:
        valid while its rollout record, made here, lives), unless `token` reuses one."""
        changed = changed if changed is not None else list(release.spec.apps)
        rollout_id = rollout_id or f"t{uuid.uuid4().hex[:8]}"
        if token is None:
            token = self.take_box(box_id, rollout_id)
        req = StepRequest(
            rollout_id=rollout_id,
            box_id=box_id,
            box_type=self.box_type,
            release_id=release.id,
            release_hash=release.hash,
            token=token,
            changed_apps=changed,
            lb_apps=lb if lb is not None else [a for a in changed if release.spec.apps[a].elb],
        )
        self.sign(req, release)
        return req

    def take_box(self, box_id: str, rollout_id: str | None = None) -> str:
        """Make the box `rollout_id`'s (a new one by default), as a claim does; its token."""
        rollout_id = rollout_id or f"t{uuid.uuid4().hex[:8]}"
        states = RolloutStates(self.client, self.keys)
        if not states.state(rollout_id):
            states.move(rollout_id, RolloutState.RUNNING, fields={"box_type": self.box_type})
        return Lease(self.client, self.keys).fresh_token(
            self.box_type, box_id, rollout_id, kind="rollout")

    def send(self, req: StepRequest) -> StepRequest:
        box_chain(self.app, req).apply_async()
        return req

    def wait_end(self, req: StepRequest, timeout: float = 30.0,
                 last: TaskName = TaskName.ENSURE_SERVICES) -> dict[str, StepResult]:
        wait_for(lambda: self.journal.get(req.rollout_id, req.box_id, last.value, None),
                 f"{last.value} of {req.box_id} in the journal", timeout=timeout)
        return self.journal.entries(req.rollout_id, req.box_id)


@pytest.fixture
def deploy(broker_url: str, product_redis: ProductRedis,
           box_workers: BoxWorkers) -> Iterator[DeployKit]:
    app = make_celery(broker_url, visibility_timeout=TIMINGS.visibility_timeout)
    client = connect(product_redis.url)
    keys = Keys(product_redis.prefix)
    yield DeployKit(app, client, keys, ReleaseStore(client, keys), Journal(client, keys),
                    Events(client, keys), box_workers.box_type)
    app.close()
    client.close()


def wait_http(url: str, body: str, timeout: float = 10.0) -> str:
    import urllib.request

    def probe() -> str | None:
        with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback only
            text = resp.read().decode().strip()
        return text if text == body else None

    return wait_for(probe, f"{url} answering {body!r}", timeout=timeout)


def now() -> float:
    return time.monotonic()
