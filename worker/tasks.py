"""Thin Celery tasks: JSON in, a step of worker/steps.py, JSON out. Names from the contract."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery

from schemas.contract import TaskName
from worker.rollout_steps import claim, finish
from worker.steps import STEPS, Body, StepContext, run_step

# Every step a chain can name; the contract test checks this against TaskName.
ALL_STEPS: dict[TaskName, Body] = {**STEPS, TaskName.CLAIM: claim, TaskName.FINISH: finish}


def register_tasks(app: Celery, context: Callable[[], StepContext]) -> None:
    """Register every task of the contract on `app`; `context` is built once per process."""

    def make(step: TaskName) -> Callable[..., dict[str, Any]]:
        body = ALL_STEPS[step]

        def task(payload: dict[str, Any]) -> dict[str, Any]:
            ctx = context()
            app = payload.get("app") if isinstance(payload, dict) else None
            if ctx.settings.fault_step in (step.value, f"{step.value}:{app}"):
                raise InjectedFault(f"{step.value}: injected by ORCHESTRATOR_FAULT_STEP")
            return run_step(ctx, step, payload, body)

        task.__name__ = step.value.replace(".", "_")
        task.__doc__ = (body.__doc__ or step.value).strip().splitlines()[0]
        return task

    for step in ALL_STEPS:
        app.task(name=step.value, bind=False, acks_late=True, shared=False)(make(step))
    app.task(name=TaskName.PREFLIGHT.value, acks_late=True, shared=False)(_preflight(context))
    app.task(name=TaskName.RESCUE.value, shared=False)(_rescue(context))


class InjectedFault(RuntimeError):
    """Raised on purpose (ORCHESTRATOR_FAULT_STEP) to prove that escaped errors are rescued."""


def _rescue(context: Callable[[], StepContext]) -> Callable[..., None]:
    def rescue(request: Any, exc: BaseException, traceback: Any) -> None:
        """A step raised instead of returning a failure: journal it, then restore and rejoin.

        Celery calls this errback with the failing task's request, in the worker that ran it.
        """
        from worker.steps import rescue_chain

        ctx = context()
        payload = request.args[0] if request.args else {}
        rescue_chain(ctx, str(request.task), payload, f"{type(exc).__name__}: {exc}")
        if _in_rollout(ctx, payload):
            # The chain stopped at the error, before its `finish`: without this the rollout
            # halted only once the box's slot expired (slot TTL, 30 s by default).
            run_step(ctx, TaskName.FINISH, {**payload, "app": None}, finish)

    return rescue


def _in_rollout(ctx: StepContext, payload: Any) -> bool:
    """A rollout's chain (it ends with `finish`), not a bare box chain."""
    if ctx.rollouts is None or not isinstance(payload, dict) or not payload.get("rollout_id"):
        return False
    return bool(ctx.redis.exists(ctx.keys.rollout_part(str(payload["rollout_id"]), "spec")))


def _preflight(context: Callable[[], StepContext]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def preflight(payload: dict[str, Any]) -> dict[str, Any]:
        """Answer what this box can do: contract, Docker, disk; pull the release's images."""
        from worker.preflight import run_preflight

        return run_preflight(context(), payload)

    return preflight
