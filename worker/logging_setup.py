"""The worker's log lines: Celery's text format, or JSON naming each task's box, rollout, step."""

from __future__ import annotations

import contextvars
from typing import Any

from celery import signals

from orchestrator.engine import logs

_tokens: dict[str, contextvars.Token[dict[str, str] | None]] = {}


def _bind_task(task_id: str = "", task: Any = None, args: Any = None, **_: Any) -> None:
    payload = args[0] if args and isinstance(args[0], dict) else {}
    _tokens[task_id] = logs.bind(box=str(payload.get("box_id") or ""),
                                 rollout=str(payload.get("rollout_id") or ""),
                                 step=str(getattr(task, "name", "") or ""))


def _unbind_task(task_id: str = "", **_: Any) -> None:
    token = _tokens.pop(task_id, None)
    if token is not None:
        logs.unbind(token)


def _keep_ours(**_: Any) -> None:
    """Connected to `setup_logging`: Celery then leaves the root logger as configured."""


def setup(fmt: str, level: str, box_id: str) -> None:
    """`text`: Celery's own format (it has the level). `json`: ours, for every line, with the
    task's context bound around each task."""
    logs.configure(fmt, level, box=box_id)
    if fmt == "json":
        signals.setup_logging.connect(_keep_ours, weak=False)
        signals.task_prerun.connect(_bind_task, weak=False)
        signals.task_postrun.connect(_unbind_task, weak=False)
