"""Fixtures: real `orchestrator-worker` subprocesses (one per simulated box) and a deploy kit."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
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

from orchestrator.engine.celery_app import make_celery
from orchestrator.engine.chains import box_chain
from orchestrator.engine.events import Events
from orchestrator.engine.journal import Journal
from orchestrator.engine.lease import Lease
from orchestrator.engine.redisconn import RedisClient, connect
from orchestrator.engine.releases import ReleaseStore, make_release
from orchestrator.engine.state import RolloutStates
from schemas.boxfile import BoxSpec
from schemas.contract import Keys, StepRequest, StepResult, TaskName
from schemas.fleet import FleetSettings
from schemas.release import Release
from schemas.rollout import RolloutState
from tests.harness.common import TIMINGS, wait_for
from tests.harness.docker_fx import TEST_CONTAINER_LABELS, WebImages
from tests.harness.redis_fx import ProductRedis, stop_process
from tests.harness.registry_fx import Registry


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
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.remove(ref)


@dataclass
class BoxWorker:
    """One simulated box: an `orchestrator-worker` process with its own queue and address."""

    box_id: str
    box_type: str
    bind_ip: str
    log_root: Path
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout: float = TIMINGS.service_start) -> BoxWorker:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker.main", "--loglevel", "INFO"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for(
            lambda: b" ready." in self.log_path.read_bytes() or self._died(),
            f"worker {self.box_id} ready (log {self.log_path})",
            timeout=ready_timeout,
        )
        if self._died():
            raise RuntimeError(f"worker {self.box_id} exited:\n{self.log()}")
        return self

    def _died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


@dataclass
class BoxWorkers:
    broker_url: str
    product: ProductRedis
    tmp: Path
    box_type: str
    started: list[BoxWorker] = field(default_factory=list)
    # Each fixture gets its own 127.x.y.0/24 (all of 127/8 is loopback): parallel sessions
    # on one machine never fight over the same address and port.
    subnet: str = field(
        default_factory=lambda: f"127.{random.randint(1, 250)}.{random.randint(1, 250)}"
    )

    def start(
        self, n: int = 1, *, extra_env: dict[str, str] | None = None, start: bool = True
    ) -> list[BoxWorker]:
        out = []
        for _ in range(n):
            index = len(self.started) + 1
            box_id = f"box{index}-{uuid.uuid4().hex[:6]}"
            bind_ip = f"{self.subnet}.{10 + index}"
            log_root = self.tmp / box_id / "logs"
            env = {
                **os.environ,
                "ORCHESTRATOR_BOX_ID": box_id,
                "ORCHESTRATOR_BOX_TYPE": self.box_type,
                "ORCHESTRATOR_BROKER_URL": self.broker_url,
                "ORCHESTRATOR_REDIS_URL": self.product.url,
                "ORCHESTRATOR_KEY_PREFIX": self.product.prefix,
                "ORCHESTRATOR_BIND_IP": bind_ip,
                "ORCHESTRATOR_LOG_ROOT": str(log_root),
                "ORCHESTRATOR_STATE_DIR": str(self.tmp / box_id / "state"),
                "ORCHESTRATOR_HAPROXY_SERVER": box_id,
                "ORCHESTRATOR_HEARTBEAT_INTERVAL": str(TIMINGS.heartbeat_interval),
                "ORCHESTRATOR_HEARTBEAT_TTL": str(TIMINGS.heartbeat_ttl),
                "ORCHESTRATOR_STEP_DEADLINE": str(TIMINGS.step_deadline),
                "ORCHESTRATOR_VISIBILITY_TIMEOUT": str(TIMINGS.visibility_timeout),
                "ORCHESTRATOR_RESTORE_INTERVAL": str(TIMINGS.restore_interval),
                "ORCHESTRATOR_SETTLE_TIME": "0.3",
                "ORCHESTRATOR_DRAIN_TIMEOUT": "10",
                "ORCHESTRATOR_SERVICES_INTERVAL": "1",
                "ORCHESTRATOR_EXTRA_LABELS": json.dumps(TEST_CONTAINER_LABELS),
                **(extra_env or {}),
            }
            worker = BoxWorker(
                box_id, self.box_type, bind_ip, log_root, env, self.tmp / f"{box_id}.log"
            )
            self.started.append(worker)
            if start:
                worker.start()
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
        # sparse: no inspect per container, which races with other sessions' clean-ups.
        for c in docker_client.containers.list(
            all=True, sparse=True, filters={"label": f"orchestrator.box={w.box_id}"}
        ):
            with contextlib.suppress(docker.errors.NotFound):
                c.remove(force=True)


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
        release = make_release(self.box_type, spec, images, fleet, reason="test")
        self.releases.put(release)
        return release

    def set_current(self, release: Release) -> None:
        """Make `release` the box type's last successful one (as a rollout's end does)."""
        RolloutStates(self.client, self.keys).set_current(release.box_type, release.id)

    def request(self, release: Release, box_id: str, *, token: str | None = None,
                changed: list[str] | None = None, lb: list[str] | None = None,
                rollout_id: str | None = None) -> StepRequest:
        """A bare box chain's request. Its token is minted for the box now (as a claim would:
        valid while its rollout record, made here, lives), unless `token` reuses one."""
        changed = changed if changed is not None else list(release.spec.apps)
        rollout_id = rollout_id or f"t{uuid.uuid4().hex[:8]}"
        if token is None:
            states = RolloutStates(self.client, self.keys)
            if not states.state(rollout_id):
                states.move(rollout_id, RolloutState.RUNNING, fields={"box_type": self.box_type})
            token = Lease(self.client, self.keys).fresh_token(
                self.box_type, box_id, rollout_id, kind="rollout")
        return StepRequest(
            rollout_id=rollout_id,
            box_id=box_id,
            box_type=self.box_type,
            release_id=release.id,
            release_hash=release.hash,
            token=token,
            changed_apps=changed,
            lb_apps=lb if lb is not None else [a for a in changed if release.spec.apps[a].elb],
        )

    def supersede(self, box_id: str) -> str:
        """Another chain takes the box (as a newer claim does); its token."""
        return self.request_token(box_id, f"t{uuid.uuid4().hex[:8]}")

    def request_token(self, box_id: str, rollout_id: str) -> str:
        states = RolloutStates(self.client, self.keys)
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
