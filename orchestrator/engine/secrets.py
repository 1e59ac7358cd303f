"""Secret references resolved where they are used (a box; the notifier): values stay there."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from orchestrator.errors import OrchestratorError, SecretUnavailable
from schemas.base import SecretRef


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
    """The value behind one reference, looked up now, here; errors name the reference."""
    if ref.secret.startswith("file:"):
        return _from_file(ref.secret)
    if ref.secret.startswith("ssm:"):
        if ssm is None:
            raise SecretUnavailable(f"no SSM access configured for {ref.secret}")
        return ssm(ref.secret.removeprefix("ssm:"))
    # the schema admits no other scheme
    raise SecretUnavailable(f"unknown secret scheme in {ref.secret}")
