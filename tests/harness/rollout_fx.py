"""Fixtures: a box type on disk, its workers behind a real HAProxy, and the `orchestrator` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orchestrator.engine.lb.haproxy import HAProxyLB
from tests.harness.box_fx import BoxWorker, BoxWorkers, PushedImages
from tests.harness.common import TIMINGS, wait_for
from tests.harness.haproxy_fx import HAProxyHandle
from tests.harness.redis_fx import ProductRedis

WEB_YML = """\
apps:
  web:
    elb: web
    lb_kind: haproxy
    image: {image}
    containers:
      web:
        ports: ["18080:8080"]
        health: {{http: /health, interval: 0.1, timeout: 1, retries: 15}}
"""

ROLLOUT_TIMINGS = {
    "ORCHESTRATOR_LEASE_TTL": str(TIMINGS.lease_ttl),
    "ORCHESTRATOR_SLOT_TTL": str(TIMINGS.lease_ttl),
}


@dataclass
class Fleet:
    """One box type: boxes/<type>.yml, N worker boxes, HAProxy in front, a CLI to drive it."""

    box_type: str
    boxes_dir: Path
    workers: list[BoxWorker]
    proxy: HAProxyHandle
    env: dict[str, str]
    images: PushedImages
    tmp: Path
    runs: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def lb(self) -> HAProxyLB:
        return HAProxyLB(self.proxy.socket_path, "web")

    def write(self, image: str, text: str = WEB_YML) -> None:
        (self.boxes_dir / f"{self.box_type}.yml").write_text(text.format(image=image))

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", *args],
            env=self.env, capture_output=True, text=True, timeout=timeout,
        )

    def start_cli(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", *args],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.runs.append(proc)
        return proc

    def in_service(self) -> dict[str, bool]:
        return {w.box_id: self.lb.state(w.box_id).in_service for w in self.workers}

    def wait_all_in_service(self) -> None:
        wait_for(lambda: all(self.in_service().values()), "every box in service")


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def fleet_factory(
    box_workers: BoxWorkers, product_redis: ProductRedis, broker_url: str,
    pushed_images: PushedImages, haproxy_factory: Callable[..., HAProxyHandle], tmp_path: Path,
) -> Iterator[Callable[..., Fleet]]:
    made: list[Fleet] = []

    def make(n: int = 3, *, extra_env: dict[str, str] | None = None) -> Fleet:
        workers = box_workers.start(n, start=False, extra_env={**ROLLOUT_TIMINGS,
                                                              **(extra_env or {})})
        proxy = haproxy_factory([(w.box_id, w.bind_ip, 18080) for w in workers],
                                wait_healthy=False)
        for w in workers:
            w.env["ORCHESTRATOR_HAPROXY_SOCKET"] = proxy.socket_path
            w.start()
        boxes = tmp_path / "boxes"
        boxes.mkdir(exist_ok=True)
        env = {
            **os.environ,
            "ORCHESTRATOR_BOXES_DIR": str(boxes),
            "ORCHESTRATOR_BROKER_URL": broker_url,
            "ORCHESTRATOR_REDIS_URL": product_redis.url,
            "ORCHESTRATOR_KEY_PREFIX": product_redis.prefix,
            "ORCHESTRATOR_PREFLIGHT_TIMEOUT": "20",
            "ORCHESTRATOR_WATCH_INTERVAL": "0.05",
            **ROLLOUT_TIMINGS,
        }
        fleet = Fleet(box_workers.box_type, boxes, workers, proxy, env, pushed_images, tmp_path)
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        for proc in fleet.runs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)
