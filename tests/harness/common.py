"""Shared test-harness helpers: the timing settings, waits with deadlines, service policy."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pytest

T = TypeVar("T")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Every container, image, network or volume a test makes carries this label, so clean-up
# removes exactly what the tests made and nothing else on the engine.
TEST_LABEL = "orchestrator.test"


@dataclass(frozen=True)
class TestTimings:
    """Every timing the tests use, short enough for CI. One object, so nothing drifts."""

    visibility_timeout: float = 5.0
    restore_interval: float = 1.0
    restore_throttle: float = 1.0
    heartbeat_interval: float = 0.5
    heartbeat_ttl: float = 1.5
    lease_ttl: float = 3.0
    step_deadline: float = 4.0
    service_start: float = 20.0  # how long a service process may take to answer
    event_wait: float = 15.0  # the default deadline of a wait on an event in a test


TIMINGS = TestTimings()


def need(condition: bool, reason: str) -> None:
    """A missing service skips locally (with the reason) and fails in CI."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required service missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def need_binary(name: str) -> str:
    path = shutil.which(name)
    need(path is not None, f"{name} is not installed (apt-get install it; see .ci/run)")
    assert path is not None
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for(
    probe: Callable[[], T | None],
    what: str,
    timeout: float = TIMINGS.event_wait,
    interval: float = 0.05,
) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except Exception as exc:  # the service may not answer yet
            last_exc = exc
            value = None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(
        f"timed out after {timeout:.1f}s waiting for {what} (last error: {last_exc!r})"
    )


def port_answers(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0
