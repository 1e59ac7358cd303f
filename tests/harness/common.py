"""Shared test-harness helpers: the timing settings, waits with deadlines, service policy."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pytest

from devstack import process
from devstack.net import free_port
from devstack.process import MissingTool, Service

__all__ = ["IN_CI", "TEST_LABEL", "TIMINGS", "all_at_once", "free_port", "need", "need_binary",
           "started", "wait_for"]

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


def all_at_once(
    n: int, work: Callable[[int], object], timeout: float = 60.0
) -> list[BaseException]:
    """`work(0)` .. `work(n - 1)`, each on its own thread, released together at one barrier;
    what they raised (a race's test asserts it is empty)."""
    errors: list[BaseException] = []
    gate = threading.Barrier(n)

    def run(k: int) -> None:
        gate.wait()
        try:
            work(k)
        except BaseException as exc:  # noqa: BLE001 (collected: the caller asserts on them)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return errors
