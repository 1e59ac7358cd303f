"""The one place a Redis URL is read: plain `redis://`, or `sentinel(s)://` for state and broker."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from orchestrator.engine.tls import TLS_FILES, TlsPolicy
from orchestrator.errors import ConfigError

SENTINEL_PORT = 26379
# Query parameters of a sentinel:// URL; anything else is a mistake worth naming. (The TLS
# ones are read by TlsPolicy, for the sentinels and the master alike.)
_PARAMS = {"master_name", "sentinel_username", "sentinel_password", "wait_replicas",
           "wait_timeout", "ssl_cert_reqs", *TLS_FILES}
_FORM = ("sentinel://HOST:PORT[,HOST:PORT...]/DB?master_name=NAME, or sentinels://... for "
         "TLS to the sentinels and the master (README: Redis Sentinel)")


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
    `setting` and the expected form on anything else (the password is never repeated)."""

    def bad(why: str) -> ConfigError:
        return ConfigError(f"{setting}: {why}; expected {_FORM}")

    if not is_sentinel(url):
        raise bad("not a sentinel:// or sentinels:// URL")
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    sentinels = tuple(_host_port(h, bad) for h in hosts.split(",") if h.strip())
    if not sentinels:
        raise bad("no sentinel address")
    username, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise bad(f"the database {path!r} is not a number")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(query) - _PARAMS)
    if unknown:
        raise bad(f"unknown parameter {', '.join(unknown)}")
    master = query.get("master_name", "")
    if not master:
        raise bad("master_name is missing")
    try:
        replicas = int(query.get("wait_replicas", "1"))
        timeout = float(query.get("wait_timeout", "1.0"))
    except ValueError:
        raise bad("wait_replicas must be a whole number and wait_timeout seconds") from None
    if replicas < 0 or timeout <= 0:
        raise bad("wait_replicas must be >= 0 and wait_timeout > 0")
    return SentinelTarget(
        sentinels=sentinels,
        master_name=master,
        db=int(path or 0),
        username=unquote(username) or None,
        password=unquote(password) or None,
        sentinel_username=query.get("sentinel_username") or None,
        sentinel_password=query.get("sentinel_password") or None,
        wait_replicas=replicas,
        wait_timeout=timeout,
        tls=parts.scheme.lower() == "sentinels",
    )


def _host_port(text: str, bad: Any) -> tuple[str, int]:
    host, _, port = text.strip().rpartition(":")
    if not host:
        host, port = port, str(SENTINEL_PORT)
    if not port.isdigit():
        raise bad(f"bad sentinel address {text.strip()!r}")
    return host, int(port)


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
