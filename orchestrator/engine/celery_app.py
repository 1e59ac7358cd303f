"""The Celery app both sides use: JSON only, late acks, one task at a time per box."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import kombu.exceptions
from celery import Celery
from kombu.entity import Exchange, Queue

from orchestrator.engine.redisurl import is_sentinel, kombu_broker
from orchestrator.engine.tls import TlsPolicy
from orchestrator.errors import ServiceUnavailable

# Nothing should ever land here: every signature names its box's queue. A message in this
# queue is a routing bug, and a queue nobody consumes makes it visible instead of lost.
UNROUTED_QUEUE = "orchestrator.unrouted"


def brief(payload: dict[str, Any]) -> str:
    """A step request's `argsrepr` (what Flower shows as the task's args), said in a few
    words: left to Celery, its saferepr of the whole request costs more than sending it."""
    app = f" app={payload['app']}" if payload.get("app") else ""
    return f"(rollout={payload.get('rollout_id')} box={payload.get('box_id')}{app})"


# Sends name their queue and go through the anonymous exchange (an LPUSH on the queue's list):
# the binding kombu declares first for each new queue (a size read and two SADDs, two round
# trips) routes nothing here, and a CLI that sends to 5,000 boxes did it 5,000 times.
NO_DECLARE: dict[str, Any] = {"declare": []}


@contextlib.contextmanager
def batched(app: Celery) -> Iterator[Any]:
    """One producer whose sends (with their task-sent events) go to the broker together, in
    one pipeline a thousand commands long, when the block ends (kombu >= 5.7 on plain Redis;
    elsewhere each is sent as before). A round trip and a fresh Redis client a command cost
    more than a message: 5,000 preflights took ~3 ms of CPU each (0.7 ms batched)."""
    with app.producer_or_acquire() as producer:
        batch = getattr(producer, "batch", None)
        try:
            with batch() if batch is not None else contextlib.nullcontext():
                yield producer
        except getattr(kombu.exceptions, "BatchPublishError", ()) as exc:
            raise ServiceUnavailable(f"the broker did not take a batch of messages: "
                                     f"{exc.__cause__ or exc}") from exc


def make_celery(
    broker_url: str,
    *,
    visibility_timeout: float = 300.0,
    restore_interval: float = 5.0,
    main: str = "orchestrator",
    tls: TlsPolicy | None = None,
) -> Celery:
    # sentinel(s)://: kombu's Sentinel transport, one URL per sentinel, `master_name` below.
    url, sentinel_options = kombu_broker(broker_url, tls)
    app = Celery(main, broker=url, set_as_current=False)
    transport: dict[str, Any] = {
        **sentinel_options,
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
    if is_sentinel(broker_url):
        # A message sent during a failover waits for the promotion (a few seconds), as
        # the state client's commands do, instead of failing after kombu's 0.6 s.
        app.conf.task_publish_retry_policy = {
            "max_retries": 20, "interval_start": 0, "interval_step": 0.25, "interval_max": 1.0,
        }
    ssl_options = (tls or TlsPolicy()).broker_ssl(broker_url)
    if ssl_options is not None:  # kombu alone would take a bare rediss:// with CERT_NONE
        app.conf.broker_use_ssl = ssl_options
    return app


def ensure_routes(app: Celery, queue_names: list[str]) -> list[str]:
    """Declare again the routes of `queue_names` that the broker lost; returns those re-made.

    A broker Redis that restarts without persistence (or is wiped) forgets kombu's binding
    tables (`_kombu.binding.<exchange>`): every message sent to the queue is then dropped with
    "Cannot route message". A live consumer does not notice; its heartbeat calls this.
    """
    remade = []
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for name in queue_names:
            if not channel.get_table(name):
                exchange = Exchange(name, type="direct")  # type: ignore[no-untyped-call]
                queue = Queue(name, exchange, routing_key=name)  # type: ignore[no-untyped-call]
                queue.declare(channel=channel)  # type: ignore[no-untyped-call]
                remade.append(name)
    return remade
