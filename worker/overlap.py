"""Preflight for start-first: both versions run at once, so the other port set must be free and
the box's memory must hold a second copy of what each app uses now."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

from schemas.release import Release
from schemas.strategy import color_map, is_start_first
from worker.decide import is_previous
from worker.facts import BoxEnv
from worker.stage import running_ports
from worker.swap import app_containers

# Room left beside both versions, for the engine, the worker and the page cache.
MEMORY_MARGIN = 64 << 20
_CGROUP_FILES = (
    "/sys/fs/cgroup/system.slice/docker-{id}.scope/memory.current",  # cgroup v2, systemd
    "/sys/fs/cgroup/docker/{id}/memory.current",  # cgroup v2, cgroupfs driver
    "/sys/fs/cgroup/memory/docker/{id}/memory.usage_in_bytes",  # cgroup v1
)


def port_in_use(host: str, port: int) -> bool:
    """Whether something on the box already listens on `host:port` (all addresses: '')."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def memory_used(container_id: str) -> int:
    """What the container uses now, from its cgroup; 0 when the box does not say."""
    for template in _CGROUP_FILES:
        try:
            return int(Path(template.format(id=container_id)).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return 0


def memory_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def memory_problem(needed: int, available: int | None) -> str:
    """'' when `available` holds `needed` more bytes and the margin; else why not. Pure."""
    if available is None or needed + MEMORY_MARGIN <= available:
        return ""
    return (f"start-first runs both versions at once: the new one needs about {needed >> 20} "
            f"MiB (what the old one uses) and {available >> 20} MiB is available (margin "
            f"{MEMORY_MARGIN >> 20} MiB); free memory, or use stop-first")


def overlap_problems(env: BoxEnv, release: Release, apps: list[str]) -> list[str]:
    """Each start-first app's next port set free on the box, and memory for both versions."""
    problems: list[str] = []
    needed = 0
    for app in apps:
        spec = release.spec.apps[app]
        if not is_start_first(spec):
            continue
        serving = [f for f in app_containers(env, release, app)
                   if f.state == "running" and not is_previous(f)]
        if not serving:
            continue  # nothing to overlap with: the plain swap
        now = running_ports(serving)
        for port in sorted(set(color_map(spec, now).values()) - now):
            if port_in_use(env.bind_ip or "", port):
                problems.append(f"{app}: host port {port}, where its next version starts, is "
                                "in use on the box; free it or change alternate_ports")
        needed += sum(memory_used(f.id) for f in serving)
    if needed and (why := memory_problem(needed, memory_available())):
        problems.append(why)
    return problems
