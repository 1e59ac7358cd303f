"""Fixtures: Redis Sentinel (a master, a replica, three sentinels) that a test may fail over."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.process import MissingTool
from devstack.sentinel import SentinelStack
from tests.harness.common import TIMINGS, need


@pytest.fixture
def sentinel_stack(tmp_path: Path) -> Iterator[SentinelStack]:
    """This test's own Sentinel set-up (function scope: the test may kill its master).
    `url(0)` is the broker, `url(1)` the state; both go through the sentinels."""
    stack = SentinelStack(tmp_path / "sentinel")
    try:
        stack.start(TIMINGS.service_start)
    except MissingTool as exc:
        need(False, str(exc))
    yield stack
    stack.stop()
