"""What a box refuses, as pure rules: `validate` and the worker's own code call the same ones."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping

from schemas.refs import ENV_NAME_RE

# The name an old container gets while its replacement starts (worker/runspec.py).
PREVIOUS_SUFFIX = ".prev"
# Services share one namespace per box: `<box>.svc.<service>` (worker/services.py).
SERVICE_NAMESPACE = "svc"

# HAProxy's CLI splits commands on ';' and words on blanks: a name outside this set could
# inject a command.
HAPROXY_NAME_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,127}\Z")
# Classic ELB and ELBv2 target group names: 1-32 letters, digits and '-', no '-' at an end.
AWS_LB_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?\Z")
TARGET_GROUP_ARN_RE = re.compile(
    r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:[0-9]{12}:"
    r"targetgroup/[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?/[0-9a-f]{16}\Z"
)
# http.client refuses a path with blanks or control characters (and can't send non-ASCII).
HTTP_PATH_RE = re.compile(r"^/[\x21-\x7e]*\Z")
# Linux refuses one `KEY=value` string over 128 KiB at exec (MAX_ARG_STRLEN), and all of
# them over ARG_MAX: the container would not start. Stay well below both.
ENV_VALUE_MAX = 32 * 1024
ENV_TOTAL_MAX = 256 * 1024


def lb_name_problem(kind: str, name: str) -> str | None:
    """Why the load balancer of `kind` can't take `name`, or None."""
    if kind == "haproxy":
        if not HAPROXY_NAME_RE.match(name):
            return (
                f"HAProxy backend {name!r} must be 1-127 letters, digits and _.:@- "
                "(HAProxy's CLI would split on anything else)"
            )
        return None
    if kind == "elb" and not AWS_LB_NAME_RE.match(name):
        return (
            f"classic ELB name {name!r} must be 1-32 letters, digits and '-', "
            "not starting or ending with '-'"
        )
    if kind == "elbv2" and not (AWS_LB_NAME_RE.match(name) or TARGET_GROUP_ARN_RE.match(name)):
        return (
            f"target group {name!r} must be a name of 1-32 letters, digits and '-' "
            "(not starting or ending with '-') or a target group ARN"
        )
    if kind == "none" and not HAPROXY_NAME_RE.match(name):
        return f"elb {name!r} must be letters, digits and _.:@- (or remove it)"
    return None


def log_binds(
    app: str, container: str, logs: Mapping[str, list[str]], log_root: str
) -> list[tuple[str, str]]:
    """(host directory, container path) per log path; ValueError when two share a directory."""
    binds = []
    for log_name, paths in logs.items():
        # A bare list on a ContainerSpec outside an AppSpec is still unnamed: name it so.
        base = posixpath.join(log_root, app, log_name or container)
        if len(paths) == 1:
            binds.append((base, paths[0]))
            continue
        seen: dict[str, str] = {}
        for path in paths:
            leaf = posixpath.basename(path.rstrip("/"))
            if not leaf or leaf in seen:
                raise ValueError(
                    f"logs {log_name or container!r}: paths {seen.get(leaf, path)!r} and "
                    f"{path!r} would share the host directory {posixpath.join(base, leaf)!r}; "
                    "give them different last path parts or separate log names"
                )
            seen[leaf] = path
            binds.append((posixpath.join(base, leaf), path))
    return binds


def volume_binds(volumes: Iterable[str]) -> list[tuple[str, str]]:
    return [(item.split(":")[0], item.split(":")[1]) for item in volumes]


def duplicate_mount(binds: Iterable[tuple[str, str]]) -> str | None:
    """Why two binds share a container path (the engine refuses it at create time), or None."""
    targets: dict[str, str] = {}
    for source, target in binds:
        key = posixpath.normpath(target)
        if key in targets:
            return (
                f"{key!r} is mounted twice (from {targets[key]!r} and {source!r}); "
                "mount each path once"
            )
        targets[key] = source
    return None


def name_problem(app: str, container: str) -> str | None:
    """Why `<app>.<container>` can't be one of our Docker names, or None."""
    if f"{app}.{container}".endswith(PREVIOUS_SUFFIX):
        return (
            f"container name {container!r} ends like a previous version's "
            f"(`{PREVIOUS_SUFFIX}`): the box would take it for one; rename it"
        )
    return None


def env_problem(env: Mapping[str, object]) -> str | None:
    """Why this environment can't be passed to a process, or None."""
    total = 0
    for key, value in env.items():
        if not isinstance(value, str):
            continue  # a secret reference: resolved (and checked) on the box
        size = len(key.encode()) + len(value.encode()) + 2
        if "\x00" in value:
            return f"env {key}: a value can't hold a NUL character"
        if len(value.encode()) > ENV_VALUE_MAX:
            return (
                f"env {key}: the value has {len(value.encode())} bytes, over "
                f"{ENV_VALUE_MAX // 1024} KiB; put it in a file (a volume) or a secret reference"
            )
        total += size
    if total > ENV_TOTAL_MAX:
        return (
            f"env: {total} bytes in all, over {ENV_TOTAL_MAX // 1024} KiB; move large values "
            "to files"
        )
    return None


def env_of_lines(lines: Iterable[str]) -> dict[str, str]:
    """The seed's `envs: ['KEY=value', ...]` as a mapping; ValueError naming the line's index
    (never the line: it may hold a password)."""
    env: dict[str, str] = {}
    for i, line in enumerate(lines):
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"envs[{i}] has no '=': it must be 'KEY=value'")
        if not ENV_NAME_RE.match(key):
            raise ValueError(
                f"envs[{i}]: name {key!r} must be letters, digits and '_' ('KEY=value')"
            )
        env[key] = value
    if problem := env_problem(env):
        raise ValueError(problem)
    return env
