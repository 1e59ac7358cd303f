"""Shared test-harness helpers: the timing settings, waits with deadlines, service policy."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pytest

from devstack import process
from devstack.net import free_port
from devstack.process import MissingTool, Service

__all__ = ["IN_CI", "TEST_LABEL", "TIMINGS", "free_port", "need", "need_binary", "started",
           "wait_for"]

T = TypeVar("T")
S = TypeVar("S", bound=Service)

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Every container, image, network or volume a test makes carries this label, so clean-up
# removes exactly what the tests made and nothing else on the engine.
TEST_LABEL = "orchestrator.test"


@dataclass(frozen=True)
class TestTimings:
    """Every timing the tests use, short enough for CI. One object, so nothing drifts.

    Long enough for a loaded CI machine (three test sessions on two cores): a worker starved
    of CPU for a few seconds must not look dead, nor a swap miss its step deadline."""

    visibility_timeout: float = 12.0
    restore_interval: float = 1.0
    restore_throttle: float = 1.0
    heartbeat_interval: float = 0.5
    heartbeat_ttl: float = 3.0
    lease_ttl: float = 5.0
    step_deadline: float = 10.0
    service_start: float = 60.0  # how long a service process may take to answer (loaded CI)
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


def started(service: S, timeout: float = TIMINGS.service_start) -> S:
    """The dev stack's service, started and ready; a missing program skips (fails in CI)."""
    try:
        return service.start(timeout)
    except MissingTool as exc:
        need(False, str(exc))
        raise


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = TIMINGS.event_wait,
             interval: float = 0.05) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` at the deadline."""
    return process.wait_for(probe, what, timeout, interval)
