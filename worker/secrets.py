"""Resolve secret references (env values, registry passwords) on the box; values stay here."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from dotenv.parser import parse_stream

from orchestrator.errors import OrchestratorError, SecretUnavailable
from schemas.boxfile import SecretRef
from schemas.fleet import RegistryAuth
from schemas.refs import parse_image


def _from_file(ref: str) -> str:
    path, _, key = ref.removeprefix("file:").partition("#")
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SecretUnavailable(f"cannot read secret file {path}: {exc.strerror}") from None
    if not key:
        return text.strip()
    # python-dotenv's grammar: `export K=v`, quotes, escapes and `# comments` as shells mean them.
    found: str | None = None
    for binding in parse_stream(io.StringIO(text)):
        line = binding.original.line
        if binding.error:
            raise SecretUnavailable(
                f"secret file {path} line {line}: cannot parse it; write KEY=value "
                "(quote a value with blanks or '#')"
            )
        if binding.key == key:
            if binding.value is None:
                raise SecretUnavailable(f"secret file {path} line {line}: {key} has no '='")
            found = binding.value
    if found is None:
        raise SecretUnavailable(f"secret file {path} has no line {key}=...")
    return found


def ssm_fetcher(region: str, endpoint_url: str | None) -> Callable[[str], str]:
    """A lookup in AWS SSM Parameter Store (decrypted), made lazily: boto3 only if used."""

    def fetch(name: str) -> str:
        from orchestrator.engine.aws import aws_client, call

        what = f"cannot read SSM parameter {name}"
        try:
            client = aws_client("ssm", region, endpoint_url)
            try:
                answer = call(what, client.get_parameter, Name=name, WithDecryption=True)
            finally:
                client.close()
        except OrchestratorError as exc:
            # Whatever the cause (refused, unreachable, no credentials), a secret that can't be
            # read is SecretUnavailable: callers add the reference or registry that needed it.
            raise SecretUnavailable(str(exc)) from None
        return str(answer["Parameter"]["Value"])

    return fetch


def resolve_secret(ref: SecretRef, ssm: Callable[[str], str] | None = None) -> str:
    """The value behind one reference, looked up now, on this box; errors name the reference."""
    if ref.secret.startswith("file:"):
        return _from_file(ref.secret)
    if ref.secret.startswith("ssm:"):
        if ssm is None:
            raise SecretUnavailable(f"no SSM access configured for {ref.secret}")
        return ssm(ref.secret.removeprefix("ssm:"))
    # the schema admits no other scheme
    raise SecretUnavailable(f"unknown secret scheme in {ref.secret}")


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
