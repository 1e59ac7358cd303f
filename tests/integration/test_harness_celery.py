"""The Celery harness: a task sent by name runs in a worker subprocess through real Redis."""

from __future__ import annotations

import os
import uuid

from celery import Celery

from tests.harness.celery_fx import TRANSPORT_OPTIONS, WorkerFactory
from tests.harness.common import TIMINGS


def test_ping_runs_in_the_box_worker_process(
    celery_worker_factory: WorkerFactory, harness_celery_app: Celery
) -> None:
    box_id = uuid.uuid4().hex[:8]
    worker = celery_worker_factory(box_id)
    assert worker.queue == f"box.{box_id}" and worker.node_name.startswith(f"box-{box_id}@")

    result = harness_celery_app.send_task("harness.ping", args=[box_id], queue=worker.queue)
    reply = result.get(timeout=TIMINGS.event_wait)

    assert reply == {"box": box_id, "pid": worker.proc.pid}
    assert reply["pid"] != os.getpid()

    # The short redelivery timings reached the worker (else a killed worker's task waits 1 h).
    conf = harness_celery_app.control.inspect([worker.node_name], timeout=5, limit=1).conf()
    assert conf is not None
    options = conf[worker.node_name]["broker_transport_options"]
    assert options["visibility_timeout"] == TRANSPORT_OPTIONS["visibility_timeout"]
    assert options["unacked_restore_interval"] == TRANSPORT_OPTIONS["unacked_restore_interval"]

    worker.stop()
    assert worker.proc.returncode == 0  # warm shutdown, not a kill
