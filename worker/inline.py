"""A box's chain runs on in the message of its step before: one Celery hop a box, not eight."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from celery import signals

from schemas.contract import TaskName, queue_for
from worker.taskevents import sender_for

log = logging.getLogger("orchestrator.worker")

Sig = dict[str, Any]  # a chain's signature as Celery carries it in the message


@dataclass(frozen=True)
class Next:
    """The chain's next step, to be run by the message that ran the step before it."""

    step: TaskName
    payload: dict[str, Any]
    rescued: bool  # an error escaping it goes to `rescue` (its signature's link_error)
    argsrepr: str


def next_step(
    chain: list[Sig] | None,
    payload: object,
    *,
    steps: Collection[str],
    elapsed: float,
    step_deadline: float,
    visibility_timeout: float,
    fault_step: str | None,
) -> Next | None:
    """The chain's next signature if this message may run it itself, else None (Celery sends it).

    Only a step of the same box and rollout, bound for the box's own queue (where Celery would
    have sent it: the same worker, in the same order). Never the step set to raise
    (`fault_step`): it must raise in its own message to reach its errback. And only while the
    message is sure to be acked before the broker's visibility timeout delivers it again: a
    step may take `step_deadline`."""
    if not chain or not isinstance(payload, dict):
        return None
    sig = chain[-1]
    if not isinstance(sig, dict) or not sig.get("immutable"):
        return None
    name, args = str(sig.get("task")), list(sig.get("args") or ())
    options = sig.get("options") or {}
    if name not in steps or len(args) != 1 or not isinstance(args[0], dict):
        return None
    nxt = args[0]
    box = payload.get("box_id")
    if (
        options.get("queue") != queue_for(str(box))
        or nxt.get("box_id") != box
        or nxt.get("rollout_id") != payload.get("rollout_id")
    ):
        return None
    if fault_step in (name, f"{name}:{nxt.get('app')}"):
        return None
    if elapsed + step_deadline >= visibility_timeout:
        return None
    return Next(TaskName(name), nxt, bool(options.get("link_error")), options.get("argsrepr") or "")


class Monitor:
    """What Flower (task events) and this worker's listeners (Celery's task_prerun and
    task_postrun signals: its /metrics) are told of the steps a message runs itself, as
    Celery tells them of a task's."""

    def __init__(self, task: Any) -> None:
        self._request = task.request
        self._app = task.app
        self._tasks = task.app.tasks
        self._enabled = bool(task.app.conf.worker_send_task_events)

    def received(self, uid: str, nxt: Next) -> None:
        self._send("task-received", uuid=uid, name=nxt.step.value, args=nxt.argsrepr,
                   kwargs="{}", root_id=self._request.root_id, parent_id=self._request.id,
                   retries=0, eta=None, expires=None)
        task = self._tasks.get(nxt.step.value)
        signals.task_prerun.send(sender=task, task_id=uid, task=task, args=(nxt.payload,),
                                 kwargs={})

    def succeeded(self, uid: str, nxt: Next, result: dict[str, Any], runtime: float) -> None:
        said = f"{result.get('outcome')}: {result.get('reason', '')}"[:200]
        self._send("task-succeeded", uuid=uid, result=said, runtime=runtime)
        # Celery's own line for a task, in the step's log context (bound at task_prerun).
        log.info("Task %s[%s] succeeded in %.3fs (in message %s): %s", nxt.step.value, uid,
                 runtime, self._request.id, said)
        self._postrun(uid, nxt, result, "SUCCESS")

    def failed(self, uid: str, nxt: Next, exc: BaseException) -> None:
        self._send("task-failed", uuid=uid, exception=repr(exc)[:200], traceback="")
        self._postrun(uid, nxt, exc, "FAILURE")

    def _postrun(self, uid: str, nxt: Next, retval: object, state: str) -> None:
        task = self._tasks.get(nxt.step.value)
        signals.task_postrun.send(sender=task, task_id=uid, task=task, args=(nxt.payload,),
                                  kwargs={}, retval=retval, state=state)

    def _send(self, kind: str, **fields: Any) -> None:
        if self._enabled:  # sent by the process's own thread: the step goes on at once
            sender_for(self._app).send(self._request.hostname, kind, **fields)


def run_rest(
    task: Any,
    payload: object,
    started: float,
    *,
    decide: Callable[[list[Sig] | None, object, float], Next | None],
    run: Callable[[Next], dict[str, Any]],
    rescue: Callable[[Next, str], None],
) -> None:
    """Run the chain's next steps here while `decide` allows; Celery sends what is left. The
    task still returns its own step's result (what Flower shows for it); each step run here
    journals its own.

    An error escaping a step ends the chain there, as it would in its own message: its
    errback (`rescue`) runs, and nothing after it is sent."""
    chain = task.request.chain
    monitor: Monitor | None = None
    while (nxt := decide(chain, payload, time.monotonic() - started)) is not None:
        chain.pop()
        monitor = monitor or Monitor(task)
        uid, began = str(uuid.uuid4()), time.monotonic()
        monitor.received(uid, nxt)
        try:
            result = run(nxt)
        except Exception as exc:
            log.exception("%s on %s raised", nxt.step, payload)
            monitor.failed(uid, nxt, exc)
            chain.clear()
            if nxt.rescued:
                _rescue_quietly(rescue, nxt, f"{type(exc).__name__}: {exc}")
            return
        monitor.succeeded(uid, nxt, result, time.monotonic() - began)


def _rescue_quietly(rescue: Callable[[Next, str], None], nxt: Next, error: str) -> None:
    """As Celery runs an errback: its own error is logged, never raised into the task."""
    try:
        rescue(nxt, error)
    except Exception:
        log.exception("the rescue of %s on %s raised", nxt.step, nxt.payload.get("box_id"))
