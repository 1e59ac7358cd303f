"""Thin Celery tasks: JSON in, a step of worker/steps.py, JSON out. Names from the contract."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery

from schemas.contract import TaskName
from worker.steps import STEPS, StepContext, run_step


def register_tasks(app: Celery, context: Callable[[], StepContext]) -> None:
    """Register every task of the contract on `app`; `context` is built once per process."""

    def make(step: TaskName) -> Callable[..., dict[str, Any]]:
        body = STEPS[step]

        def task(payload: dict[str, Any]) -> dict[str, Any]:
            return run_step(context(), step, payload, body)

        task.__name__ = step.value.replace(".", "_")
        task.__doc__ = (body.__doc__ or step.value).strip().splitlines()[0]
        return task

    for step in STEPS:
        app.task(name=step.value, bind=False, acks_late=True)(make(step))
    app.task(name=TaskName.PREFLIGHT.value, acks_late=True)(_preflight(context))


def _preflight(context: Callable[[], StepContext]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def preflight(payload: dict[str, Any]) -> dict[str, Any]:
        """Answer what this box can do: contract, Docker, disk; pull the release's images."""
        from worker.preflight import run_preflight

        return run_preflight(context(), payload)

    return preflight
