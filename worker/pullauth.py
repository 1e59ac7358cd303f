"""The credentials of one pull: fleet.yml's user and password, or an ECR token; on the box."""

from __future__ import annotations

from orchestrator.errors import OrchestratorError, SecretUnavailable
from schemas.fleet import ecr_host
from schemas.refs import parse_image
from schemas.release import Release
from worker.facts import BoxEnv
from worker.secrets import registry_auth


def pull_credentials(env: BoxEnv, release: Release, ref: str) -> dict[str, str] | None:
    """{"username", "password"} for the registry of `ref`, or None when none is listed.

    An ECR host (or an entry with `ecr:`) gets a token of that account and region; the engine
    itself answers a Bearer challenge with the user and password, as for `docker login`.
    """
    host = (parse_image(ref).registry or "").lower()
    entry = next((r for r in release.registries if r.registry.lower() == host), None)
    ecr = ecr_host(entry.ecr) if entry is not None and entry.ecr else ecr_host(host)
    if ecr is not None:
        if env.ecr is None:
            raise SecretUnavailable("no ECR access configured on this box")
        try:
            return env.ecr(*ecr)
        except OrchestratorError as exc:  # refused, unreachable: the pull has no credentials
            raise SecretUnavailable(f"ECR token of {ecr[0]} in {ecr[1]}: {exc}") from None
    return registry_auth(ref, release.registries, env.ssm)
