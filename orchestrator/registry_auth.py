"""fleet.yml `registries` for pinning: credentials resolved here, kept in memory, never stored."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from orchestrator.engine.ecr import EcrTokens
from orchestrator.errors import ConfigError, OrchestratorError
from orchestrator.registry import RegistryClient
from schemas.base import SecretRef
from schemas.fleet import RegistryAuth, ecr_host


def ecr_digest(account: str, region: str, repository: str, tag: str,
               endpoint_url: str | None = None) -> str:
    """The digest ECR reports for repository:tag in `account` (registryId: cross-account)."""
    from orchestrator.engine.aws import aws_client, call  # boto3 only for ECR (0.1 s)

    what = f"ECR {account}.dkr.ecr.{region}: describe_images {repository}:{tag}"
    client = aws_client("ecr", region, endpoint_url)
    try:
        answer = call(
            what,
            client.describe_images,
            refused=ConfigError,
            registryId=account,
            repositoryName=repository,
            imageIds=[{"imageTag": tag}],
        )
    finally:
        client.close()
    details = answer.get("imageDetails") or []
    if not details or not details[0].get("imageDigest"):
        raise ConfigError(f"{what}: no such image; push it first or fix the tag")
    return str(details[0]["imageDigest"])


def resolve_here(ref: SecretRef, region: str, endpoint_url: str | None) -> str:
    """The value behind a reference, on the machine that pins (the box resolves its own)."""
    secret = ref.secret
    if secret.startswith("ssm:"):
        from orchestrator.engine.aws import aws_client, call  # boto3 only for SSM

        name = secret.removeprefix("ssm:")
        client = aws_client("ssm", region, endpoint_url)
        try:
            got = call(f"cannot read SSM parameter {name}", client.get_parameter,
                       refused=ConfigError, Name=name, WithDecryption=True)
        finally:
            client.close()
        return str(got["Parameter"]["Value"])
    path, _, key = secret.removeprefix("file:").partition("#")
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path} ({exc.strerror}): pinning resolves the registry password "
            "on this machine, so the reference must resolve here too"
        ) from None
    if not key:
        return text.strip()
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name.strip() == key and not line.lstrip().startswith("#"):
            return value.strip().strip("'\"")
    raise ConfigError(f"{path} has no line {key}=...")


def fleet_credentials(
    registries: Iterable[RegistryAuth], region: str, endpoint_url: str | None,
    tokens: EcrTokens | None = None,
) -> Callable[[str], tuple[str, str] | None]:
    """host -> (user, password), each resolved on first use and kept for this run only."""
    entries = {r.registry.lower(): r for r in registries}
    tokens = tokens or EcrTokens(endpoint_url)
    seen: dict[str, tuple[str, str] | None] = {}

    def lookup(host: str) -> tuple[str, str] | None:
        host = host.lower()
        if host not in seen:
            seen[host] = _resolve(host, entries.get(host), region, endpoint_url, tokens)
        return seen[host]

    return lookup


def _resolve(host: str, entry: RegistryAuth | None, region: str, endpoint_url: str | None,
             tokens: EcrTokens) -> tuple[str, str] | None:
    ecr = ecr_host(entry.ecr) if entry is not None and entry.ecr else ecr_host(host)
    try:
        if ecr is not None:
            got = tokens.credentials(*ecr)
            return got["username"], got["password"]
        if entry is None or entry.username is None or entry.password is None:
            return None
        return entry.username, resolve_here(entry.password, region, endpoint_url)
    except OrchestratorError as exc:
        raise type(exc)(f"credentials for registry {host}: {exc}") from None


def make_client(
    registries: Iterable[RegistryAuth], *, insecure: list[str], region: str,
    endpoint_url: str | None,
) -> RegistryClient:
    """The one pinning client: fleet.yml credentials, tokens per scope, ECR through AWS."""
    return RegistryClient(
        insecure,
        fleet_credentials(registries, region, endpoint_url),
        ecr=lambda account, reg, repo, tag: ecr_digest(account, reg, repo, tag, endpoint_url),
    )
