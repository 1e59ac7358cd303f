"""The dev stack itself: restart after kill -9 on the same port and data, a failed start told
at once with its log, stop by PID records."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from devstack.process import Service, ServiceError, pid_alive, stop_pids
from devstack.redis import RedisServer
from tests.harness.common import started


def test_redis_with_aof_keeps_its_data_through_kill9_and_restart(tmp_path: Path) -> None:
    server = started(RedisServer(tmp_path, args=["--appendonly", "yes",
                                                 "--appendfsync", "always"]))
    try:
        port, pid = server.port, server.pid
        with server.client() as c:
            c.set("k", "v")
        server.kill9()
        assert not server.running
        server.restart()
        assert (server.port, server.data_dir) == (port, tmp_path / "redis-data")
        assert server.pid != pid
        with server.client() as c:
            assert c.get("k") == b"v"  # replayed from the append-only file
            assert c.config_get("appendonly") == {"appendonly": "yes"}
        assert server.log().count("Ready to accept connections") == 2  # one log, appended
    finally:
        server.stop()


class Exits(Service):
    def argv(self) -> list[str]:
        return [sys.executable, "-c", "import sys; print('bad config line 3'); sys.exit(3)"]

    def ready(self) -> bool:
        return False


def test_a_service_that_exits_fails_its_start_at_once_with_its_log(tmp_path: Path) -> None:
    started_at = time.monotonic()
    with pytest.raises(ServiceError, match=r"(?s)exits exited \(status 3\).*bad config line 3"):
        Exits(tmp_path, "exits").start(timeout=30)
    assert time.monotonic() - started_at < 10  # not the whole deadline


def test_stop_pids_stops_what_another_process_recorded(tmp_path: Path) -> None:
    server = started(RedisServer(tmp_path))
    record = server.record()
    assert record["stage"] == 2 and record["start"]
    assert stop_pids([record]) == []  # SIGTERM was enough
    assert not pid_alive(record["pid"], record["start"])
    server.stop()  # reaps it
