"""Services started together under one directory and stopped together, by PID, whatever happens."""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self, TypeVar

from devstack.process import Service, stop_pids

S = TypeVar("S", bound=Service)


def interrupt_on_sigterm() -> None:
    """SIGTERM (and SIGINT, which a shell's background job starts with ignored) end the run
    like Ctrl-C: the clean-up of every `with` and `finally` still stops each process."""

    def interrupted(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)


class Stack:
    """`with Stack("demo") as s: redis = s.add(RedisServer(s.dir)); s.start(redis, ...)`.
    Stopping goes by stage (box workers and Flower first, the broker last); records() is
    what another process needs to stop them (stop_pids)."""

    def __init__(self, prefix: str, workdir: Path | None = None) -> None:
        self.dir = workdir or Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
        self.services: list[Service] = []

    def add(self, service: S) -> S:
        self.services.append(service)
        return service

    def start(self, *services: Service, timeout: float | None = None) -> None:
        """Launch them all, then wait for each: their start-up times overlap."""
        for service in services:
            if service not in self.services:
                self.add(service)
            service.launch()
        for service in services:
            service.wait_ready(timeout)

    def records(self) -> list[dict[str, Any]]:
        return [s.record() for s in self.services if s.proc is not None]

    def stop(self, grace: float = 8.0) -> list[str]:
        """Stop every process still running; the names of those that needed SIGKILL."""
        killed = stop_pids([s.record() for s in self.services if s.running], grace)
        for service in self.services:
            service.stop(timeout=5)  # reaps it (already ended: no signal)
        return killed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
