"""The Celery floor: no-op tasks on the product's own Celery configuration (make_celery).

Started by benchmarks/overhead.py as `celery -A benchmarks._floor_app worker` with the same
worker options as `orchestrator-worker` (solo pool, -E, no gossip, no mingle, INFO log).
"""

from __future__ import annotations

import os
import time

import redis

from orchestrator.engine.celery_app import make_celery

QUEUE = "floor"
NOOP = "floor.noop"
MARK = "floor.mark"
DONE_KEY = "bench:floor:done"

app = make_celery(os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/0"), main="floor")


@app.task(name=NOOP, acks_late=True)
def noop(payload: dict[str, object] | None = None) -> None:
    """Does nothing: what is left of a step is Celery's own work."""
    return None


@app.task(name=MARK, acks_late=True)
def mark(payload: dict[str, object] | None = None) -> None:
    """The chain's last task: tell the benchmark when it ran (one RPUSH)."""
    with redis.Redis.from_url(os.environ["BENCH_MARK_URL"]) as client:
        client.rpush(DONE_KEY, time.time())


NEXT = "floor.next"


def box_chain(payload: dict[str, object], steps: int, boxes_left: int) -> object:
    """`steps` tasks for one box, the last of which starts the next box's chain (as `finish`
    does): the floor of the same self-driving shape as a rollout."""
    from celery import chain

    sigs = [app.signature(NOOP, args=(payload,), immutable=True, queue=QUEUE)
            for _ in range(steps - 1)]
    sigs.append(app.signature(NEXT, args=(payload, steps, boxes_left - 1), immutable=True,
                              queue=QUEUE))
    return chain(*sigs)


@app.task(name=NEXT, acks_late=True)
def next_box(payload: dict[str, object], steps: int, boxes_left: int) -> None:
    if boxes_left > 0:
        box_chain(payload, steps, boxes_left).apply_async()  # type: ignore[attr-defined]
    else:
        mark(payload)
