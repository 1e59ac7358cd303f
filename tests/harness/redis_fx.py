"""Fixtures: a real redis-server per test session, the Celery broker URL, isolated product keys."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.harness.common import TIMINGS, free_port, need_binary, wait_for

# db 0 is Celery's broker and is never flushed: flushing under live workers deletes kombu's
# binding keys and unacked messages. Product state lives in db 1, separated by key prefix.
BROKER_DB = 0
PRODUCT_DB = 1


@dataclass(frozen=True)
class RedisServer:
    host: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"


@dataclass(frozen=True)
class ProductRedis:
    """One test's slice of product state: every key it writes must start with `prefix`."""

    client: redis.Redis[str]  # decode_responses=True
    prefix: str
    url: str


def _answers(url: str) -> bool:
    with redis.Redis.from_url(url, socket_timeout=0.5) as client:
        return bool(client.ping())


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Terminate, wait with a deadline, then kill: never leave a zombie or a ResourceWarning."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    binary = need_binary("redis-server")
    workdir = tmp_path_factory.mktemp("redis")
    port = free_port()
    log_path = workdir / "redis.log"
    args = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
    ]
    with log_path.open("wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    server = RedisServer("127.0.0.1", port, proc, log_path)
    try:
        wait_for(
            lambda: proc.poll() is None and _answers(server.url),
            f"redis-server on port {port} (log {log_path})",
            TIMINGS.service_start,
        )
        yield server
    finally:
        stop_process(proc)


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """Base URL without a database: redis://127.0.0.1:PORT."""
    return redis_server.url


@pytest.fixture(scope="session")
def broker_url(redis_url: str) -> str:
    """Celery broker (and result backend) URL, db 0. Never flush it."""
    return f"{redis_url}/{BROKER_DB}"


@contextlib.contextmanager
def isolated_product_redis(redis_url: str) -> Iterator[ProductRedis]:
    """A db-1 client and a fresh key prefix; on exit deletes only keys with that prefix."""
    url = f"{redis_url}/{PRODUCT_DB}"
    prefix = f"t-{uuid.uuid4().hex[:12]}:"
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        yield ProductRedis(client, prefix, url)
    finally:
        try:
            keys = list(client.scan_iter(match=f"{prefix}*", count=500))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


@pytest.fixture
def product_redis(redis_url: str) -> Iterator[ProductRedis]:
    """This test's product state: ProductRedis(client, prefix, url), cleaned at teardown."""
    with isolated_product_redis(redis_url) as product:
        yield product
