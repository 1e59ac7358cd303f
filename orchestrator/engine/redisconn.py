"""One way to connect to Redis, with errors translated into ServiceUnavailable."""

from __future__ import annotations

import logging
import ssl
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.connection import SSLConnection
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelManagedConnection

from orchestrator.engine.redisurl import (
    SentinelTarget,
    is_sentinel,
    parse_sentinel_url,
    sentinel_kwargs,
)
from orchestrator.engine.tls import TlsPolicy
from orchestrator.errors import NotReplicated, ServiceUnavailable
from schemas.redaction import redact

if TYPE_CHECKING:
    RedisClient = redis.Redis[bytes]
else:
    RedisClient = redis.Redis


log = logging.getLogger("orchestrator.redis")

# A blip (a restart) is retried inside every command, with backoff: about 2 s.
_RETRY = Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=5)
# Through sentinels a command also outlasts a failover (down-after-milliseconds, then the
# election and the promotion: a few seconds): about 10 s.
_SENTINEL_RETRY = Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=14)
# The clients made through sentinels, and what their lease/claim/fence writes wait for.
_DURABLE: weakref.WeakKeyDictionary[Any, SentinelTarget] = weakref.WeakKeyDictionary()


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
    client: RedisClient = client_for(url, tls=tls)
    if not check:
        return client
    deadline = time.monotonic() + wait
    pause = 0.5
    quick = True  # the first look is one attempt: a refused password or certificate fails now
    while True:
        try:
            _ping(client, retried=not quick)
            return client
        except redis.RedisError as exc:
            # Why no sentinel named a master: asked at the first look (a refusal ends it) and
            # at the end (each unreachable sentinel costs its connect timeout: not every retry).
            sentinels = isinstance(exc, MasterNotFoundError)
            causes = _sentinels_say(client) if sentinels and quick else []
            refused = _refused(exc) or (bool(causes) and all(_refused(e) for _, e in causes))
            if quick and not refused:
                quick = False  # a blip, a failover under way: asked again, with retries
                continue
            left = deadline - time.monotonic()
            why = _why(exc)
            if say is not None and wait > 0 and not refused:
                say(f"waiting for Redis at {redact(url)} ({why}); {max(left, 0):.0f}s left")
            if left <= 0 or refused:
                if sentinels:
                    causes = causes or _sentinels_say(client)
                    why = f"{why} ({'; '.join(_said(where, e) for where, e in causes)})"
                client.close()
                raise ServiceUnavailable(
                    f"Redis at {redact(url)} does not answer: {why}"
                ) from None
            time.sleep(min(pause, left))
            pause = min(pause * 2, 5.0)


# One attempt, no backoff: the first look at Redis when a command starts.
_ONCE = Retry(NoBackoff(), 0)


def _ping(client: RedisClient, *, retried: bool) -> None:
    """PING, with the client's retries (which outlast a failover: ~10 s through sentinels)
    or without them."""
    if retried:
        client.ping()
        return
    retry = client.get_retry()  # type: ignore[attr-defined]
    # (redis-py 8 API; the types-redis stubs predate set_retry)
    client.set_retry(_ONCE)  # type: ignore[attr-defined]
    try:
        client.ping()
    finally:
        if retry is not None:
            client.set_retry(retry)  # type: ignore[attr-defined]


def _refused(exc: BaseException | None) -> bool:
    """Whether asking again cannot help: a password or user refused, a certificate not
    trusted (redis-py raises its ConnectionError from the ssl error: the chain is looked at)."""
    for _ in range(8):  # a chain's length is bounded: never a cycle
        if exc is None:
            return False
        if isinstance(exc, (redis.AuthenticationError, ssl.SSLCertVerificationError)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class _FollowingConnection(SentinelManagedConnection):
    """redis-py's sentinel connection, asking the sentinels for the master on every reconnect.

    redis-py 8.1 asks them only in `connect()`; a command on a dropped connection reconnects
    through `connect_check_health` to the address it cached: the dead master, until its
    retries run out. Here every connect attempt goes through `connect()` (the sentinels)."""

    def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if getattr(self, "_sock", None):
            return
        if not retry_socket_connect:  # from connect_to(): the address was just asked for
            # (redis-py 8 API; the types-redis stubs predate it)
            super().connect_check_health(  # type: ignore[misc]
                check_health, retry_socket_connect=False
            )
            return
        # One attempt: the command around this reconnect retries it (no retries in retries).
        self._connect_retry()  # type: ignore[attr-defined]


class _FollowingSSLConnection(_FollowingConnection, SSLConnection):
    """The same over TLS (as redis-py's SentinelManagedSSLConnection): sentinels:// URLs."""


def _why(exc: redis.RedisError) -> str:
    """The error, redacted; redis-py's "No master found" without the sentinels' reprs."""
    return redact(str(exc).split(" : <", 1)[0])


def _sentinels_say(client: Any) -> list[tuple[str, redis.RedisError | None]]:
    """Each sentinel asked again (once) why it named no master: redis-py 8 keeps only the kind
    of each one's error (`network:ConnectionError`), not its cause (a certificate, a password).
    (sentinel, its error or None when it answers)."""
    manager = getattr(client.connection_pool, "sentinel_manager", None)
    causes: list[tuple[str, redis.RedisError | None]] = []
    for sentinel in getattr(manager, "sentinels", []):
        kwargs = sentinel.connection_pool.connection_kwargs
        where = f"sentinel {kwargs.get('host')}:{kwargs.get('port')}"
        try:
            sentinel.ping()
        except redis.RedisError as exc:
            causes.append((where, exc))
        else:
            causes.append((where, None))
    return causes


def _said(where: str, exc: redis.RedisError | None) -> str:
    if exc is None:
        return f"{where} answers but names no master that answers"
    return f"{where}: {redact(str(exc))}"


def client_for(url: str, tls: TlsPolicy | None = None, **kwargs: Any) -> Any:
    """A client for a `redis://` or `rediss://` URL (`tls`: how its certificate is checked),
    or for the master a `sentinel://` URL names (found through its sentinels again after
    every failover; `sentinels://`: the sentinels and the master over TLS, certificates
    checked the same way); `kwargs` go to redis-py."""
    options: dict[str, Any] = {
        "socket_timeout": 10,
        "socket_connect_timeout": 5,
        "health_check_interval": 30,
        "retry": _RETRY,
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
        **kwargs,
    }
    if not is_sentinel(url):
        return redis.Redis.from_url(url, **{**options, **(tls or TlsPolicy()).redis_kwargs(url)})
    target = parse_sentinel_url(url)
    options["retry"] = _SENTINEL_RETRY
    # A sentinel that does not answer is skipped at once (the next one is asked); redis-py's
    # default retries each for seconds, inside each of the command's own retries.
    to_sentinels: dict[str, Any] = {
        "socket_timeout": 2, "socket_connect_timeout": 2, "retry": Retry(NoBackoff(), 0),
        **sentinel_kwargs(target, url, tls),
    }
    to_master = (tls or TlsPolicy()).connection_kwargs(url)
    to_master.pop("ssl", None)  # the connection class below is what speaks TLS
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=to_sentinels)
    client = sentinel.master_for(
        target.master_name,
        db=target.db,
        username=target.username,
        password=target.password,
        connection_class=_FollowingSSLConnection if target.tls else _FollowingConnection,
        **to_master,
        **options,
    )
    _DURABLE[client] = target
    return client


def durably(client: Any, write: Callable[[Any], object], *, strict: bool = True) -> list[Any]:
    """`write(pipe)` (commands queued on a pipeline), then `WAIT` on the same connection for
    the replicas a sentinel:// URL asks (`wait_replicas`, default 1; a redis:// URL: none).
    Fewer acknowledgements within `wait_timeout`: the write stands on the master, but a
    failover now could forget it, so `strict` raises NotReplicated (what it granted is not
    used); not `strict` (a release: what it gives back) says so in the log and goes on."""
    target = _DURABLE.get(client)
    try:
        return _durably(client, write, target, strict)
    except redis.exceptions.NoScriptError:
        # A failover between the pipeline's script check and its run (redis-py sends the
        # pipeline again to the new master, which never loaded them): the script did not run
        # there; a new pipeline loads it first.
        log.warning("a script was missing on the master (a failover?): loaded, run again")
        return _durably(client, write, target, strict)


def _durably(client: Any, write: Callable[[Any], object], target: SentinelTarget | None,
             strict: bool) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    write(pipe)
    if target is None or target.wait_replicas == 0:
        return list(pipe.execute())
    pipe.wait(target.wait_replicas, int(target.wait_timeout * 1000))
    *results, acked = pipe.execute()
    if acked < target.wait_replicas:
        why = (
            f"{acked} of {target.wait_replicas} replica(s) acknowledged the write within "
            f"{target.wait_timeout:g}s: a failover now could forget it"
        )
        if strict:
            raise NotReplicated(why)
        log.warning("%s (not waited for further)", why)
    return list(results)


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

    def __call__(
        self, client: RedisClient, keys: list[str], args: list[Any], *, pipe: Any = None
    ) -> Any:
        """Run on `client`; with `pipe` (one of `client`'s pipelines), queued on it."""
        script = self._by_client.get(id(client))
        if script is None:
            script = self._by_client[id(client)] = client.register_script(self.source)
        return script(keys=keys, args=args, client=pipe)
