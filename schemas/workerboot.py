"""What the user data writes for a box's worker: settings by reference, a pinned install."""

from __future__ import annotations

import math
import re
from typing import Annotated
from urllib.parse import parse_qsl, urlsplit

from pydantic import BeforeValidator, Field, field_validator, model_validator

from schemas.base import SecretRef, Strict
from schemas.refs import has_control
from schemas.settingvalues import BOOT_RULES

SETTING_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*\Z")
RESERVED_SETTINGS = frozenset({"box_id", "box_type", "broker_url", "redis_url", "aws_region"})
_SECRET_WORDS = ("password", "secret", "token", "credential")
SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")


def _url_or_ref(v: object) -> object:
    if isinstance(v, dict) and set(v) == {"secret"}:
        return SecretRef.model_validate(v)
    if isinstance(v, str):
        parts = urlsplit(v)
        if not parts.scheme or not parts.netloc:
            raise ValueError(
                "this is not a URL: it has no scheme://host (its text is not shown: it may hold "
                "a password); write e.g. 'redis://10.0.0.5:6379/0', or the URL in SSM as "
                "{secret: 'ssm:/orchestrator/broker-url'}"
            )
        if parts.password or _secret_params(parts.query):
            raise ValueError(
                "this URL carries a password, which would be readable in the launch template; "
                "store the URL in SSM and write {secret: 'ssm:/orchestrator/broker-url'}"
            )
        if _no_verify(parts.query):
            raise ValueError(
                "this URL turns off TLS certificate checks (ssl_cert_reqs=none/optional); "
                "give the box the CA instead (ssl_ca_certs=/path/ca.crt, or the redis_ca "
                "setting)"
            )
    return v


# Query parameters that carry a credential: refused in the user data as a password is.
_SECRET_PARAMS = frozenset({"password", "passwd", "pass", "pwd", "token", "secret", "auth"})


def _secret_params(query: str) -> list[str]:
    """Credential parameters, by name or by a word in it (`sentinel_password`)."""
    return [k for k, _ in parse_qsl(query, keep_blank_values=True)
            if k.lower() in _SECRET_PARAMS or any(w in k.lower() for w in _SECRET_WORDS)]


def _no_verify(query: str) -> bool:
    return any(
        k.lower() == "ssl_cert_reqs" and v.lower() in {"none", "optional", "cert_none"}
        for k, v in parse_qsl(query, keep_blank_values=True)
    )


UrlOrRef = Annotated[str | SecretRef, BeforeValidator(_url_or_ref)]


def _setting_value(v: object) -> object:
    if isinstance(v, dict) and set(v) == {"secret"}:
        return SecretRef.model_validate(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"setting value {v} is not a finite number; write a number")
    if isinstance(v, int | float):
        return str(v)
    return v


SettingValue = Annotated[str | SecretRef, BeforeValidator(_setting_value)]


def _not_https(url: str, scheme: str, host: str) -> str:
    """What keeps `url` from being an https URL, in words that do not quote it ('' if none)."""
    if scheme != "https":
        # Only a well-known scheme is named: before a ':' may stand a user name, or a token.
        known = scheme.lower() in {"http", "ftp", "ftps", "s3", "file", "sftp", "git", "ssh"}
        return f"is {scheme.lower()}://, not https://" if known else "has no https:// scheme"
    if not host:
        return "has no host"
    return "has a blank (a space, tab or newline)" if any(c.isspace() for c in url) else ""


class PinnedFile(Strict):
    """A file the box downloads over HTTPS and uses only if its sha256 matches."""

    url: str = Field(description="https URL the box can reach (no password in it)")
    sha256: str = Field(description="64 hex digits: `sha256sum FILE`")

    @field_validator("url")
    @classmethod
    def _https(cls, v: str) -> str:
        parts = urlsplit(v)
        why = _not_https(v, parts.scheme, parts.netloc)
        if why:  # the URL is not shown: it may carry a password or a token
            raise ValueError(f"this URL {why}; it must be an https:// URL without spaces")
        if parts.password or parts.username:
            raise ValueError(
                "this URL carries credentials, which would be readable in the launch template; "
                "serve the file where the box reaches it with its instance role"
            )
        return v

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str) -> str:
        digest = v.removeprefix("sha256:").lower()
        if not SHA256_RE.match(digest):
            raise ValueError(f"sha256 {v!r} must be 64 hex digits (`sha256sum FILE`)")
        return digest


class WorkerBoot(Strict):
    """What the user data writes to /etc/orchestrator/worker.env; secrets by reference only."""

    broker_url: UrlOrRef = Field(
        description="Celery broker: a URL without a password, or {secret: 'ssm:/...'} "
        "resolved on the box at boot"
    )
    redis_url: UrlOrRef | None = Field(
        None, description="Product state (Redis), as broker_url; unset: the worker's default"
    )
    wheel: PinnedFile = Field(
        description="The worker wheel (gc-box-orchestrator) by https URL ending in .whl, "
        "with its sha256: `pip wheel --no-deps -w dist .`, `sha256sum dist/*.whl`"
    )
    lock: PinnedFile = Field(
        description="requirements/worker.lock of the same version (every dependency pinned "
        "with its hashes) by https URL, with its sha256"
    )
    settings: dict[str, SettingValue] = Field(
        default_factory=dict,
        description="More worker settings by name without the ORCHESTRATOR_ prefix "
        "(e.g. log_root: /var/log/orchestrator); values or {secret: ...} references",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_bare_package(cls, data: object) -> object:
        if isinstance(data, dict) and "package" in data:
            raise ValueError(
                "'package' is gone: a box installs only pinned files, never a name from a "
                "public index; write wheel: {url: https://.../gc_box_orchestrator-<v>-py3-none-"
                "any.whl, sha256: ...} and lock: {url: https://.../worker.lock, sha256: ...}"
            )
        return data

    @field_validator("wheel")
    @classmethod
    def _a_wheel(cls, v: PinnedFile) -> PinnedFile:
        # pip names and checks a direct URL by its file name.
        if not urlsplit(v.url).path.endswith(".whl"):
            raise ValueError(
                "wheel URL must end in a wheel's file name (.whl), e.g. "
                "https://.../gc_box_orchestrator-1.0-py3-none-any.whl"
            )
        return v

    @field_validator("settings")
    @classmethod
    def _names(cls, v: dict[str, str | SecretRef]) -> dict[str, str | SecretRef]:
        for name, value in v.items():
            if not SETTING_NAME_RE.match(name):
                raise ValueError(
                    f"setting {name!r} must be a worker setting name in lower case "
                    "without the prefix, e.g. log_root"
                )
            if name in RESERVED_SETTINGS:
                raise ValueError(
                    f"setting {name!r} is written by boxtype create; "
                    "set broker_url/redis_url above, region under provision"
                )
            if name == "insecure_redis_tls":
                raise ValueError(
                    "setting insecure_redis_tls turns off Redis certificate checks on every box; "
                    "give the boxes the CA instead (setting redis_ca)"
                )
            if isinstance(value, str) and any(w in name for w in _SECRET_WORDS):
                raise ValueError(
                    f"setting {name!r} looks secret; write {{secret: 'ssm:/...'}}, not a value"
                )
            if isinstance(value, str) and has_control(value):
                raise ValueError(f"setting {name!r} must be one line without control "
                                 "characters (tab, NUL...): it is written to an env file")
            if isinstance(value, str) and (rule := BOOT_RULES.get(name)):
                try:
                    rule(value)
                except ValueError as exc:
                    raise ValueError(f"setting {name!r}: {exc}") from None
        return v

