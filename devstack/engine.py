"""The Docker engine: connect (starting dockerd if asked), and remove labelled leftovers."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import docker
import docker.errors

from devstack.process import ServiceError, find_binary

PID_FILE = Path("/var/run/docker.pid")
DOCKERD_LOG = Path("/tmp/dockerd.log")


def _dockerd_runs() -> bool:
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if comm.read_text().strip() == "dockerd":
                return True
    return False


def start_dockerd(timeout: float = 60.0) -> None:
    """Start the engine (apt does not: no systemd) and wait until it answers. An engine killed
    earlier leaves its pid file, and a new one refuses to start: removed when none runs."""
    if not _dockerd_runs():
        PID_FILE.unlink(missing_ok=True)
    with DOCKERD_LOG.open("ab") as log:  # the engine outlives us: its own session
        subprocess.Popen([find_binary("dockerd", "apt-get install docker.io")],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                         start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(docker.errors.DockerException):
            client = docker.from_env()
            with contextlib.closing(client):
                if client.ping():
                    return
        time.sleep(0.2)
    raise ServiceError(f"dockerd did not answer within {timeout:.0f}s; see {DOCKERD_LOG}")


def connect(start: bool = False, timeout: float = 120.0) -> Any:
    """A client of the local engine that answered ping; with `start`, dockerd is started
    when nothing answers. docker-py negotiates the API version (1.41 on Debian 12)."""
    for attempt in (1, 2):
        try:
            client = docker.from_env(timeout=timeout)
        except docker.errors.DockerException as exc:
            error: Exception = exc
        else:
            try:
                if client.ping():
                    return client
                error = ServiceError("no answer to ping")
            except docker.errors.DockerException as exc:
                error = exc
            client.close()
        if not start or attempt == 2:
            break
        start_dockerd()
    raise ServiceError(f"the Docker engine does not answer ({error}); "
                       "scripts/setup.sh starts dockerd")


def owner_labels(label: str) -> dict[str, str]:
    """`label`=1 and which process made it: clean-up removes its own and dead runs' only, so
    that two runs on one engine do not remove each other's containers."""
    return {label: "1", f"{label}.owner-pid": str(os.getpid())}


def _pid_alive(pid: str) -> bool:
    if not pid.isdigit():
        return False  # no owner recorded: nobody else can be relying on it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_containers(client: docker.DockerClient, label_filter: str,
                      keep: Callable[[Mapping[str, str]], bool] | None = None) -> int:
    """Remove (force) the containers matching a label filter ("k" or "k=v") unless keep(labels);
    how many. sparse: no inspect per container, which races with other runs' clean-ups."""
    removed = 0
    for c in client.containers.list(all=True, sparse=True, filters={"label": label_filter}):
        if keep is not None and keep(c.attrs.get("Labels") or {}):
            continue
        try:
            c.remove(force=True)
            removed += 1
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # another run is removing the same leftover now
                raise
    return removed


def remove_owned(client: docker.DockerClient, label: str, only_orphans: bool) -> int:
    """This process's containers labelled by owner_labels(label) (unless only_orphans), and
    those of processes that are gone."""
    me = str(os.getpid())

    def keep(labels: Mapping[str, str]) -> bool:
        owner = labels.get(f"{label}.owner-pid", "")
        return (owner == me and only_orphans) or (owner != me and _pid_alive(owner))

    return remove_containers(client, label, keep)


def forget_registry(client: docker.DockerClient, label: str, host: str) -> None:
    """Untag the references to registry HOST of images labelled `label` (their other tags
    stay): once that registry is gone, they point nowhere."""
    for image in client.images.list(filters={"label": label}):
        refs = (image.attrs.get("RepoTags") or []) + (image.attrs.get("RepoDigests") or [])
        forget(client, *(ref for ref in refs if ref.startswith(f"{host}/")))


def forget(client: docker.DockerClient, *refs: str) -> None:
    """Untag these references; once none is left the engine deletes the image (unless a
    container uses it), so that the next pull really downloads its layers."""
    for ref in refs:
        with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
            client.images.remove(ref)
