"""One way to connect to Redis, with errors translated into ServiceUnavailable."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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


class LuaScript:
    """A Lua script run with EVALSHA (loaded once per client): atomic, and cheap at scale."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._by_client: dict[int, Any] = {}

    def __call__(self, client: RedisClient, keys: list[str], args: list[Any]) -> Any:
        script = self._by_client.get(id(client))
        if script is None:
            script = self._by_client[id(client)] = client.register_script(self.source)
        return script(keys=keys, args=args)
