"""Setting values the coordinator and the worker share: what each may hold, checked once."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator

from schemas.refs import check_container_path, has_control

# Redis key names: kombu's keys share the database, so an empty prefix would mix with them.
_KEY_PREFIX = re.compile(r"[A-Za-z0-9:_.\-]{1,64}\Z")
# us-east-1, eu-central-2, us-gov-west-1, cn-north-1, ap-southeast-5 ...
_REGION = re.compile(r"[a-z]{2}(-[a-z0-9]+){1,3}\Z")


def _key_prefix(v: str) -> str:
    if not _KEY_PREFIX.match(v):
        raise ValueError("a key prefix is 1-64 letters, digits and ':_.-', e.g. orch:")
    return v


def _region(v: str) -> str:
    if not _REGION.match(v):
        raise ValueError("not an AWS region name; write one like us-east-1")
    return v


def _endpoint(v: str | None) -> str | None:
    if not v:  # unset, or set empty: the same
        return v
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname or has_control(v):
        raise ValueError("not an http(s) URL; write one like http://127.0.0.1:5000, or unset it")
    return v


def _log_root(v: str) -> str:
    """The host directory containers' logs are bound under: each bind's host part starts here."""
    if not v.startswith("/"):
        raise ValueError(f"log_root {v!r} must be an absolute path, e.g. /var/log/orchestrator")
    check_container_path(v, "log_root")  # no control character, no '..', no ':'
    return v


def _socket(v: str | None) -> str | None:
    if v and (not v.startswith("/") or has_control(v)):  # set empty: unset
        raise ValueError("the socket is an absolute path, e.g. /run/haproxy/admin.sock")
    return v


def _one_line(v: str | None) -> str | None:
    if v is not None and (has_control(v) or len(v) > 200):
        raise ValueError("one line of at most 200 characters (history and notices show it)")
    return v


KeyPrefix = Annotated[str, AfterValidator(_key_prefix)]
AwsRegion = Annotated[str, AfterValidator(_region)]
EndpointUrl = Annotated[str | None, AfterValidator(_endpoint)]
SocketPath = Annotated[str | None, AfterValidator(_socket)]
LogRoot = Annotated[str, AfterValidator(_log_root)]
OneLine = Annotated[str | None, AfterValidator(_one_line)]
# The same rules for a worker setting written by name in box.yml's provision.worker.settings
# (the user data puts it in the box's env file): refused at validate, not by a box at boot.
BOOT_RULES = {"key_prefix": _key_prefix, "aws_endpoint_url": _endpoint,
              "haproxy_socket": _socket, "log_root": _log_root}
