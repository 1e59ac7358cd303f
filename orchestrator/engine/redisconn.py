"""One way to connect to Redis, with errors translated into ServiceUnavailable."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from orchestrator.engine.tls import TlsPolicy
from orchestrator.errors import ServiceUnavailable

if TYPE_CHECKING:
    RedisClient = redis.Redis[bytes]
else:
    RedisClient = redis.Redis


# A blip (a restart, a failover) is retried inside every command, with backoff: about 2 s.
_RETRY = Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=5)
_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", re.IGNORECASE)
_SECRET_PARAM = re.compile(
    r"([?&;](?:password|passwd|pass|pwd|token|secret)=)[^&\s]*", re.IGNORECASE
)


def redact(text: str) -> str:
    """`text` with every URL password (user info, or a `password=` parameter) shown as ***."""
    return _SECRET_PARAM.sub(r"\1***", _USERINFO.sub(r"\1***@", text))


def connect(
    url: str,
    *,
    check: bool = True,
    wait: float = 0.0,
    say: Callable[[str], None] | None = None,
    tls: TlsPolicy | None = None,
) -> RedisClient:
    """A client for `url` that retries blips itself. With `check`, Redis must answer now, or
    within `wait` seconds (each retry `say`s what it waits for); else ServiceUnavailable."""
    client: RedisClient = redis.Redis.from_url(
        url,
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry=_RETRY,
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        **(tls or TlsPolicy()).redis_kwargs(url),
    )
    if not check:
        return client
    deadline = time.monotonic() + wait
    pause = 0.5
    while True:
        try:
            client.ping()
            return client
        except redis.RedisError as exc:
            left = deadline - time.monotonic()
            if say is not None and wait > 0:
                why = redact(str(exc))
                say(f"waiting for Redis at {redact(url)} ({why}); {max(left, 0):.0f}s left")
            if left <= 0:
                client.close()
                raise ServiceUnavailable(
                    f"Redis at {redact(url)} does not answer: {redact(str(exc))}"
                ) from None
            time.sleep(min(pause, left))
            pause = min(pause * 2, 5.0)


def volatility(client: RedisClient, url: str) -> str:
    """A loud warning when the state Redis keeps no append-only file; '' when it does."""
    try:
        persistence = client.info("persistence")
    except redis.RedisError:
        return ""  # INFO denied (ACL) or gone: the next command says what is wrong
    if int(persistence.get("aof_enabled", 0)):
        return ""
    return (
        f"WARNING: the state Redis at {redact(url)} keeps no append-only file "
        "(appendonly no): a restart loses leases, rollouts, journals and fencing tokens "
        "(boxes then finish from their own records, but history is gone). "
        "Run it with `appendonly yes` and `appendfsync everysec`."
    )


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
