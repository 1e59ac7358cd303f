"""One way to connect to Redis, with errors translated into ServiceUnavailable."""

from __future__ import annotations

from pathlib import Path
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


# The engine's Lua scripts, one file each, beside this module.
LUA_DIR = Path(__file__).with_name("lua")


class LuaScript:
    """A Lua script run with EVALSHA (loaded once per client): atomic, and cheap at scale."""

    loaded: dict[str, LuaScript] = {}  # by name: benchmarks attribute EVALSHA calls with it

    def __init__(self, source: str, name: str = "") -> None:
        self.source = source
        self.name = name
        self._by_client: dict[int, Any] = {}

    @classmethod
    def load(cls, name: str) -> LuaScript:
        """`lua/<name>.lua`, read once per process."""
        if name not in cls.loaded:
            cls.loaded[name] = cls((LUA_DIR / f"{name}.lua").read_text(), name)
        return cls.loaded[name]

    def __call__(self, client: RedisClient, keys: list[str], args: list[Any]) -> Any:
        script = self._by_client.get(id(client))
        if script is None:
            script = self._by_client[id(client)] = client.register_script(self.source)
        return script(keys=keys, args=args)
