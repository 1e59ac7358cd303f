"""durably(): a script the master lost between the pipeline's check and its run (a failover to
a master that never loaded it) is loaded and run once, on a real redis-server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devstack.redis import RedisServer
from orchestrator.engine.redisconn import LuaScript, connect, durably
from tests.harness.common import started

pytestmark = pytest.mark.integration


def test_a_script_lost_before_it_ran_is_loaded_and_run_once(tmp_path: Path) -> None:
    with started(RedisServer(tmp_path / "redis")) as server:
        client = connect(f"{server.url}/0")
        count = LuaScript("return redis.call('INCR', KEYS[1])", "count")
        assert durably(client, lambda p: count(client, ["n"], [], pipe=p)) == [1]
        attempts: list[int] = []

        def write(pipe: Any) -> None:
            attempts.append(1)
            if len(attempts) == 1:  # the scripts were checked; now the master has none
                pipe.execute_command("SCRIPT", "FLUSH")
            count(client, ["n"], [], pipe=pipe)

        assert durably(client, write)[-1] == 2
        assert len(attempts) == 2 and client.get("n") == b"2"  # run once more, not twice
