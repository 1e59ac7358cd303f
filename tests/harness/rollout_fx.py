"""Fixtures: a box type on disk, its workers behind a real HAProxy, and the `orchestrator` CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devstack.haproxy import HAProxy
from devstack.images import web_box_yml
from devstack.process import ServiceError
from devstack.workers import BoxWorker, cli_env
from orchestrator.engine.lb.haproxy import HAProxyLB
from tests.harness.box_fx import BoxWorkers, PushedImages
from tests.harness.common import TIMINGS, started, wait_for
from tests.harness.redis_fx import ProductRedis

PORT = 18080  # what every box publishes, each on its own address

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
    proxy: HAProxy
    env: dict[str, str]
    images: PushedImages
    tmp: Path
    runs: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def lb(self) -> HAProxyLB:
        return HAProxyLB(self.proxy.socket_path, "web")

    def write(self, image: str, **options: Any) -> None:
        """boxes/<type>.yml: the web app at `image` (options: devstack's web_box_yml's)."""
        (self.boxes_dir / f"{self.box_type}.yml").write_text(web_box_yml(image, PORT, **options))

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", *args],
            env=self.env, capture_output=True, text=True, timeout=timeout,
        )

    def status_with(self, **env: str) -> tuple[int, str]:
        """`status` with these settings, Redis not waited for unless they say: (exit code,
        all its output)."""
        self.env.update({"ORCHESTRATOR_REDIS_WAIT": "0", **env})
        run = self.cli("status", self.box_type)
        return run.returncode, run.stdout + run.stderr

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

    def status_at_rest(self) -> subprocess.CompletedProcess[str]:
        """`status --json` once no box reports a step under way. A box's heartbeat is up to
        an interval old (more on a loaded machine): right after a rollout it may still say
        busy, with no flags and the memberships of its last look before the step."""
        last: list[subprocess.CompletedProcess[str]] = []

        def at_rest() -> subprocess.CompletedProcess[str] | None:
            last[:] = [self.cli("status", self.box_type, "--json")]
            rows = json_lines(last[0].stdout) if last[0].returncode == 0 else [{"busy": "?"}]
            return last[0] if not any(r.get("busy") for r in rows) else None

        try:
            return wait_for(at_rest, "every box's heartbeat at rest", timeout=30, interval=0.2)
        except AssertionError:
            print(last[0].stdout, last[0].stderr)  # whole, in the failure's report
            raise


def json_lines(text: str) -> list[dict[str, object]]:
    """JSON lines (a rollout's events), or the one JSON array a read command prints."""
    docs = [json.loads(line) for line in text.splitlines() if line.strip()]
    return docs[0] if len(docs) == 1 and isinstance(docs[0], list) else docs


@pytest.fixture
def fleet_factory(
    box_workers: BoxWorkers, product_redis: ProductRedis, broker_url: str,
    pushed_images: PushedImages, haproxy_factory: Callable[..., HAProxy], tmp_path: Path,
) -> Iterator[Callable[..., Fleet]]:
    made: list[Fleet] = []

    def make(n: int = 3, *, extra_env: dict[str, str] | None = None,
             haproxy: dict[str, bool] | None = None) -> Fleet:
        """`n` boxes behind one HAProxy; `haproxy`: its options (reloadable, state_file)."""
        workers = box_workers.start(n, start=False, extra_env={**ROLLOUT_TIMINGS,
                                                              **(extra_env or {})})
        proxy = haproxy_factory([(w.box_id, w.bind_ip, PORT) for w in workers],
                                wait_healthy=False, **(haproxy or {}))
        for w in workers:
            w.env["ORCHESTRATOR_HAPROXY_SOCKET"] = proxy.socket_path
            started(w)
        boxes = tmp_path / "boxes"
        boxes.mkdir(exist_ok=True)
        env = cli_env(boxes, broker_url, product_redis.url, product_redis.prefix,
                      preflight_timeout="20", watch_interval="0.05",
                      haproxy_socket=proxy.socket_path)
        env.update(ROLLOUT_TIMINGS)
        fleet = Fleet(box_workers.box_type, boxes, workers, proxy, env, pushed_images, tmp_path)
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        for proc in fleet.runs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)


def with_fault(worker: BoxWorker, point: str,
               timeout: float = TIMINGS.service_start) -> BoxWorker:
    """The worker restarted with ORCHESTRATOR_FAULT_POINT=`point`: it stops (or dies) itself
    there, at a recorded point, when a step reaches it."""
    worker.stop()
    worker.env["ORCHESTRATOR_FAULT_POINT"] = point
    return started(worker, timeout)


def paused(worker: BoxWorker) -> bool:
    """The worker's process is stopped (state T): it SIGSTOPped itself at its fault point."""
    state = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state == "T"


def wait_paused(worker: BoxWorker, run: subprocess.Popen[str], what: str,
                timeout: float = 90.0) -> None:
    """Wait until `worker` pauses at its fault point. If the rollout `run` ends first, the
    point was never reached: fail at once with the rollout's output, not at the deadline."""
    def probe() -> bool:
        if run.poll() is not None:
            out, err = run.communicate()
            raise ServiceError(f"the rollout ended (exit {run.returncode}) before {what}:\n"
                               f"{out}{err}")
        return paused(worker)

    wait_for(probe, what, timeout=timeout)
