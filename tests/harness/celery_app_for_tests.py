"""A tiny Celery app with one task, `harness.ping`, used only by the harness's own test."""

from __future__ import annotations

import os

from celery import Celery

from tests.harness.common import TIMINGS

BROKER_ENV = "ORCH_TEST_BROKER_URL"


def ping(box_id: str) -> dict[str, object]:
    """Which process ran the task: proves it ran in the worker, not in the test."""
    return {"box": box_id, "pid": os.getpid()}


def make_app(broker_url: str) -> Celery:
    """The worker and the test process each build one; they share only task names."""
    app = Celery("orch_harness", broker=broker_url, backend=broker_url)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        broker_connection_retry_on_startup=True,
        # Short timings so a killed worker's message comes back within a test's patience.
        broker_transport_options={
            "visibility_timeout": TIMINGS.visibility_timeout,
            "unacked_restore_interval": TIMINGS.restore_interval,
            "unacked_restore_throttle": TIMINGS.restore_throttle,
        },
    )

    app.task(name="harness.ping")(ping)
    return app


# `celery -A tests.harness.celery_app_for_tests worker` finds this; a broker URL is required
# but a fallback keeps plain imports (linting, collection) from failing.
app = make_app(os.environ.get(BROKER_ENV, "redis://127.0.0.1:6379/0"))
