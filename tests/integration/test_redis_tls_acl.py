"""Broker and state over TLS with ACL users: a rollout under traffic works, a wrong CA, a wrong
password or a URL that turns verification off fails cleanly, and no password is ever printed.

The redis-server here listens only on a TLS port with a certificate from a CA this test makes;
the default user is off, so every connection below is one of the ACL users named in README
"Security" (a coordinator user and a worker user with the rights documented there).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from devstack.tls import Certs, TlsRedis, make_certs
from devstack.traffic import TrafficLoop
from tests.harness.common import started
from tests.harness.redis_fx import ProductRedis
from tests.harness.rollout_fx import Fleet

COORD_PW = "c00rd-" + uuid.uuid4().hex
WORKER_PW = "w0rker-" + uuid.uuid4().hex
ADMIN_PW = "adm1n-" + uuid.uuid4().hex
# The rights README "Security" documents for each side. Both run the engine's Lua scripts and
# use Celery's broker keys; neither may reconfigure, flush, or list the whole keyspace.
RIGHTS = ["~*", "&*", "+@all", "-@admin", "-@dangerous", "+info"]
USERS = {
    "coordinator": ["on", f">{COORD_PW}", *RIGHTS],
    "worker": ["on", f">{WORKER_PW}", *RIGHTS],
}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[TlsRedis]:
    server = TlsRedis(tmp_path_factory.mktemp("tls-redis"), certs, USERS, admin_password=ADMIN_PW)
    with started(server):
        yield server


@pytest.fixture
def broker_url(tls_redis: TlsRedis) -> str:
    """What the workers use (the CLI gets the coordinator user's URL below)."""
    return tls_redis.user_url("worker", WORKER_PW, 0)


@pytest.fixture
def product_redis(tls_redis: TlsRedis) -> Iterator[ProductRedis]:
    prefix = f"t-{uuid.uuid4().hex[:12]}:"
    client = tls_redis.client(1, decode_responses=True)
    try:
        yield ProductRedis(client, prefix, tls_redis.user_url("worker", WORKER_PW, 1))
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
        client.close()


def tls_fleet(fleet_factory: Callable[..., Fleet], tls_redis: TlsRedis, n: int) -> Fleet:
    fleet: Fleet = fleet_factory(n, extra_env={"ORCHESTRATOR_REDIS_CA": str(tls_redis.certs.ca)})
    fleet.env.update({
        "ORCHESTRATOR_REDIS_CA": str(tls_redis.certs.ca),
        "ORCHESTRATOR_BROKER_URL": tls_redis.user_url("coordinator", COORD_PW, 0),
        "ORCHESTRATOR_REDIS_URL": tls_redis.user_url("coordinator", COORD_PW, 1),
    })
    return fleet


def connected_users(server: TlsRedis) -> set[str]:
    with contextlib.closing(server.client()) as admin:
        return {c["user"] for c in admin.client_list()}


def test_rollout_over_tls_with_acl_users_loses_no_request(
    fleet_factory: Callable[..., Fleet], tls_redis: TlsRedis,
) -> None:
    fleet = tls_fleet(fleet_factory, tls_redis, 2)
    fleet.write(f"{fleet.images.repo}:v1")
    first = fleet.cli("rollout", fleet.box_type)
    assert first.returncode == 0, first.stderr + first.stdout
    fleet.wait_all_in_service()
    with TrafficLoop(fleet.proxy.url, threads=2, rate_per_thread=40, max_seconds=60) as loop:
        loop.wait_total(20, timeout=10)
        run = fleet.cli("rollout", fleet.box_type, "--image", f"web={fleet.images.repo}:v2")
        loop.wait_total(loop.stats.total + 20, timeout=10)
    stats = loop.stop()
    assert run.returncode == 0, run.stderr + run.stdout
    assert stats.failed == 0 and stats.bodies["v2\n"] > 0, stats.summary()
    assert {"worker"} <= connected_users(tls_redis)  # the workers hold their broker connection
    status = fleet.cli("status", fleet.box_type)
    assert status.returncode == 0, status.stderr + status.stdout
    for out in (first, run, status):
        for secret in (COORD_PW, WORKER_PW, ADMIN_PW):
            assert secret not in out.stdout + out.stderr


def test_the_acl_user_is_really_limited(tls_redis: TlsRedis) -> None:
    url = tls_redis.user_url("worker", WORKER_PW, 1)
    with contextlib.closing(redis.Redis.from_url(url, ssl_ca_certs=str(tls_redis.certs.ca))) as c:
        assert c.ping()
        with pytest.raises(redis.exceptions.NoPermissionError):
            c.flushall()
        with pytest.raises(redis.exceptions.NoPermissionError):
            c.config_get("*")


# A CLI that may wait for Redis (a restart, a failover) still fails at once when refused.
WAIT_LONG = {"ORCHESTRATOR_REDIS_WAIT": "30"}


def test_wrong_ca_wrong_password_and_no_verify_fail_cleanly_without_the_password(
    fleet_factory: Callable[..., Fleet], tls_redis: TlsRedis, tmp_path: Path,
) -> None:
    fleet = tls_fleet(fleet_factory, tls_redis, 1)
    other = make_certs(tmp_path / "other-ca", cn="someone-else")
    seen = []

    # Refused at the first look, however long Redis may be waited for: no retry can help.
    code, out = fleet.status_with(ORCHESTRATOR_REDIS_CA=str(other.ca), **WAIT_LONG)
    assert code == 4 and "certificate verify failed" in out, out
    assert "waiting for Redis" not in out, out
    seen.append(out)

    wrong = "WrongPw-" + uuid.uuid4().hex
    code, out = fleet.status_with(ORCHESTRATOR_REDIS_CA=str(tls_redis.certs.ca),
        ORCHESTRATOR_REDIS_URL=tls_redis.user_url("coordinator", wrong, 1), **WAIT_LONG)
    assert code == 4 and "invalid username-password" in out, out
    assert wrong not in out and "waiting for Redis" not in out, out
    seen.append(out)

    no_verify = tls_redis.user_url("coordinator", COORD_PW, 1) + "?ssl_cert_reqs=none"
    code, out = fleet.status_with(ORCHESTRATOR_REDIS_URL=no_verify, ORCHESTRATOR_REDIS_WAIT="0")
    assert code == 2 and "ORCHESTRATOR_INSECURE_REDIS_TLS" in out, out
    seen.append(out)

    code, out = fleet.status_with(ORCHESTRATOR_REDIS_URL=no_verify, ORCHESTRATOR_REDIS_WAIT="0",
                               ORCHESTRATOR_INSECURE_REDIS_TLS="true")
    assert code == 0, out  # the loud setting allows it, for a throw-away set-up
    for out in seen:
        assert "Traceback" not in out
        for secret in (COORD_PW, WORKER_PW, ADMIN_PW):
            assert secret not in out


def test_the_broker_verifies_the_server_certificate(tls_redis: TlsRedis, tmp_path: Path) -> None:
    """kombu alone takes a bare rediss:// URL with CERT_NONE; ours refuses a server that the
    configured CA did not sign, and connects when it did."""
    from kombu.exceptions import OperationalError

    from orchestrator.engine.celery_app import make_celery
    from orchestrator.engine.tls import TlsPolicy

    url = tls_redis.user_url("worker", WORKER_PW, 0)
    other = make_certs(tmp_path / "other-ca", cn="someone-else")
    wrong = make_celery(url, tls=TlsPolicy(str(other.ca)))
    with wrong.connection_for_write() as conn, pytest.raises(OperationalError) as caught:
        conn.ensure_connection(max_retries=1)
    assert "certificate verify failed" in str(caught.value)
    right = make_celery(url, tls=TlsPolicy(str(tls_redis.certs.ca)))
    with right.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)


def test_a_worker_with_a_wrong_password_or_ca_stops_without_printing_it(
    tls_redis: TlsRedis, tmp_path: Path,
) -> None:
    import subprocess
    import sys

    from devstack.workers import worker_env

    wrong = "WrongPw-" + uuid.uuid4().hex
    other = make_certs(tmp_path / "other-ca", cn="someone-else")
    cases = [
        (tls_redis.user_url("worker", wrong, 0), tls_redis.user_url("worker", wrong, 1),
         str(tls_redis.certs.ca), "invalid username-password"),
        (tls_redis.user_url("worker", WORKER_PW, 0), tls_redis.user_url("worker", WORKER_PW, 1),
         str(other.ca), "certificate verify failed"),
    ]
    for broker, state, ca, reason in cases:
        env = worker_env("box-tls", "web", broker, state, "t-tls:", runtime="noop",
                         log_root=str(tmp_path / "logs"), redis_ca=ca)
        run = subprocess.run([sys.executable, "-m", "worker.main"], env=env, text=True,
                             capture_output=True, timeout=60)
        out = run.stdout + run.stderr
        assert run.returncode == 4 and reason in out, out
        assert "Traceback" not in out
        for secret in (wrong, WORKER_PW, ADMIN_PW):
            assert secret not in out
