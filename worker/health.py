"""Prove a freshly started container healthy (http, tcp or command check) within a deadline."""

from __future__ import annotations

import builtins
import http.client
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from orchestrator.errors import HealthCheckFailed, OrchestratorError
from schemas.boxfile import ContainerSpec, HealthCheck
from worker.runtime import ContainerFact, PortBinding

# How often the state is polled while a check-less container settles: a crash shows at once.
SETTLE_POLL = 0.1
# docker-proxy accepts on the published port even when nothing listens in the container, and
# closes the connection right after; a TCP check waits this long for that close.
TCP_CLOSE_WAIT = 0.2
_ALL_ADDRESSES = ("", "0.0.0.0", "::")


class HealthRuntime:
    """The part of ContainerRuntime a health check uses (a Protocol in spirit; see below)."""


try:  # a Protocol keeps fakes in tests free of the runtime's other methods
    from typing import Protocol

    class _Runtime(Protocol):
        def list(
            self, labels: dict[str, str] | None = None, names: builtins.list[str] | None = None
        ) -> builtins.list[ContainerFact]: ...

        def exec(self, container_id: str, argv: builtins.list[str], timeout: float) -> int: ...

finally:
    pass
