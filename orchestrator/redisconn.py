"""One way to connect to Redis, with errors translated into ServiceUnavailable."""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis

from orchestrator.errors import ServiceUnavailable

if TYPE_CHECKING:
    RedisClient = redis.Redis[bytes]
else:
    RedisClient = redis.Redis


def connect(url: str, *, check: bool = True) -> RedisClient:
    """A client for `url`; with `check`, fail now (naming the URL) if Redis does not answer."""
    client: RedisClient = redis.Redis.from_url(url, socket_timeout=10, health_check_interval=30)
    if check:
        try:
            client.ping()
        except redis.RedisError as exc:
            client.close()
            raise ServiceUnavailable(f"Redis at {url} does not answer: {exc}") from exc
    return client
