"""Thin Celery tasks: JSON in, a step of worker/steps, JSON out. Names from the contract."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from celery import Celery, Task

from orchestrator.errors import InjectedFault
from schemas.contract import TaskName
from worker import inline, recovery
from worker.steps.protocol import StepContext, run_step
from worker.steps.registry import STEPS

STEP_NAMES = frozenset(step.value for step in STEPS)


def register_tasks(app: Celery, context: Callable[[], StepContext]) -> None:
    """Register every task of the contract on `app`; `context` is built once per process."""

    def make(step: TaskName) -> Callable[..., dict[str, Any]]:
        body = STEPS[step]

        def task(self: Task, payload: dict[str, Any]) -> dict[str, Any]:
            ctx = context()
            app = payload.get("app") if isinstance(payload, dict) else None
            if ctx.settings.fault_step in (step.value, f"{step.value}:{app}"):
                # Raised before run_step, which would journal it: it must reach `rescue`.
                raise InjectedFault(f"{step.value}: injected by ORCHESTRATOR_FAULT_STEP")
            started = time.monotonic()
            result = run_step(ctx, step, payload, body)
            _run_rest(self, ctx, payload, started)
            return result

        task.__name__ = step.value.replace(".", "_")
        task.__doc__ = (body.__doc__ or step.value).strip().splitlines()[0]
        return task

    for step in STEPS:
        app.task(name=step.value, bind=True, acks_late=True, shared=False)(make(step))
    app.task(name=TaskName.PREFLIGHT.value, acks_late=True, shared=False)(_preflight(context))
    app.task(name=TaskName.MIGRATE.value, acks_late=True, shared=False)(_migrate(context))
    app.task(name=TaskName.RESCUE.value, shared=False)(_rescue(context))
    app.task(name=TaskName.SECRETS.value, shared=False)(_secrets(context))


def _run_rest(task: Task, ctx: StepContext, payload: object, started: float) -> None:
    """The chain's next steps of this box, run in this message (worker/inline.py)."""
    settings = ctx.settings

    def decide(chain: list[inline.Sig] | None, first: object, elapsed: float) -> inline.Next | None:
        return inline.next_step(
            chain, first, steps=STEP_NAMES, elapsed=elapsed,
            step_deadline=settings.step_deadline,
            visibility_timeout=settings.visibility_timeout, fault_step=settings.fault_step,
        )

    inline.run_rest(
        task, payload, started, decide=decide,
        run=lambda nxt: run_step(ctx, nxt.step, nxt.payload, STEPS[nxt.step]),
        rescue=lambda nxt, error: recovery.rescue(ctx, nxt.step.value, nxt.payload, error),
    )


def _secrets(context: Callable[[], StepContext]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def secrets(payload: dict[str, Any]) -> dict[str, Any]:
        """Which apps' secret values changed since they started (names only)."""
        from worker.query import run_secrets_query

        return run_secrets_query(context(), payload)

    return secrets


def _rescue(context: Callable[[], StepContext]) -> Callable[..., None]:
    def rescue(request: Any, exc: BaseException, traceback: Any) -> None:
        """A step raised instead of returning a failure: journal it, then restore and rejoin.

        Celery calls this errback with the failing task's request, in the worker that ran it.
        """
        payload = request.args[0] if request.args else {}
        recovery.rescue(context(), str(request.task), payload, f"{type(exc).__name__}: {exc}")

    return rescue


def _preflight(context: Callable[[], StepContext]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def preflight(payload: dict[str, Any]) -> dict[str, Any]:
        """Answer what this box can do: contract, Docker, disk; pull the release's images."""
        from worker.preflight import run_preflight

        return run_preflight(context(), payload)

    return preflight


def _migrate(context: Callable[[], StepContext]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def migrate(payload: dict[str, Any]) -> dict[str, Any]:
        """Run the rollout's one-off task once, in a container of the new image."""
        from worker.migrate import run_migration

        return run_migration(context(), payload)

    return migrate
