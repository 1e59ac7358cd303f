"""The worker's view of a box: container facts, run requests, the runtime Protocol, BoxEnv."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable

from schemas.contract import Label


class PortBinding(NamedTuple):
    """One published port. host_ip "" binds every address of the box."""

    host_ip: str
    host_port: int
    container_port: int
    protocol: str = "tcp"


class Bind(NamedTuple):
    """One bind mount: a host path or a volume name, the path in the container, rw or ro."""

    source: str
    target: str
    mode: str = "rw"


@dataclass(frozen=True)
class ContainerFact:
    """What the engine says about one container, read back from its labels and state."""

    id: str
    name: str
    image: str  # the reference the container was created from, as given to `run`
    image_id: str
    state: str  # "running", "exited", "created", "restarting", "paused", "dead", ...
    labels: dict[str, str] = field(hash=False)
    created: str  # ISO 8601, as the engine reports it
    exit_code: int | None = None  # the last exit code; None while it never exited
    restart_count: int = 0  # restarts by the restart policy: a rise means it crashed
    ports: tuple[PortBinding, ...] = ()  # as configured (HostConfig), running or not

    def _label(self, key: str) -> str | None:
        return self.labels.get(key)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def managed(self) -> bool:
        return self.labels.get(Label.MANAGED) == "1"

    @property
    def box(self) -> str | None:
        return self._label(Label.BOX)

    @property
    def box_type(self) -> str | None:
        return self._label(Label.BOX_TYPE)

    @property
    def app(self) -> str | None:
        return self._label(Label.APP)

    @property
    def container(self) -> str | None:
        return self._label(Label.CONTAINER)

    @property
    def spec_hash(self) -> str | None:
        return self._label(Label.SPEC_HASH)

    @property
    def release(self) -> str | None:
        return self._label(Label.RELEASE)

    @property
    def token(self) -> str | None:
        """The fencing token that made the container; None when absent."""
        return self._label(Label.TOKEN) or None

    @property
    def role(self) -> str | None:
        return self._label(Label.ROLE)

    @property
    def generation(self) -> str | None:
        return self._label(Label.GENERATION)


@dataclass(frozen=True)
class RunRequest:
    """Everything `run` needs to create and start one container; built by worker.runspec."""

    name: str
    image: str
    command: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict, hash=False)
    ports: list[PortBinding] = field(default_factory=list, hash=False)
    binds: list[Bind] = field(default_factory=list, hash=False)
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    hostname: str | None = None
    restart_on_failure: bool = False
    stop_timeout: int = 10
    # Binds whose source is under this directory forward logs: the caller creates them.
    log_root: str | None = None


@runtime_checkable
class ContainerRuntime(Protocol):
    """The engine operations a deploy needs. Errors are RuntimeFailure or ServiceUnavailable."""

    def list(
        self, labels: dict[str, str] | None = None, names: builtins.list[str] | None = None,
        *, brief: bool = False,
    ) -> builtins.list[ContainerFact]:
        """Containers in any state with all of `labels` and (if given) one of exact `names`.
        `brief`: from the engine's one listing, no inspect a container: `image` may be an id,
        `created` a Unix time, `exit_code` and `restart_count` unknown (None, 0), `ports` the
        published ones of running containers. Enough to tell who runs what where."""
        ...

    def pull(self, ref: str, auth: dict[str, str] | None = None) -> str:
        """Pull `ref` (tag or digest) and return the local image id."""
        ...

    def has_image(self, ref: str) -> bool: ...

    def run(self, req: RunRequest) -> ContainerFact:
        """Create and start; on a failed start nothing is left behind."""
        ...

    def stop(self, container_id: str, timeout: int) -> None: ...

    def start(self, container_id: str) -> None: ...

    def rename(self, container_id: str, new_name: str) -> None: ...

    def remove(self, container_id: str) -> None:
        """Remove even when running; a container that is already gone counts as removed."""
        ...

    def logs_tail(self, container_id: str, lines: int = 20) -> str:
        """The last lines of stdout+stderr; "" when the container is gone."""
        ...

    def exec(self, container_id: str, argv: builtins.list[str], timeout: float) -> int:
        """Run `argv` in the running container; its exit code. RuntimeFailure past timeout."""
        ...


@dataclass
class BoxEnv:
    """What a swap needs to know about this box, and its container runtime."""

    box_id: str
    box_type: str
    runtime: ContainerRuntime
    log_root: str
    bind_ip: str | None = None
    health_host: str = "127.0.0.1"
    hostname: str | None = None
    settle_time: float = 2.0
    ssm: Callable[[str], str] | None = None
    extra_labels: dict[str, str] = field(default_factory=dict)
    # ECR pull credentials: (account, region) -> {"username", "password"}, refreshed by expiry.
    ecr: Callable[[str, str], dict[str, str]] | None = None
    # Where the box keeps its own files (the record, the key of its secret hashes).
    state_dir: str | None = None
