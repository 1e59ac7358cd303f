"""Which host paths a release may mount or read: one rule for the box and for validate. Pure."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from schemas.base import SecretRef
from schemas.boxfile import AppSpec, ContainerSpec
from schemas.fleet import RegistryAuth

# Denied unless the allow-list opens a path at or below one; "/" means the host's root itself.
DEFAULT_DENY: dict[str, str] = {
    "/": "the host's root",
    "/etc": "the host's configuration",
    "/root": "root's home",
    "/boot": "the kernel and boot loader",
    "/proc": "the kernel's process view",
    "/sys": "the kernel's devices and settings",
    "/dev": "the host's devices",
    "/var/run/docker.sock": "the Docker socket (root on the host)",
    "/run/docker.sock": "the Docker socket (root on the host)",
}
ALLOW_SETTING = "ORCHESTRATOR_ALLOWED_HOST_PATHS"


def norm(path: str) -> str:
    """An absolute path without '.', '..', doubled or trailing slashes (no link resolved)."""
    out = posixpath.normpath(path)
    # POSIX keeps a leading '//' as is; it names the same root.
    return "/" + out.lstrip("/")


def under(path: str, base: str) -> bool:
    """`path` is `base` or inside it (both normalised)."""
    return base == "/" or path == base or path.startswith(base + "/")


@dataclass(frozen=True)
class Verdict:
    """One path's answer: allowed or not, and the rule that decided ('' when none matched)."""

    path: str
    allowed: bool
    rule: str = ""

    def __str__(self) -> str:
        if self.allowed:
            return f"host path {self.path} is allowed" + (f" ({self.rule})" if self.rule else "")
        return f"host path {self.path} is refused: {self.rule}"


def _meets(path: str, entry: str) -> bool:
    # A path meets an entry at or inside it, or by containing it (a mount of /run reaches
    # /run/docker.sock); the host's root is met only by itself.
    if entry == "/":
        return path == "/"
    return under(path, entry) or under(entry, path)


def judge(
    path: str,
    *,
    allow: Iterable[str] = (),
    own: Mapping[str, str] | None = None,
    deny: Mapping[str, str] = DEFAULT_DENY,
) -> Verdict:
    """May a release use host path `path`? `own` (the worker's own files, path -> what) is
    never opened; a deny is opened by an allow at or below it that holds the path."""
    path = norm(path)
    allows = [norm(a) for a in allow]
    # (rank, -specificity, rule): a rule the path is at or under names it before one it
    # merely contains; the worker's own before the defaults; the most specific first.
    hits: list[tuple[int, int, str]] = []
    for entry, what in ((norm(e), w) for e, w in (own or {}).items()):
        if _meets(path, entry):
            rule = f"{entry} is {what}, never open to a release"
            hits.append((0 if under(path, entry) else 2, -len(entry), rule))
    for entry, what in ((norm(e), w) for e, w in deny.items()):
        if not _meets(path, entry):
            continue
        inside = under(path, entry)
        # An allow wins only where it is as specific as the deny and holds the path.
        if inside and any(under(path, a) and under(a, entry) for a in allows):
            continue
        how = "is" if path == entry else ("is under" if inside else "contains")
        rule = f"it {how} {entry} ({what}), denied by default; {ALLOW_SETTING} on the box "
        hits.append((1 if inside else 3, -len(entry), rule + "opens a path"))
    if hits:
        return Verdict(path, False, min(hits)[2])
    opened = [a for a in allows if under(path, a)]
    return Verdict(path, True, f"allowed by {max(opened, key=len)}" if opened else "")


@dataclass(frozen=True)
class PathUse:
    """One host path a spec uses, with its field path (for messages) and how."""

    field: str
    path: str
    kind: str  # "volume" or "file secret"


def secret_file(ref: SecretRef) -> str | None:
    """The host file a `file:` reference reads, without its '#KEY'; None for other schemes."""
    if not ref.secret.startswith("file:"):
        return None
    return ref.secret.removeprefix("file:").partition("#")[0]


def container_paths(spec: ContainerSpec, prefix: str) -> list[PathUse]:
    """Host paths of one container: bind-mount sources and `file:` secrets in its env."""
    out = []
    for i, item in enumerate(spec.volumes):
        source = item.split(":", 1)[0]
        if source.startswith("/"):  # else a named volume: Docker's own storage
            out.append(PathUse(f"{prefix}.volumes[{i}]", source, "volume"))
    for key, value in spec.env.items():
        if isinstance(value, SecretRef) and (path := secret_file(value)) is not None:
            out.append(PathUse(f"{prefix}.env.{key}", path, "file secret"))
    return out


def spec_paths(
    apps: Mapping[str, AppSpec],
    services: Mapping[str, ContainerSpec] | None = None,
    registries: Iterable[RegistryAuth] = (),
) -> list[PathUse]:
    """Every host path of apps, services and registry credentials, with field paths as the
    files spell them (apps in box.yml; services and registries in fleet.yml)."""
    out: list[PathUse] = []
    for app, spec in apps.items():
        for name, cspec in spec.containers.items():
            out += container_paths(cspec, f"apps.{app}.containers.{name}")
    for name, sspec in (services or {}).items():
        out += container_paths(sspec, f"services.{name}")
    for i, reg in enumerate(registries):
        if (path := secret_file(reg.password)) is not None:
            out.append(PathUse(f"registries[{i}].password", path, "file secret"))
    return out


def default_warnings(
    box_file: str,
    apps: Mapping[str, AppSpec],
    fleet_file: str | None = None,
    services: Mapping[str, ContainerSpec] | None = None,
    registries: Iterable[RegistryAuth] = (),
) -> list[str]:
    """`validate`'s warnings: paths the boxes' default limits refuse, as file: field: why.
    Links are resolved only on the box; an allow-list there may open a path."""
    out = []
    for use in spec_paths(apps):
        if not (verdict := judge(use.path)).allowed:
            out.append(f"{box_file}: {use.field}: {use.kind} {verdict}")
    for use in spec_paths({}, services, registries):
        if not (verdict := judge(use.path)).allowed:
            out.append(f"{fleet_file or 'fleet.yml'}: {use.field}: {use.kind} {verdict}")
    return out
