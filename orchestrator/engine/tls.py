"""TLS to Redis (broker and state): certificates are verified unless a loud setting says not."""

from __future__ import annotations

import os
import ssl
import stat
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from orchestrator.errors import ConfigError

# Spellings of "do not verify" in a URL (redis-py's and kombu's).
_NO_VERIFY = frozenset({"none", "optional", "cert_none", "cert_optional"})
# URL parameters that name files of the TLS set-up; handed to kombu as they are to redis-py.
TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
INSECURE_SETTING = "ORCHESTRATOR_INSECURE_REDIS_TLS"


@dataclass(frozen=True)
class TlsPolicy:
    """`ca`: the CA bundle that signed the Redis server's certificate (else the system store);
    `insecure`: accept any certificate. Only for a throw-away test set-up: anyone on the path
    between a box and Redis could then read the broker's tasks and write the state."""

    ca: str | None = None
    insecure: bool = False

    def _params(self, url: str) -> tuple[bool, dict[str, str]]:
        parts = urlsplit(url)
        tls = parts.scheme in {"rediss", "sentinels"}
        return tls, {k.lower(): v for k, v in parse_qsl(parts.query, keep_blank_values=True)}

    def _verify(self, params: dict[str, str]) -> bool:
        url_off = params.get("ssl_cert_reqs", "required").lower() in _NO_VERIFY
        if url_off and not self.insecure:
            raise ConfigError(
                "the Redis URL turns off certificate checks (ssl_cert_reqs="
                f"{params['ssl_cert_reqs']}); give the CA instead (ORCHESTRATOR_REDIS_CA or "
                f"ssl_ca_certs=...), or, for a throw-away test set-up only, {INSECURE_SETTING}=true"
            )
        return not (url_off or self.insecure)

    def redis_kwargs(self, url: str) -> dict[str, Any]:
        """Keyword arguments for redis-py's from_url (the URL's own parameters still win)."""
        tls, params = self._params(url)
        if not tls:
            return {}
        kwargs: dict[str, Any] = {"ssl_cert_reqs": "required" if self._verify(params) else "none"}
        if self.ca and "ssl_ca_certs" not in params:
            kwargs["ssl_ca_certs"] = self.ca
        return kwargs

    def connection_kwargs(self, url: str) -> dict[str, Any]:
        """redis-py connection arguments where no URL is parsed (through sentinels): TLS on,
        the certificate checked, the URL's TLS files and else the configured CA."""
        tls, params = self._params(url)
        if not tls:
            return {}
        kwargs: dict[str, Any] = {
            "ssl": True, "ssl_cert_reqs": "required" if self._verify(params) else "none",
        }
        kwargs |= {name: params[name] for name in TLS_FILES if name in params}
        if self.ca and "ssl_ca_certs" not in kwargs:
            kwargs["ssl_ca_certs"] = self.ca
        return kwargs

    def broker_ssl(self, url: str) -> dict[str, Any] | None:
        """Celery's broker_use_ssl: kombu would take a bare rediss:// URL with CERT_NONE."""
        tls, params = self._params(url)
        if not tls:
            return None
        verify = self._verify(params)
        options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED if verify else ssl.CERT_NONE}
        for name in TLS_FILES:
            if name in params:
                options[name] = params[name]
        if self.ca and "ssl_ca_certs" not in options:
            options["ssl_ca_certs"] = self.ca
        return options


class RedisConnection(BaseModel):
    """The Redis settings both sides read (ORCHESTRATOR_*): where, and how TLS is checked.
    A base of each side's settings, which reads the environment."""

    broker_url: str = Field(
        "redis://127.0.0.1:6379/0", description="Celery broker (Redis, or sentinel://)"
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/1", description="Product state (Redis, or sentinel://)"
    )
    redis_ca: str | None = Field(
        None, description="CA bundle that signed the Redis server certificate (rediss:// URLs)"
    )
    insecure_redis_tls: bool = Field(
        False, description="DANGER: accept any Redis TLS certificate; throw-away tests only"
    )

    @field_validator("redis_url", "broker_url")
    @classmethod
    def _readable_url(cls, url: str, info: ValidationInfo) -> str:
        # Imported here: redisurl imports this module (TLS_FILES, TlsPolicy).
        from orchestrator.engine.redisurl import url_problem

        if why := url_problem(url, broker=info.field_name == "broker_url"):
            raise ValueError(why)
        return url

    def tls(self) -> TlsPolicy:
        return TlsPolicy(self.redis_ca, self.insecure_redis_tls)

    def tls_file_problem(self) -> tuple[str, str] | None:
        """(the setting, why) for the first TLS file a rediss:// or sentinels:// URL uses that
        cannot be read: asked before connecting, so a missing CA is bad input named as such,
        not a Redis that "does not answer". Only opened, never read: a key stays unread."""
        for name in ("redis_url", "broker_url"):
            tls, params = TlsPolicy()._params(getattr(self, name))
            if not tls:
                continue
            for param in TLS_FILES:
                if param in params and (why := unreadable(params[param], param == "ssl_ca_certs")):
                    return name.upper(), f"the file its {param} parameter names {why}"
            if self.redis_ca and "ssl_ca_certs" not in params and (
                why := unreadable(self.redis_ca, ca=True)
            ):
                return "REDIS_CA", f"{self.redis_ca} {why}"
        return None


def unreadable(path: str, ca: bool = False) -> str:
    """Why `path` is no regular file this process can open ('' when it is); a `ca` bundle must
    also hold a certificate. Opened without blocking (a FIFO would wait for a writer)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "is not a regular file"
    finally:
        os.close(fd)
    if ca:
        try:
            ssl.create_default_context(cafile=path)
        except (ssl.SSLError, ValueError):
            return "holds no PEM certificate (a CA bundle is wanted)"
    return ""
