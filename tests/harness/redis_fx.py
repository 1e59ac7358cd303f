"""Fixtures: a real redis-server per test session, the Celery broker URL, isolated product keys."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from devstack.redis import RedisServer
from orchestrator.engine.redisconn import client_for
from orchestrator.engine.tls import TlsPolicy
from tests.harness.common import started

# db 0 is Celery's broker and is never flushed: flushing under live workers deletes kombu's
# binding keys and unacked messages. Product state lives in db 1, separated by key prefix.
BROKER_DB = 0
PRODUCT_DB = 1


@dataclass(frozen=True)
class ProductRedis:
    """One test's slice of product state: every key it writes must start with `prefix`."""

    client: redis.Redis[str]  # decode_responses=True
    prefix: str
    url: str


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with started(RedisServer(tmp_path_factory.mktemp("redis"))) as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """Base URL without a database: redis://127.0.0.1:PORT."""
    return redis_server.url


@pytest.fixture(scope="session")
def broker_url(redis_url: str) -> str:
    """Celery broker (and result backend) URL, db 0. Never flush it."""
    return f"{redis_url}/{BROKER_DB}"


@contextlib.contextmanager
def isolated_product_redis(redis_url: str, tls: TlsPolicy | None = None
                           ) -> Iterator[ProductRedis]:
    """A db-1 client and a fresh key prefix; on exit deletes only keys with that prefix.
    `redis_url` may be a full URL with its database (a sentinel:// one)."""
    url = redis_url if "/" in redis_url.split("://", 1)[1] else f"{redis_url}/{PRODUCT_DB}"
    prefix = f"t-{uuid.uuid4().hex[:12]}:"
    client: redis.Redis[str] = client_for(url, tls=tls, decode_responses=True)
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
