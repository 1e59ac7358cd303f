"""The one place a Redis URL is read: plain `redis://`, or `sentinel(s)://` for state and broker."""

from __future__ import annotations

import functools
import inspect
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import redis.connection

from orchestrator.engine.tls import TLS_FILES, TlsPolicy
from orchestrator.errors import ConfigError

SENTINEL_PORT = 26379
# Query parameters of a sentinel:// URL; anything else is a mistake worth naming. (The TLS
# ones are read by TlsPolicy, for the sentinels and the master alike.)
_PARAMS = {"master_name", "sentinel_username", "sentinel_password", "wait_replicas",
           "wait_timeout", "ssl_cert_reqs", *TLS_FILES}
_FORM = ("sentinel://HOST:PORT[,HOST:PORT...]/DB?master_name=NAME, or sentinels://... for "
         "TLS to the sentinels and the master (README: Redis Sentinel)")
# The other schemes each URL setting takes: redis-py's for the state, kombu's Redis transports
# for the broker (redis+socket:// is kombu's spelling of a Unix socket).
STATE_SCHEMES = ("redis", "rediss", "unix")
BROKER_SCHEMES = ("redis", "rediss", "redis+socket")
# A query parameter's name is repeated only when it is a plain word: a password with an
# unencoded '?' puts its tail in the query, and that is never shown.
_PLAIN_NAME = re.compile(r"[a-z_]{1,40}\Z")
# Numbers in a URL are ASCII digits (str.isdigit() and int() take '²' and '١').
_COUNT = re.compile(r"[0-9]+")
_SECONDS = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")
MAX_REPLICAS = 100  # WAIT's count: more than any Sentinel set has, and far under Redis's long
MAX_WAIT = 60.0  # a write waiting longer for a replica outlasts a default lease (60 s)
_ENCODE = "; a password with '/', '?' or '#' in it must be percent-encoded (e.g. %2F)"


@dataclass(frozen=True)
class SentinelTarget:
    """A Redis reached through its sentinels: which master, which database, and how many
    replicas a lease, claim or fence write waits for (`WAIT`), for how long."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    wait_replicas: int = 1
    wait_timeout: float = 1.0
    tls: bool = False  # sentinels://: both the sentinels and the master are spoken to over TLS


def is_sentinel(url: str) -> bool:
    return url.lower().startswith(("sentinel://", "sentinels://"))


def parse_sentinel_url(url: str, setting: str = "ORCHESTRATOR_REDIS_URL") -> SentinelTarget:
    """`sentinel://[:pw@]h1:26379,h2:26379/1?master_name=mymaster`; ConfigError naming
    `setting` (if any) and the expected form on anything else (no part of the URL is repeated
    but a parameter's name: a mangled password may be in any of them)."""

    def bad(why: str) -> ConfigError:
        return ConfigError(f"{setting + ': ' if setting else ''}{why}; expected {_FORM}")

    if not is_sentinel(url):
        raise bad("not a sentinel:// or sentinels:// URL")
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    addresses = [h for h in hosts.split(",") if h.strip()]
    sentinels = tuple(_host_port(h, n, bad) for n, h in enumerate(addresses, 1))
    if not sentinels:
        raise bad("no sentinel address")
    username, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    path = parts.path.strip("/")
    if path and not _COUNT.fullmatch(path):
        raise bad(f"the database (the path) is not a number{_encoded(url)}")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(query) - _PARAMS)
    if unknown:
        raise bad(f"unknown parameter {', '.join(_shown(n) for n in unknown)}")
    master = query.get("master_name", "")
    if not master:
        raise bad("master_name is missing")
    replicas, timeout = query.get("wait_replicas", "1"), query.get("wait_timeout", "1.0")
    if not (_COUNT.fullmatch(replicas) and _SECONDS.fullmatch(timeout)):
        raise bad("wait_replicas must be a whole number and wait_timeout seconds, in digits")
    if int(replicas) > MAX_REPLICAS or not 0 < float(timeout) <= MAX_WAIT:
        raise bad(f"wait_replicas must be 0-{MAX_REPLICAS} and wait_timeout more than 0 and at "
                  f"most {MAX_WAIT:g} seconds")
    return SentinelTarget(
        sentinels=sentinels,
        master_name=master,
        db=int(path or 0),
        username=unquote(username) or None,
        password=unquote(password) or None,
        sentinel_username=query.get("sentinel_username") or None,
        sentinel_password=query.get("sentinel_password") or None,
        wait_replicas=int(replicas),
        wait_timeout=float(timeout),
        tls=parts.scheme.lower() == "sentinels",
    )


def _host_port(text: str, n: int, bad: Any) -> tuple[str, int]:
    host, _, port = text.strip().rpartition(":")
    if not host:
        host, port = port, str(SENTINEL_PORT)
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise bad(f"sentinel address {n} is not HOST:PORT with a port from 1 to 65535")
    return host, int(port)


def _shown(name: str) -> str:
    return name if _PLAIN_NAME.match(name) else "(a parameter that is not a plain name)"


def url_problem(url: str, *, broker: bool = False) -> str:
    """Why `url` is no Redis URL the state client (or, `broker`, kombu) can use; '' when it
    is. Its parts are never repeated: the URL may hold a password. Pure."""
    if is_sentinel(url):
        try:
            parse_sentinel_url(url, "")
        except ConfigError as exc:
            return str(exc)
        return ""
    why = _plain_problem(url, broker)
    return f"{why}; write e.g. redis://10.0.0.5:6379/1" if why else ""


def _plain_problem(url: str, broker: bool) -> str:
    schemes = BROKER_SCHEMES if broker else STATE_SCHEMES
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in schemes:
        named = ", ".join(f"{s}://" for s in (*schemes, "sentinel", "sentinels"))
        return f"it is not a URL starting with {named}"
    if scheme in ("unix", "redis+socket"):
        if not urlsplit(url).path.strip("/"):
            return f"it names no socket, e.g. {scheme}:///run/redis.sock"
    elif why := _server_problem(url):
        return why
    return "" if broker else _query_problem(url, scheme)  # kombu reads its own parameters


def _server_problem(url: str) -> str:
    """The port and the database of a redis:// or rediss:// URL (redis-py would take a
    database it cannot read as 0: another product's keys)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        return f"its port is not a number from 1 to 65535{_encoded(url)}"
    try:  # what the resolver is handed: labels of 1-63 characters (a longer one raised)
        (parts.hostname or "localhost").encode("idna")
    except UnicodeError:
        return f"its host is not a host name (a part over 63 characters, or empty){_encoded(url)}"
    if not re.fullmatch(r"/?[0-9]*", parts.path):
        return f"its database (the path) is not a number, e.g. /1{_encoded(url)}"
    return ""


def _encoded(url: str) -> str:
    """The likely cause when a URL with a password reads wrong: the password cut it short."""
    return _ENCODE if "@" in url else ""


def _query_problem(url: str, scheme: str) -> str:
    """A parameter redis-py does not take (its connection would raise TypeError at the first
    command), or one whose value it cannot read."""
    known = _parameters(scheme)
    for name, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name not in known:
            return f"redis-py takes no parameter {_shown(name)} in a {scheme}:// URL"
    try:
        redis.connection.parse_url(url)
    except ValueError as exc:  # "Invalid value for 'NAME' ...": a name redis-py knows
        return str(exc)
    # redis-py reads numbers with int() and float(): '١' is 1 to them, 'nan' a timeout.
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        kind = redis.connection.URL_QUERY_ARGUMENT_PARSERS.get(name)
        if kind in (int, float) and value and not (_COUNT if kind is int else _SECONDS
                                                   ).fullmatch(value):
            return f"{_shown(name)} must be a {'whole ' if kind is int else ''}number in digits"
    return ""


@functools.cache
def _parameters(scheme: str) -> frozenset[str]:
    """The keyword arguments a redis-py connection of `scheme` and its pool take."""
    kind = {"redis": redis.connection.Connection, "rediss": redis.connection.SSLConnection,
            "unix": redis.connection.UnixDomainSocketConnection}[scheme]
    classes = [c for c in (*kind.__mro__, redis.connection.ConnectionPool) if "__init__" in vars(c)]
    return frozenset(
        name
        for c in classes
        for name, p in inspect.signature(vars(c)["__init__"]).parameters.items()
        if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    )


def sentinel_kwargs(target: SentinelTarget, url: str, tls: TlsPolicy | None) -> dict[str, Any]:
    """How a client speaks to the sentinels themselves: their own user and password, and
    for sentinels:// the TLS the master gets too (certificate checked as TlsPolicy says)."""
    kwargs: dict[str, Any] = {}
    if target.sentinel_username is not None:
        kwargs["username"] = target.sentinel_username
    if target.sentinel_password is not None:
        kwargs["password"] = target.sentinel_password
    return {**kwargs, **(tls or TlsPolicy()).connection_kwargs(url)}


def kombu_broker(url: str, tls: TlsPolicy | None = None) -> tuple[str, dict[str, Any]]:
    """The broker URL as kombu wants it, and the transport options it needs: a plain URL as
    it is; a sentinel(s):// URL as kombu's `sentinel://h1:p/db;sentinel://h2:p/db` (one URL
    per sentinel) with `master_name` and how to reach the sentinels in the transport options
    (the master's TLS is Celery's broker_use_ssl, which TlsPolicy.broker_ssl gives)."""
    if not is_sentinel(url):
        return url, {}
    target = parse_sentinel_url(url, "ORCHESTRATOR_BROKER_URL")
    auth = ""
    if target.password is not None:
        auth = f"{quote(target.username or '', safe='')}:{quote(target.password, safe='')}@"
    urls = ";".join(f"sentinel://{auth}{h}:{p}/{target.db}" for h, p in target.sentinels)
    options: dict[str, Any] = {"master_name": target.master_name}
    to_sentinels = sentinel_kwargs(target, url, tls)
    if to_sentinels:
        options["sentinel_kwargs"] = to_sentinels
    return urls, options
