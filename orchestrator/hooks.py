"""Coordinator hooks: executables in hooks/ beside the box types, run with ORCHESTRATOR_* values."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import ConfigError, HookFailed

NAMES = ("pre-rollout", "post-rollout", "on-halt")
TAIL = 2000  # characters of a hook's output kept in errors and events


@dataclass(frozen=True)
class HookRun:
    name: str
    code: int
    output: str  # its last TAIL characters, stdout and stderr together


def hooks_dir(boxes_dir: Path, configured: Path | None) -> Path:
    return configured if configured is not None else boxes_dir.resolve().parent / "hooks"


def hook_env(values: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment plus ORCHESTRATOR_<NAME> for each value (names upper-cased)."""
    return {**os.environ, **{f"ORCHESTRATOR_{k.upper()}": v for k, v in values.items()}}


def run_hook(directory: Path, name: str, values: Mapping[str, str],
             timeout: float = 600.0) -> HookRun | None:
    """Run hooks/<name> if there is one (None if not); a non-zero exit is a HookRun with its
    code, for the caller to decide. A hook that can't run at all is a ConfigError."""
    path = directory / name
    if not path.exists():
        return None
    if not path.is_file() or not os.access(path, os.X_OK):
        raise ConfigError(f"hook {path} is not an executable file; `chmod +x {path}` or remove it")
    try:
        done = subprocess.run([str(path)], env=hook_env({"hook": name, **values}),
                              cwd=directory, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        raise HookFailed(f"hook {path} ran past {timeout:.0f}s and was killed") from None
    except OSError as exc:  # e.g. a bad #! line
        raise ConfigError(f"hook {path} could not start: {exc}") from None
    return HookRun(name, done.returncode, (done.stdout + done.stderr)[-TAIL:])


def pre_rollout(directory: Path, values: Mapping[str, str], timeout: float = 600.0) -> None:
    """hooks/pre-rollout must exit 0, or nothing changes (HookFailed names its output)."""
    run = run_hook(directory, "pre-rollout", values, timeout)
    if run is not None and run.code != 0:
        tail = run.output.strip().splitlines()[-5:]
        raise HookFailed(
            f"hooks/pre-rollout exited {run.code}; nothing was changed"
            + (":\n  " + "\n  ".join(tail) if tail else "")
        )
