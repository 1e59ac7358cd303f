"""The box's limits on host paths: what a release may mount or read, links resolved here."""

from __future__ import annotations

import logging
import os

from orchestrator.errors import HostPathDenied
from schemas.hostpaths import DEFAULT_DENY, PathUse, judge, spec_paths
from schemas.release import Release
from worker.settings import ENV_FILE, SETTINGS_DIR, WorkerSettings

log = logging.getLogger("orchestrator.worker.limits")

# Settings whose value is a path of the worker's own: keys, sockets, its record.
_OWN_SUFFIXES = ("_file", "_dir", "_socket", "_path")


def own_paths(settings: WorkerSettings) -> dict[str, str]:
    """The worker's own files and directories (path -> what), links resolved as well."""
    named = {
        SETTINGS_DIR: "the worker's settings directory",
        ENV_FILE: "the worker's settings file",
    }
    env_file = settings.model_config.get("env_file")
    if isinstance(env_file, str | os.PathLike):
        named[os.fspath(env_file)] = "the worker's settings file"
    for name, value in settings.model_dump().items():
        if name.endswith(_OWN_SUFFIXES) and isinstance(value, str) and value.startswith("/"):
            named[value] = f"the worker's {name} (ORCHESTRATOR_{name.upper()})"
    for path in settings.protected_paths:
        named[path] = "the worker's own (ORCHESTRATOR_PROTECTED_PATHS)"
    return _with_real(named)


def _with_real(entries: dict[str, str]) -> dict[str, str]:
    # A protected path reached through a link is the same file: list both spellings.
    out = dict(entries)
    for path, what in entries.items():
        out.setdefault(os.path.realpath(path), what)
    return out


def check_path(use: PathUse, settings: WorkerSettings) -> str:
    """'' when the box lets a release use this host path, else the reason (rule and path)."""
    own = own_paths(settings)
    deny = _with_real(DEFAULT_DENY)
    allow = settings.allowed_host_paths
    real = os.path.realpath(use.path)
    for candidate in dict.fromkeys((use.path, real)):
        verdict = judge(candidate, allow=allow, own=own, deny=deny)
        if not verdict.allowed:
            via = f" (a link to {real})" if real != os.path.normpath(use.path) else ""
            return f"{use.field}: {use.kind} {use.path}{via} refused: {verdict.rule}"
    return ""


def release_problems(release: Release, settings: WorkerSettings) -> list[str]:
    """Every host path of the release this box refuses, each with its rule."""
    uses = spec_paths(release.spec.apps, release.services, release.registries)
    return [p for p in (check_path(u, settings) for u in uses) if p]


def check_release(release: Release, settings: WorkerSettings) -> None:
    """Raise HostPathDenied (naming each path and rule) before anything is touched."""
    problems = release_problems(release, settings)
    if problems:
        log.warning("release %s refused: %s", release.id, "; ".join(problems))
        raise HostPathDenied(
            f"release {release.id} asks for host paths this box refuses: " + "; ".join(problems)
        )
