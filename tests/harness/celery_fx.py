"""Fixtures: real Celery worker subprocesses, one per simulated box, each on queue box.<id>."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.utils.nodenames import host_format

from tests.harness.common import TIMINGS, wait_for
from tests.harness.redis_fx import stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_APP = "tests.harness.celery_app_for_tests"
TEST_BROKER_ENV = "ORCH_TEST_BROKER_URL"
# Without these a killed worker's message waits ~1 h (visibility) and a ~100 s restore sweep.
TRANSPORT_OPTIONS: dict[str, float] = {
    "visibility_timeout": TIMINGS.visibility_timeout,
    "unacked_restore_interval": TIMINGS.restore_interval,
    "unacked_restore_throttle": TIMINGS.restore_throttle,
}
STOP_TIMEOUT = 10.0


@dataclass
class CeleryWorker:
    proc: subprocess.Popen[bytes]
    box_id: str
    queue: str  # "box.<id>"
    node_name: str  # "box-<id>@<hostname>", %h already expanded
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Warm shutdown (SIGTERM: finishes the running task), then SIGKILL at the deadline."""
        stop_process(self.proc, timeout)

    def kill(self) -> None:
        """SIGKILL the main process: its unacked message stays in Redis until restored."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT)


WorkerFactory = Callable[..., CeleryWorker]


def _ready(worker: CeleryWorker) -> bool:
    if worker.proc.poll() is not None:
        raise RuntimeError(
            f"worker {worker.node_name} exited with {worker.proc.returncode}:\n"
            f"{worker.log()[-3000:]}"
        )
    return f"{worker.node_name} ready." in worker.log()


@pytest.fixture
def celery_worker_factory(
    broker_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerFactory]:
    """start(box_id, app=TEST_APP, *, env=None, broker_env=TEST_BROKER_ENV, pool="solo",
    transport_options=TRANSPORT_OPTIONS, extra_args=()) -> CeleryWorker, ready to consume.

    The broker URL reaches the worker in the environment variable `broker_env`.
    `transport_options` (None: leave the app's own) is set on the worker's command line and
    replaces the app's broker_transport_options. Use box ids unique to the test: a queue
    left with messages by another test would feed them to this worker.
    """
    log_dir = tmp_path_factory.mktemp("celery")
    started: list[CeleryWorker] = []

    def start(
        box_id: str,
        app: str = TEST_APP,
        *,
        env: Mapping[str, str] | None = None,
        broker_env: str = TEST_BROKER_ENV,
        pool: str = "solo",
        transport_options: Mapping[str, Any] | None = TRANSPORT_OPTIONS,
        extra_args: Sequence[str] = (),
        ready_timeout: float = TIMINGS.service_start,
    ) -> CeleryWorker:
        queue, node = f"box.{box_id}", f"box-{box_id}@%h"
        args = [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queue, "-n", node]
        args += ["-c", "1", "-P", pool, "-l", "INFO", "--without-gossip", "--without-mingle"]
        args += extra_args
        if transport_options is not None:
            args += ["--", "broker_transport_options=(json)" + json.dumps(dict(transport_options))]
        child_env = {
            **os.environ,
            **(env or {}),
            broker_env: broker_url,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
            ),
            "PYTHONUNBUFFERED": "1",
        }
        log_path = log_dir / f"box-{box_id}-{len(started)}.log"
        with log_path.open("wb") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                args, cwd=REPO_ROOT, env=child_env, stdout=log, stderr=subprocess.STDOUT
            )
        worker = CeleryWorker(proc, box_id, queue, host_format(node), log_path)
        started.append(worker)
        wait_for(
            lambda: _ready(worker),
            f"worker {worker.node_name} ready (log {log_path})",
            ready_timeout,
        )
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()


@pytest.fixture
def harness_celery_app(broker_url: str) -> Iterator[Celery]:
    """The test process's side of celery_app_for_tests: send tasks by name, read results."""
    from tests.harness.celery_app_for_tests import make_app

    app = make_app(broker_url)
    try:
        yield app
    finally:
        app.close()
