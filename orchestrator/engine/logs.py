"""Log lines with a level on each; `json`: one object per line (time, level, box, rollout, step)."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any, Literal

from schemas.redaction import redact

LogFormat = Literal["text", "json"]
FORMATS = ("text", "json")
TEXT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# What the running task (or command) is about: set by the worker around each task.
_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "log_context", default=None
)
_box = {"box": ""}  # the process's own box (a worker's), when no task names one


def bind(**fields: str) -> contextvars.Token[dict[str, str] | None]:
    """Name the box, rollout and step of what runs now, for every line it logs."""
    return _context.set({**(_context.get() or {}), **{k: v for k, v in fields.items() if v}})


def unbind(token: contextvars.Token[dict[str, str] | None]) -> None:
    _context.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: journald and CloudWatch Logs store and search it as is."""

    def format(self, record: logging.LogRecord) -> str:
        ctx = _context.get() or {}
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "box": ctx.get("box") or _box["box"] or None,
            "rollout": ctx.get("rollout") or None,
            "step": ctx.get("step") or None,
            "message": redact(record.getMessage()),
        }
        if record.exc_info:
            out["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(out)


class TextFormatter(logging.Formatter):
    """TEXT lines, masked as every error a command shows is (a library's message may quote a
    URL with its password)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter(TEXT)


def configure(fmt: str = "text", level: str = "INFO", box: str = "") -> None:
    """The root logger to stderr in `fmt`; replaces any handler configured before."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: use text or json")
    _box["box"] = box
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
