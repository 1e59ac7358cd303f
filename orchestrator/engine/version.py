"""The installed version, one answer for the CLI, the worker and its heartbeat."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version

DIST = "gc-box-orchestrator"  # pyproject.toml's name: ours alone on a package index


def version() -> str:
    try:
        return dist_version(DIST)
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"
