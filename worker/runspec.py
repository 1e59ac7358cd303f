"""Pure translation of one container's spec into the RunRequest the runtime executes."""

from __future__ import annotations

from typing import Literal

from orchestrator.errors import ConfigError
from schemas.boxfile import ContainerSpec
from schemas.contract import Label
from schemas.onbox import PREVIOUS_SUFFIX, duplicate_mount, log_binds
from worker.facts import Bind, PortBinding, RunRequest

Role = Literal["app", "service"]

# A next version started ahead of its box's turn (start-first staging), taking no traffic.
STAGED_SUFFIX = ".staged"

__all__ = [
    "PREVIOUS_SUFFIX", "STAGED_SUFFIX", "build_run_request", "container_name", "log_dirs",
    "previous_name",
]



def container_name(box_id: str, app: str, container: str, role: Role = "app") -> str:
    """`<box>.<app>.<container>`; services share one namespace per box: `<box>.svc.<c>`."""
    return f"{box_id}.svc.{container}" if role == "service" else f"{box_id}.{app}.{container}"


def previous_name(name: str) -> str:
    """The name an old container gets while its replacement starts under `name`."""
    return f"{name}{PREVIOUS_SUFFIX}"


def _volume(item: str) -> Bind:
    source, target, *mode = item.split(":")
    return Bind(source, target, mode[0] if mode else "rw")


def _log_binds(app: str, container: str, logs: dict[str, list[str]], log_root: str) -> list[Bind]:
    try:
        pairs = log_binds(app, container, logs, log_root)
    except ValueError as exc:
        raise ConfigError(f"{app}.{container}: {exc}") from None
    return [Bind(source, target, "rw") for source, target in pairs]


def build_run_request(
    *,
    box_id: str,
    box_type: str,
    app: str,
    container: str,
    spec: ContainerSpec,
    image: str,
    env: dict[str, str],
    spec_hash: str,
    release: str,
    token: str,
    role: Role,
    log_root: str,
    bind_ip: str | None,
    hostname: str | None,
) -> RunRequest:
    """The RunRequest for one container; `env` is final (secrets already resolved)."""
    labels = {
        Label.MANAGED: "1",
        Label.BOX: box_id,
        Label.BOX_TYPE: box_type,
        Label.APP: app,
        Label.CONTAINER: container,
        Label.SPEC_HASH: spec_hash,
        Label.RELEASE: release,
        Label.TOKEN: token,
        Label.ROLE: role,
        Label.GENERATION: "current",
    }
    ports = [
        PortBinding(p.host_ip or bind_ip or "", p.host_port, p.container_port, p.protocol)
        for p in spec.ports
    ]
    binds = [_volume(v) for v in spec.volumes]
    binds += _log_binds(app, container, spec.logs, log_root)
    # The engine refuses a duplicate mount point only at create time, mid-swap; `validate`
    # runs the same rule (schemas/onbox.py) so a release never gets here with one.
    if (why := duplicate_mount((b.source, b.target) for b in binds)) is not None:
        raise ConfigError(f"{app}.{container}: {why}")
    return RunRequest(
        name=container_name(box_id, app, container, role),
        image=image,
        command=list(spec.command) if spec.command is not None else None,
        env=dict(env),
        ports=ports,
        binds=binds,
        labels=labels,
        hostname=hostname if spec.use_host_hostname else None,
        restart_on_failure=spec.restart_on_failure,
        stop_timeout=spec.stop_timeout,
        log_root=log_root,
    )


def log_dirs(req: RunRequest) -> list[str]:
    """Host directories of the request's log binds, which the caller creates before `run`."""
    if not req.log_root:
        return []
    root = req.log_root.rstrip("/") + "/"
    return [b.source for b in req.binds if b.source.startswith(root)]
