"""Fixtures: real Celery worker subprocesses, one per simulated box, each on queue box.<id>."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest
from celery import Celery

from devstack.workers import CeleryWorker
from tests.harness.common import TIMINGS, started

TEST_APP = "tests.harness.celery_app_for_tests"
TEST_BROKER_ENV = "ORCH_TEST_BROKER_URL"
# Without these a killed worker's message waits ~1 h (visibility) and a ~100 s restore sweep.
TRANSPORT_OPTIONS: dict[str, float] = {
    "visibility_timeout": TIMINGS.visibility_timeout,
    "unacked_restore_interval": TIMINGS.restore_interval,
    "unacked_restore_throttle": TIMINGS.restore_throttle,
}

WorkerFactory = Callable[..., CeleryWorker]


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
    workers: list[CeleryWorker] = []

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
        worker = CeleryWorker(
            log_dir, app, f"box.{box_id}", f"box-{box_id}@%h", f"box-{box_id}-{len(workers)}",
            env={**os.environ, **(env or {}), broker_env: broker_url}, pool=pool,
            extra_args=extra_args, transport_options=transport_options,
        )
        workers.append(worker)
        return started(worker, ready_timeout)

    try:
        yield start
    finally:
        for worker in workers:
            worker.stop()  # warm shutdown (SIGTERM: finishes the running task), then SIGKILL


@pytest.fixture
def harness_celery_app(broker_url: str) -> Iterator[Celery]:
    """The test process's side of celery_app_for_tests: send tasks by name, read results."""
    from tests.harness.celery_app_for_tests import make_app

    app = make_app(broker_url)
    try:
        yield app
    finally:
        app.close()
