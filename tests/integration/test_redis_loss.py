"""Redis killed -9 and restarted mid-swap (with its append-only file, and wiped): no box is left
out of HAProxy or on a stale release, under traffic, and `status` says so only when true; the
same with Redis wiped just after a start-first box moved its member, or restarted from its
append-only file just before the move.

The fault is injected at a recorded point: the canary's worker stops itself (SIGSTOP) just
before it starts the new container, with its old one stopped and itself out of HAProxy.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devstack.net import free_port
from devstack.redis import RedisServer
from devstack.traffic import TrafficLoop
from devstack.workers import cli_env
from tests.harness.common import TIMINGS, started, wait_for
from tests.harness.redis_fx import ProductRedis, isolated_product_redis
from tests.harness.rollout_fx import PORT, Fleet, json_lines, wait_paused, with_fault
from tests.harness.start_first_fx import ALT, deployed, out_of_service_changes, write


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """This module's broker and state: one redis-server the test may kill."""
    with started(RedisServer(tmp_path / "own-redis")) as server:  # durable: AOF everysec
        yield server


@pytest.fixture
def broker_url(own_redis: RedisServer) -> str:
    return f"{own_redis.url}/0"


@pytest.fixture
def product_redis(own_redis: RedisServer) -> Iterator[ProductRedis]:
    with isolated_product_redis(own_redis.url) as product:
        yield product


def assert_converged(fleet: Fleet) -> None:
    """Every box in HAProxy, one release everywhere, the lease free, `status` exit 0."""
    fleet.wait_all_in_service()
    status = fleet.status_at_rest()
    rows = json_lines(status.stdout)
    print(status.stdout)  # whole, in the report of a failure (an assertion's text is cut)
    assert status.returncode == 0, status.stdout + status.stderr
    assert len(rows) == len(fleet.workers)
    # One release everywhere, by content (as `status` compares): a rollout whose swap was a
    # no-op on a box leaves the box's container labelled with an earlier id of that content.
    content = {(r["apps"]["web"]["spec_hash"], r["apps"]["web"]["digest"])  # type: ignore[index]
               for r in rows}
    assert len(content) == 1, rows
    assert all(r["apps"]["web"]["lb"] == "in" for r in rows), rows  # type: ignore[index]
    lock = fleet.cli("lock", "status", fleet.box_type)
    assert lock.stdout.strip().endswith("free"), lock.stdout


@pytest.mark.parametrize("loss", ["aof", "wiped"])
def test_redis_restarted_mid_swap_strands_no_box(
    fleet_factory: Callable[..., Fleet], own_redis: RedisServer, loss: str
) -> None:
    fleet = fleet_factory(3)
    fleet.env["ORCHESTRATOR_REDIS_WAIT"] = "30"
    fleet.write(f"{fleet.images.repo}:v1")
    assert fleet.cli("rollout", fleet.box_type).returncode == 0
    fleet.wait_all_in_service()
    canary = sorted(fleet.workers, key=lambda w: w.box_id)[0]
    with_fault(canary, "deploy.swap:run")

    with TrafficLoop(fleet.proxy.url, threads=4, rate_per_thread=25, max_seconds=120) as loop:
        loop.wait_total(20, timeout=10)
        run = fleet.start_cli("rollout", fleet.box_type, "--image",
                              f"web={fleet.images.repo}:v2", "--json")
        wait_paused(canary, run, "the canary stopped at its fault point")
        assert not fleet.in_service()[canary.box_id]  # out of HAProxy, its old container off

        own_redis.kill9()
        if loss == "wiped":
            shutil.rmtree(own_redis.data_dir)
            own_redis.data_dir.mkdir()
        own_redis.restart()
        back = time.monotonic()
        os.kill(canary.pid, signal.SIGCONT)
        wait_for(lambda: fleet.in_service()[canary.box_id], "the canary back in HAProxy",
                 timeout=30, interval=0.02)
        rejoined = time.monotonic() - back
        out, err = run.communicate(timeout=60)
        assert "Traceback" not in err, err

        # A rollout afterwards: nothing is left out, whatever the first one became.
        again = fleet.cli("rollout", fleet.box_type, "--image", f"web={fleet.images.repo}:v2")
        assert again.returncode == 0, again.stdout + again.stderr
        same = fleet.cli("rollout", fleet.box_type, "--image", f"web={fleet.images.repo}:v2")
        assert same.returncode == 0, same.stdout + same.stderr
        loop.wait_total(loop.stats.total + 20, timeout=10)
    stats = loop.stop()
    assert stats.failed == 0, stats.summary()
    assert_converged(fleet)
    # Within a heartbeat of Redis's return the box finishes its record; proving the old
    # container healthy and joining take the rest.
    assert rejoined < TIMINGS.heartbeat_interval + 5.0, rejoined
    print(f"{loss}: the canary was back in HAProxy {rejoined:.2f}s after Redis returned")


def test_a_command_without_redis_waits_says_so_and_ends_cleanly(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    url = f"redis://:S3cretPW@127.0.0.1:{port}"
    env = cli_env(tmp_path, f"{url}/0", f"{url}/1", "x:", redis_wait="1.5")
    run = subprocess.run([sys.executable, "-m", "orchestrator.cli", "status", "web"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 4, run.stderr  # README "Exit codes": infrastructure unreachable
    assert f"waiting for Redis at redis://:***@127.0.0.1:{port}/1" in run.stderr
    assert "ERROR (ServiceUnavailable)" in run.stderr and "does not answer" in run.stderr
    assert "Traceback" not in run.stderr and "S3cretPW" not in run.stdout + run.stderr


# (fault point, Redis's loss, where the member is while the canary sleeps)
START_FIRST_LOSSES = [("deploy.swap:moved=stop", "wiped", ALT),
                      ("deploy.swap:move=stop", "aof", PORT)]


@pytest.mark.parametrize(("point", "loss", "asleep_on"), START_FIRST_LOSSES,
                         ids=[f"{p}-{loss}" for p, loss, _ in START_FIRST_LOSSES])
def test_redis_lost_at_a_start_first_move_strands_no_box(
    fleet_factory: Callable[..., Fleet], own_redis: RedisServer, point: str, loss: str,
    asleep_on: int,
) -> None:
    """start-first: the canary sleeps just after moving its member to the new version (the
    old one still running aside), and Redis comes back empty; or just before the move, and
    Redis restarts from its append-only file. The box's own record settles it, no box ever
    leaves HAProxy, and the next rollout converges the fleet."""
    fleet = deployed(fleet_factory, 3)
    fleet.env["ORCHESTRATOR_REDIS_WAIT"] = "30"
    before = len(out_of_service_changes(fleet))
    canary = sorted(fleet.workers, key=lambda w: w.box_id)[0]
    with_fault(canary, point)
    write(fleet, "v2")
    with TrafficLoop(fleet.proxy.url, threads=4, rate_per_thread=25, max_seconds=150) as loop:
        loop.wait_total(20, timeout=10)
        run = fleet.start_cli("rollout", fleet.box_type, "--json")
        wait_paused(canary, run, f"the canary stopped at {point}")
        # moved: on v2, v1 still running aside; move: on v1, v2 started beside it
        assert fleet.lb.member_port(canary.box_id) == asleep_on
        own_redis.kill9()
        if loss == "wiped":
            shutil.rmtree(own_redis.data_dir)
            own_redis.data_dir.mkdir()
        own_redis.restart()
        os.kill(canary.pid, signal.SIGCONT)
        out, err = run.communicate(timeout=90)
        assert "Traceback" not in err, err
        again = fleet.cli("rollout", fleet.box_type, "--reason", "after the wipe")
        assert again.returncode == 0, again.stdout + again.stderr
        loop.wait_total(loop.stats.total + 20, timeout=10)
    stats = loop.stop()
    assert stats.failed == 0, stats.summary()
    assert out_of_service_changes(fleet)[before:] == []
    assert_converged(fleet)  # `status` exit 0: each member on the port its version runs on
