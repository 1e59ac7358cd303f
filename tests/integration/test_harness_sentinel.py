"""Redis Sentinel as the state store: grants wait for a replica, and survive a failover."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.net import free_port
from devstack.sentinel import SentinelStack
from devstack.workers import cli_env
from orchestrator.engine.lease import Lease
from orchestrator.engine.redisconn import client_for, connect
from orchestrator.errors import NotReplicated, ServiceUnavailable
from schemas.contract import Keys

KEYS = Keys("t-sentinel:")


def test_a_grant_no_replica_acknowledges_is_refused_and_not_kept(
    sentinel_stack: SentinelStack,
) -> None:
    client = connect(sentinel_stack.url(1) + "&wait_timeout=0.3")
    lease = Lease(client, KEYS)
    replica = sentinel_stack.servers[1]
    os.kill(replica.pid, signal.SIGSTOP)  # alive, but acknowledging nothing
    try:
        with pytest.raises(NotReplicated, match="0 of 1 replica"):
            lease.acquire("web", "r1", ttl=30)
        with pytest.raises(NotReplicated):
            lease.fresh_token("web", "box1", "boot1")
    finally:
        os.kill(replica.pid, signal.SIGCONT)
    # The refused lease was given back: nobody holds it, and the next acquire succeeds.
    assert lease.holder("web") == (None, None)
    assert lease.acquire("web", "r2", ttl=30) is None
    assert lease.holder("web")[0] == "r2"


def test_wait_replicas_0_does_not_wait(sentinel_stack: SentinelStack) -> None:
    client = connect(sentinel_stack.url(1) + "&wait_replicas=0")
    replica = sentinel_stack.servers[1]
    os.kill(replica.pid, signal.SIGSTOP)
    try:
        assert Lease(client, KEYS).acquire("api", "r1", ttl=30) is None
    finally:
        os.kill(replica.pid, signal.SIGCONT)


def test_leases_and_tokens_survive_a_failover_and_the_counter_goes_on(
    sentinel_stack: SentinelStack,
) -> None:
    client = connect(sentinel_stack.url(1))
    lease = Lease(client, KEYS)
    assert lease.acquire("web", "r1", ttl=60) is None
    tokens = {box: lease.fresh_token("web", box, "r1", kind="rollout") for box in ("b1", "b2")}
    epoch, _, n = tokens["b2"].partition(".")

    old, promotion = sentinel_stack.kill_master()
    assert sentinel_stack.master() is not old

    assert lease.holder("web")[0] == "r1"
    assert {box: lease.owner(box) for box in tokens} == {
        box: (token, "r1") for box, token in tokens.items()
    }
    old.start()  # sentinel makes it a replica (or the master again): grants are acknowledged
    sentinel_stack.wait_settled()
    # Same epoch, the next number: no token minted before the failover can be minted again.
    assert lease.fresh_token("web", "b3", "r1") == f"{epoch}.{int(n) + 1}"
    print(f"promotion: {promotion:.2f}s after kill -9")


def test_a_plain_client_reads_what_a_sentinel_client_wrote(sentinel_stack: SentinelStack) -> None:
    """client_for() gives redis-py's options to the master's client (the harness decodes)."""
    with client_for(sentinel_stack.url(1), decode_responses=True) as client:
        client.set("t-sentinel:plain", "yes")
        assert client.get("t-sentinel:plain") == "yes"
    with sentinel_stack.master().client(1) as direct:
        assert direct.get("t-sentinel:plain") == b"yes"


def test_a_command_without_sentinels_waits_says_so_and_never_shows_a_password(
    tmp_path: Path,
) -> None:
    port = free_port()  # no sentinel listens there
    url = f"sentinel://:S3cretPW@127.0.0.1:{port}/1?master_name=m&sentinel_password=Sp4ss"
    env = cli_env(tmp_path, url.replace("/1?", "/0?"), url, "x:", redis_wait="1.5")
    run = subprocess.run([sys.executable, "-m", "orchestrator.cli", "status", "web"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == ServiceUnavailable.exit_code, run.stderr
    assert f"waiting for Redis at sentinel://:***@127.0.0.1:{port}/1" in run.stderr
    assert "No master found for 'm'" in run.stderr and "Traceback" not in run.stderr
    assert "S3cretPW" not in run.stdout + run.stderr and "Sp4ss" not in run.stderr
