"""`orchestrator-worker-env REFS ENV`: the box's worker.env from worker.refs.json, at boot."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import ValidationError

from orchestrator.errors import ConfigError, SecretUnavailable
from schemas.base import SecretRef
from schemas.redaction import redact, validation_text
from worker.atomicfile import replace_file
from worker.secrets import resolve_env, ssm_fetcher

PROG = "orchestrator-worker-env"
USAGE = f"usage: {PROG} REFS_FILE ENV_FILE"


def read_refs(path: Path) -> dict[str, str | SecretRef]:
    """NAME -> plain value or {"secret": ref}, as the user data wrote it (references only)."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    except RecursionError:  # JSON nested past the interpreter's depth: no ValueError
        raise ConfigError(f"cannot read {path}: JSON nested too deep") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold one JSON object of settings")
    out: dict[str, str | SecretRef] = {}
    for name, value in raw.items():
        if isinstance(value, dict):
            try:
                out[name] = SecretRef.model_validate(value)
            except ValidationError as exc:
                raise ConfigError(
                    f"{name}: not a secret reference: {validation_text(exc)}"
                ) from None
        else:
            out[name] = str(value)
    return out


def resolve(refs: Mapping[str, str | SecretRef]) -> dict[str, str]:
    """Values, with secret references looked up now, on this box (SSM in the box's region)."""
    region = refs.get("ORCHESTRATOR_AWS_REGION")
    ssm = ssm_fetcher(region, None) if isinstance(region, str) and region else None
    values = resolve_env(refs, ssm)
    # systemd's EnvironmentFile reads one line per setting: a newline would cut a value.
    bad = sorted(name for name, value in values.items() if "\n" in value or "\r" in value)
    if bad:
        raise ConfigError("worker settings must be one line: " + ", ".join(bad))
    return values


def write_env(target: Path, values: Mapping[str, str]) -> None:
    """NAME=value lines, readable by root only, replaced atomically (no half-written file)."""
    text = "".join(f"{name}={value}\n" for name, value in values.items())
    replace_file(target, text.encode())


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        return 2
    source, target = Path(args[0]), Path(args[1])
    try:
        write_env(target, resolve(read_refs(source)))
    except (ConfigError, SecretUnavailable) as exc:
        print(f"{PROG}: {redact(str(exc))}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{PROG}: cannot write {target}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
