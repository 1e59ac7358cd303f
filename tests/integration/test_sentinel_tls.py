"""Broker and state behind Redis Sentinel over TLS with ACL users (`sentinels://`): a rollout
under traffic, a failover the clients follow over TLS, and clean errors for a wrong CA or a
wrong sentinel password that never print a password.

Every server and sentinel here listens only on a TLS port with a certificate from a CA this
test makes; replication and the sentinels' own links are TLS too (`tls-replication yes`); the
servers' default user is off and the sentinels ask a password (`requirepass`).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devstack.process import MissingTool
from devstack.sentinel import SentinelStack, SentinelTls
from devstack.tls import make_certs
from devstack.traffic import TrafficLoop
from orchestrator.engine.redisconn import connect
from orchestrator.engine.tls import TlsPolicy
from schemas.contract import Keys
from tests.harness.common import TIMINGS, need, wait_for
from tests.harness.redis_fx import ProductRedis, isolated_product_redis
from tests.harness.rollout_fx import Fleet

COORD_PW = "c00rd-" + uuid.uuid4().hex
WORKER_PW = "w0rker-" + uuid.uuid4().hex
ADMIN_PW = "adm1n-" + uuid.uuid4().hex
SENTINEL_PW = "s3ntinel-" + uuid.uuid4().hex
SECRETS = (COORD_PW, WORKER_PW, ADMIN_PW, SENTINEL_PW)
# README "Security": the rights of each side (a master's ACL must be on every server: any of
# them may be promoted).
RIGHTS = ["~*", "&*", "+@all", "-@admin", "-@dangerous", "+info"]
USERS = {"coordinator": ["on", f">{COORD_PW}", *RIGHTS],
         "worker": ["on", f">{WORKER_PW}", *RIGHTS]}
# Outlast a failover (down-after 1 s, then the election), as test_sentinel_failover does.
OUTLAST_FAILOVER = {"ORCHESTRATOR_LEASE_TTL": "15", "ORCHESTRATOR_SLOT_TTL": "15",
                    "ORCHESTRATOR_STEP_DEADLINE": "20", "ORCHESTRATOR_VISIBILITY_TIMEOUT": "30",
                    "ORCHESTRATOR_HEARTBEAT_TTL": "5"}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[SentinelStack]:
    certs = make_certs(tmp_path / "tls")
    tls = SentinelTls(certs, USERS, admin_password=ADMIN_PW, sentinel_password=SENTINEL_PW)
    stack = SentinelStack(tmp_path / "sentinel", tls=tls)
    try:
        stack.start(TIMINGS.service_start)
    except MissingTool as exc:
        need(False, str(exc))
    yield stack
    stack.stop()


def ca_of(stack: SentinelStack) -> str:
    assert stack.tls is not None
    return str(stack.tls.certs.ca)


@pytest.fixture
def broker_url(stack: SentinelStack) -> str:
    """What the workers use (the CLI gets the coordinator user's URLs below)."""
    return stack.url(0, WORKER_PW, "worker")


@pytest.fixture
def product_redis(stack: SentinelStack) -> Iterator[ProductRedis]:
    url = stack.url(1, WORKER_PW, "worker")
    with isolated_product_redis(url, TlsPolicy(ca_of(stack))) as product:
        yield product


def tls_fleet(fleet_factory: Callable[..., Fleet], stack: SentinelStack, n: int) -> Fleet:
    ca = {"ORCHESTRATOR_REDIS_CA": ca_of(stack)}
    fleet = fleet_factory(n, extra_env={**OUTLAST_FAILOVER, **ca})
    fleet.env.update({**OUTLAST_FAILOVER, **ca, "ORCHESTRATOR_REDIS_WAIT": "30",
                      "ORCHESTRATOR_BROKER_URL": stack.url(0, COORD_PW, "coordinator"),
                      "ORCHESTRATOR_REDIS_URL": stack.url(1, COORD_PW, "coordinator")})
    return fleet


def users_on(stack: SentinelStack) -> set[str]:
    with contextlib.closing(stack.master().client()) as admin:
        return {c["user"] for c in admin.client_list()}


def test_rollout_and_failover_over_tls_sentinels_with_acl_users(
    fleet_factory: Callable[..., Fleet], stack: SentinelStack, product_redis: ProductRedis,
) -> None:
    fleet = tls_fleet(fleet_factory, stack, 2)
    fleet.write(f"{fleet.images.repo}:v1")
    first = fleet.cli("rollout", fleet.box_type)
    assert first.returncode == 0, first.stderr + first.stdout
    fleet.wait_all_in_service()
    with TrafficLoop(fleet.proxy.url, threads=2, rate_per_thread=40, max_seconds=90) as loop:
        loop.wait_total(20, timeout=10)
        run = fleet.cli("rollout", fleet.box_type, "--image", f"web={fleet.images.repo}:v2")
        loop.wait_total(loop.stats.total + 20, timeout=10)
    stats = loop.stop()
    assert run.returncode == 0, run.stderr + run.stdout
    assert stats.failed == 0 and stats.bodies["v2\n"] > 0, stats.summary()
    assert "worker" in users_on(stack)  # the boxes hold their broker connection

    # kill -9 the master: the replica it synced over TLS is promoted, and the workers' state
    # clients find it through the sentinels (over TLS) and beat there.
    old, promotion = stack.kill_master()
    state = connect(stack.url(1, COORD_PW, "coordinator"), tls=TlsPolicy(ca_of(stack)))
    keys = Keys(product_redis.prefix)
    beats = [keys.heartbeat(w.box_id) for w in fleet.workers]
    state.delete(*beats)  # what the old master had: gone; only new beats bring them back
    wait_for(lambda: state.exists(*beats) == len(beats), "every box beating on the new master",
             timeout=30)
    status = fleet.cli("status", fleet.box_type)
    assert status.returncode == 0, status.stderr + status.stdout
    assert {"worker", "coordinator"} & users_on(stack)
    print(f"promotion {promotion:.2f}s after kill -9 of {old.name}")
    state.close()
    for out in (first, run, status):
        assert "Traceback" not in out.stderr
        for secret in SECRETS:
            assert secret not in out.stdout + out.stderr


def test_wrong_ca_or_sentinel_password_fails_cleanly_without_a_password(
    fleet_factory: Callable[..., Fleet], stack: SentinelStack, tmp_path: Path,
) -> None:
    fleet = tls_fleet(fleet_factory, stack, 1)
    other = make_certs(tmp_path / "other-ca", cn="someone-else")
    seen = []
    # Refused by every sentinel at the first look: no wait (a failover's) can help, so none.
    wait = {"ORCHESTRATOR_REDIS_WAIT": "30"}
    code, out = fleet.status_with(ORCHESTRATOR_REDIS_CA=str(other.ca), **wait)
    assert code == 4 and "certificate verify failed" in out, out
    assert "waiting for Redis" not in out, out
    seen.append(out)

    wrong = "WrongPw-" + uuid.uuid4().hex
    url = stack.url(1, COORD_PW, "coordinator").replace(SENTINEL_PW, wrong)
    code, out = fleet.status_with(ORCHESTRATOR_REDIS_CA=ca_of(stack),
                               ORCHESTRATOR_REDIS_URL=url, **wait)
    assert code == 4 and "invalid username-password" in out, out
    assert "waiting for Redis" not in out, out
    seen.append(out)

    for out in seen:
        assert "Traceback" not in out
        for secret in (*SECRETS, wrong):
            assert secret not in out, out
