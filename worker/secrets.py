"""Resolve env secret references on the box; values never leave this process."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from orchestrator.errors import DeployError
from schemas.boxfile import SecretRef


class SecretUnavailable(DeployError):
    """A secret reference could not be resolved; the message names the reference only."""


def _from_file(ref: str) -> str:
    path, _, key = ref.removeprefix("file:").partition("#")
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SecretUnavailable(f"cannot read secret file {path}: {exc.strerror}") from None
    if not key:
        return text.strip()
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name.strip() == key and not line.lstrip().startswith("#"):
            return value.strip().strip("'\"")
    raise SecretUnavailable(f"secret file {path} has no line {key}=...")


def ssm_fetcher(region: str, endpoint_url: str | None) -> Callable[[str], str]:
    """A lookup in AWS SSM Parameter Store (decrypted), made lazily: boto3 only if used."""

    def fetch(name: str) -> str:
        import boto3
        import botocore.exceptions

        client: Any = boto3.client("ssm", region_name=region, endpoint_url=endpoint_url)
        try:
            answer = client.get_parameter(Name=name, WithDecryption=True)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise SecretUnavailable(f"cannot read SSM parameter {name}: {exc}") from None
        return str(answer["Parameter"]["Value"])

    return fetch


def resolve_env(
    env: Mapping[str, str | SecretRef], ssm: Callable[[str], str] | None = None
) -> dict[str, str]:
    """Plain values as they are; secret references looked up now, on this box."""
    out: dict[str, str] = {}
    for key, value in env.items():
        if isinstance(value, str):
            out[key] = value
        elif value.secret.startswith("file:"):
            out[key] = _from_file(value.secret)
        elif value.secret.startswith("ssm:"):
            if ssm is None:
                raise SecretUnavailable(f"{key}: no SSM access configured for {value.secret}")
            out[key] = ssm(value.secret.removeprefix("ssm:"))
        else:  # the schema admits no other scheme
            raise SecretUnavailable(f"{key}: unknown secret scheme in {value.secret}")
    return out
