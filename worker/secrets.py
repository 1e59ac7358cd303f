"""Resolve secret references (env values, registry passwords) on the box; values stay here."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from orchestrator.engine.secrets import resolve_secret as resolve_secret
from orchestrator.engine.secrets import ssm_fetcher as ssm_fetcher
from orchestrator.errors import SecretUnavailable
from schemas.boxfile import SecretRef
from schemas.fleet import RegistryAuth
from schemas.refs import parse_image


def resolve_env(
    env: Mapping[str, str | SecretRef], ssm: Callable[[str], str] | None = None
) -> dict[str, str]:
    """Plain values as they are; secret references looked up now, on this box."""
    out: dict[str, str] = {}
    for key, value in env.items():
        if isinstance(value, str):
            out[key] = value
            continue
        try:
            out[key] = resolve_secret(value, ssm)
        except SecretUnavailable as exc:
            raise SecretUnavailable(f"{key}: {exc}") from None
    return out


# Names Docker Hub goes by; an image reference without a registry host is on Docker Hub.
_DOCKER_HUB = {"docker.io", "index.docker.io", "registry-1.docker.io"}


def registry_auth(
    image_ref: str,
    registries: Iterable[RegistryAuth],
    ssm: Callable[[str], str] | None = None,
) -> dict[str, str] | None:
    """{"username", "password"} for the registry of `image_ref`, or None when none is listed.

    The password is resolved here, on the box, and only handed to the engine: never log it.
    """
    host = parse_image(image_ref).registry
    wanted = {host.lower()} if host else _DOCKER_HUB
    for entry in registries:
        if entry.registry.lower() in wanted:
            return {"username": entry.username, "password": resolve_secret(entry.password, ssm)}
    return None
