"""Secret references resolved where they are used (a box; the notifier): values stay there."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from dotenv.parser import parse_stream

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
    """A lookup in AWS SSM Parameter Store (decrypted), made lazily: boto3 only if used. Each
    call asks SSM (a rotated value is seen at once); the client is the process's one."""

    def fetch(name: str) -> str:
        from orchestrator.engine.aws import call, shared_client

        what = f"cannot read SSM parameter {name}"
        try:
            client = shared_client("ssm", region, endpoint_url)
            answer = call(what, client.get_parameter, Name=name, WithDecryption=True)
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
