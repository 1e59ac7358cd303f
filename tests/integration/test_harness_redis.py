"""The Redis harness: the server answers, and product_redis keeps each test's keys apart."""

from __future__ import annotations

import redis

from tests.harness.redis_fx import PRODUCT_DB, ProductRedis, isolated_product_redis


def test_redis_answers_ping(redis_url: str, broker_url: str) -> None:
    assert broker_url == f"{redis_url}/0"
    with redis.Redis.from_url(broker_url) as client:
        assert client.ping() is True


def test_product_redis_deletes_only_its_own_prefix(
    redis_url: str, product_redis: ProductRedis
) -> None:
    assert product_redis.url == f"{redis_url}/{PRODUCT_DB}"
    assert product_redis.client.connection_pool.connection_kwargs["db"] == PRODUCT_DB
    with redis.Redis.from_url(product_redis.url, decode_responses=True) as observer:
        observer.set("someone-else:key", "kept")
        try:
            product_redis.client.set(f"{product_redis.prefix}a", "mine")
            # A neighbour test's slice, with its own prefix, ending before this one.
            with isolated_product_redis(redis_url) as neighbour:
                assert neighbour.prefix != product_redis.prefix
                neighbour.client.set(f"{neighbour.prefix}a", "theirs")
                neighbour.client.hset(f"{neighbour.prefix}h", "f", "v")

            assert observer.get(f"{neighbour.prefix}a") is None
            assert observer.exists(f"{neighbour.prefix}h") == 0
            assert observer.get(f"{product_redis.prefix}a") == "mine"
            assert observer.get("someone-else:key") == "kept"
        finally:
            observer.delete("someone-else:key")
