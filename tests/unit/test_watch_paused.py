"""What a watcher that cannot use Redis says: a lost server apart from a missing replica."""

from __future__ import annotations

import pytest
import redis

from orchestrator.errors import NotReplicated
from orchestrator.watch import paused_line

pytestmark = pytest.mark.unit


def test_a_paused_watcher_names_the_missing_replica_apart_from_a_lost_redis() -> None:
    url = "redis://:s3cret@10.0.0.1:6379/0"
    unreplicated = paused_line("r1", NotReplicated(
        "0 of 1 replica(s) acknowledged the write within 1s: a failover now could forget it"))
    lost = paused_line("r1", redis.ConnectionError(f"Error 111 connecting to {url}"))
    assert unreplicated.startswith("no Redis replica acknowledges writes (0 of 1 replica(s)")
    assert "restart the old master" in unreplicated and "rollout r1" in unreplicated
    assert lost.startswith("lost Redis (") and "replica" not in lost
    assert "s3cret" not in lost and "***" in lost
