"""The Celery app both sides use: JSON only, late acks, one task at a time per box."""

from __future__ import annotations

from typing import Any

from celery import Celery

# Nothing should ever land here: every signature names its box's queue. A message in this
# queue is a routing bug, and a queue nobody consumes makes it visible instead of lost.
UNROUTED_QUEUE = "orchestrator.unrouted"


def make_celery(
    broker_url: str,
    *,
    visibility_timeout: float = 300.0,
    restore_interval: float = 5.0,
    main: str = "orchestrator",
) -> Celery:
    app = Celery(main, broker=broker_url, set_as_current=False)
    transport: dict[str, Any] = {
        "visibility_timeout": visibility_timeout,
        # kombu's defaults sweep unacked messages only every ~100 s; a dead box must not wait.
        "unacked_restore_interval": restore_interval,
        "unacked_restore_throttle": restore_interval,
        # No task has a priority: one list per queue, not kombu's four (0, 3, 6, 9). Its
        # BRPOP names every list of every queue a worker consumes, re-sent after each message.
        "priority_steps": [0],
    }
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_send_sent_event=True,
        worker_send_task_events=True,
        task_default_queue=UNROUTED_QUEUE,
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_track_started=True,
    )
    return app
