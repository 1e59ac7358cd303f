"""The container runtime the worker drives: ContainerRuntime on docker-py (see worker.facts)."""

from __future__ import annotations

import builtins
import contextlib
import re
import shutil
import time
from collections.abc import Iterator
from typing import Any

import docker
import docker.errors
import requests
from docker.utils import parse_repository_tag

from orchestrator.errors import RegistryAuthFailed, RuntimeFailure, ServiceUnavailable
from worker.facts import ContainerFact, PortBinding, RunRequest

# How the engine words a registry it could not reach (Go's net and TLS errors).
_UNREACHABLE = re.compile(
    r"dial tcp|connection refused|no such host|i/o timeout|TLS handshake timeout|"
    r"connection reset|Client\.Timeout exceeded|no route to host|network is unreachable"
)
# How registries (through the engine) word a refused login or a missing one.
_AUTH_REFUSED = re.compile(
    r"no basic auth credentials|unauthorized|authentication required|access denied|"
    r"denied: requested access|incorrect username or password",
    re.IGNORECASE,
)
# How long `remove` waits for a removal another caller started.
_REMOVAL_WAIT = 30.0
# Seconds between polls of a detached exec; health commands are short, so poll often.
_EXEC_POLL = 0.02


def refused_credentials(status: int | None, text: str) -> bool:
    """Did the registry refuse the pull's credentials (or their absence)?

    The engine says so by status (401, 403) or, answering 500 or inside the progress
    stream, only in the registry's words.
    """
    return status in (401, 403) or bool(_AUTH_REFUSED.search(text))


def _message(exc: BaseException) -> str:
    if isinstance(exc, docker.errors.APIError):
        return str(exc.explanation or exc)
    return str(exc) or type(exc).__name__


@contextlib.contextmanager
def _translated(action: str) -> Iterator[None]:
    """Engine refusals become RuntimeFailure; an engine that does not answer, ServiceUnavailable."""
    try:
        yield
    except docker.errors.APIError as exc:  # an HTTPError subclass: must come before requests'
        raise RuntimeFailure(f"{action}: {_message(exc)}") from exc
    except (requests.exceptions.RequestException, ConnectionError) as exc:
        raise ServiceUnavailable(f"{action}: Docker engine did not answer: {exc}") from exc
    except docker.errors.DockerException as exc:
        raise RuntimeFailure(f"{action}: {_message(exc)}") from exc


_SERVER = re.compile(r"Docker/([0-9][0-9A-Za-z.+~-]*) \([^()]*\)")


def engine_version(server: str | None) -> str | None:
    """The version in the engine's `Server` header (`Docker/20.10.24+dfsg1 (linux)`), or None
    when it is not the Docker engine's form (another engine's API, a proxy in between)."""
    found = _SERVER.fullmatch(server or "")
    return found.group(1) if found else None


def _fact(attrs: dict[str, Any]) -> ContainerFact:
    state = attrs.get("State") or {}
    status = str(state.get("Status", "unknown"))
    finished = str(state.get("FinishedAt", ""))
    ever_exited = status != "running" and not finished.startswith("0001-")
    config = attrs.get("Config") or {}
    return ContainerFact(
        id=str(attrs["Id"]),
        name=str(attrs.get("Name", "")).lstrip("/"),
        image=str(config.get("Image", "")),
        image_id=str(attrs.get("Image", "")),
        state=status,
        labels=dict(config.get("Labels") or {}),
        created=str(attrs.get("Created", "")),
        exit_code=int(state.get("ExitCode", 0)) if ever_exited else None,
        restart_count=int(attrs.get("RestartCount", 0)),
        ports=_ports(attrs),
    )


def _brief_fact(summary: dict[str, Any]) -> ContainerFact:
    """A container as the engine's listing shows it (ContainerRuntime.list's `brief`)."""
    names = summary.get("Names") or [""]
    # The listing names the any-address "0.0.0.0" and "::" (one entry each); ours is "".
    ports = tuple(dict.fromkeys(
        PortBinding("" if p.get("IP") in (None, "", "0.0.0.0", "::") else str(p["IP"]),
                    int(p["PublicPort"]), int(p["PrivatePort"]), str(p.get("Type") or "tcp"))
        for p in summary.get("Ports") or [] if p.get("PublicPort")))
    return ContainerFact(
        id=str(summary["Id"]),
        name=str(names[0]).lstrip("/"),
        image=str(summary.get("Image", "")),
        image_id=str(summary.get("ImageID", "")),
        state=str(summary.get("State", "unknown")),
        labels=dict(summary.get("Labels") or {}),
        created=str(summary.get("Created", "")),
        ports=ports,
    )


def _ports(attrs: dict[str, Any]) -> tuple[PortBinding, ...]:
    bindings = (attrs.get("HostConfig") or {}).get("PortBindings") or {}
    out = []
    for spec, hosts in bindings.items():
        port, _, proto = str(spec).partition("/")
        for h in hosts or []:
            if str(h.get("HostPort") or "").isdigit():
                out.append(
                    PortBinding(
                        str(h.get("HostIp") or ""), int(h["HostPort"]), int(port), proto or "tcp"
                    )
                )
    return tuple(out)


class DockerRuntime:
    """ContainerRuntime on the local engine through docker-py's low-level API."""

    def __init__(self, client: docker.DockerClient | None = None, timeout: float = 60) -> None:
        if client is None:
            try:
                client = docker.DockerClient.from_env(timeout=int(timeout))
            except docker.errors.DockerException as exc:
                raise ServiceUnavailable(f"Docker engine not reachable: {exc}") from exc
        self._client = client
        self._api = client.api
        if str(self._api.base_url).startswith("http+docker://"):
            # A local socket takes no proxy: without this, requests reads the environment's
            # proxy settings (and ~/.netrc) on every call, ~0.1 ms of each ~0.7 ms look.
            self._api.trust_env = False

    def list(
        self, labels: dict[str, str] | None = None, names: builtins.list[str] | None = None,
        *, brief: bool = False,
    ) -> builtins.list[ContainerFact]:
        filters: dict[str, Any] = {}
        if labels:
            filters["label"] = [f"{k}={v}" for k, v in labels.items()]
        if names is not None:
            if not names:
                return []
            # The engine's name filter is an unanchored regexp on "/name": anchor and escape it.
            filters["name"] = [f"^/{re.escape(n)}$" for n in names]
        with _translated("list containers"):
            summaries = self._api.containers(all=True, filters=filters)
        if brief:  # one call, not one more a container (the heartbeat lists the whole engine)
            facts = [_brief_fact(s) for s in summaries]
            return facts if names is None else [f for f in facts if f.name in names]
        facts = []
        for summary in summaries:
            # The summary shows an image id once the tag moved; inspect has the reference used.
            try:
                with _translated(f"inspect container {summary['Id'][:12]}"):
                    facts.append(_fact(self._api.inspect_container(summary["Id"])))
            except RuntimeFailure as exc:
                if not isinstance(exc.__cause__, docker.errors.NotFound):
                    raise  # NotFound: removed since the listing, so not there
        if names is not None:
            facts = [f for f in facts if f.name in names]
        return facts

    def pull(self, ref: str, auth: dict[str, str] | None = None) -> str:
        repository, tag = parse_repository_tag(ref)
        try:
            with _translated(f"pull {ref}"):
                stream = self._api.pull(
                    repository, tag=tag or "latest", auth_config=auth, stream=True, decode=True
                )
                for line in stream:
                    # The engine reports some failures only inside the progress stream.
                    if isinstance(line, dict) and line.get("error"):
                        raise RuntimeFailure(f"pull {ref}: {line['error']}")
                image_id = str(self._api.inspect_image(ref)["Id"])
        except RuntimeFailure as exc:
            # The engine answers 500 for a registry it cannot reach: that is the registry's
            # outage, worth a retry, not a refusal of this image.
            if _UNREACHABLE.search(str(exc)):
                raise ServiceUnavailable(f"registry not reachable: {exc}") from exc.__cause__ or exc
            cause = exc.__cause__
            status = cause.status_code if isinstance(cause, docker.errors.APIError) else None
            # The engine's words only: the reference itself may hold any of them.
            if refused_credentials(status, str(exc).removeprefix(f"pull {ref}: ")):
                raise RegistryAuthFailed(str(exc)) from cause or exc
            raise
        return image_id

    def has_image(self, ref: str) -> bool:
        try:
            with _translated(f"inspect image {ref}"):
                self._api.inspect_image(ref)
        except RuntimeFailure as exc:
            if isinstance(exc.__cause__, docker.errors.NotFound):
                return False
            raise
        return True

    def run(self, req: RunRequest) -> ContainerFact:
        port_bindings: dict[str, builtins.list[tuple[str, int]]] = {}
        for p in req.ports:
            port_bindings.setdefault(f"{p.container_port}/{p.protocol}", []).append(
                (p.host_ip, p.host_port)
            )
        host_config = self._api.create_host_config(
            port_bindings=port_bindings,
            binds=[f"{b.source}:{b.target}:{b.mode}" for b in req.binds],
            # busybox-like PID 1s ignore SIGTERM: without an init every stop waits stop_timeout.
            init=True,
            restart_policy={"Name": "on-failure"} if req.restart_on_failure else None,
        )
        exposed = [(int(k.split("/")[0]), k.split("/")[1]) for k in port_bindings]
        with _translated(f"create container {req.name} from {req.image}"):
            created = self._api.create_container(
                req.image,
                command=req.command,
                name=req.name,
                environment=req.env,
                labels=req.labels,
                hostname=req.hostname,
                ports=exposed,
                host_config=host_config,
                stop_timeout=req.stop_timeout,
                detach=True,
            )
        container_id = str(created["Id"])
        try:
            with _translated(f"start container {req.name}"):
                self._api.start(container_id)
        except (RuntimeFailure, ServiceUnavailable):
            # A created-but-unstarted container would hold the name and confuse the next run.
            with contextlib.suppress(RuntimeFailure, ServiceUnavailable):
                self.remove(container_id)
            raise
        with _translated(f"inspect container {req.name}"):
            return _fact(self._api.inspect_container(container_id))

    def stop(self, container_id: str, timeout: int) -> None:
        with _translated(f"stop container {container_id[:12]}"):
            self._api.stop(container_id, timeout=timeout)

    def start(self, container_id: str) -> None:
        with _translated(f"start container {container_id[:12]}"):
            self._api.start(container_id)

    def rename(self, container_id: str, new_name: str) -> None:
        with _translated(f"rename container {container_id[:12]} to {new_name}"):
            self._api.rename(container_id, new_name)

    def remove(self, container_id: str) -> None:
        try:
            with _translated(f"remove container {container_id[:12]}"):
                self._api.remove_container(container_id, force=True, v=True)
        except RuntimeFailure as exc:
            if isinstance(exc.__cause__, docker.errors.NotFound):
                return
            if "already in progress" not in str(exc):
                raise
            # Someone else removes it: done once it is gone, since callers reuse name and port.
            self._wait_gone(container_id, exc)

    def _wait_gone(self, container_id: str, why: RuntimeFailure) -> None:
        deadline = time.monotonic() + _REMOVAL_WAIT
        while time.monotonic() < deadline:
            try:
                with _translated(f"inspect container {container_id[:12]}"):
                    self._api.inspect_container(container_id)
            except RuntimeFailure as exc:
                if isinstance(exc.__cause__, docker.errors.NotFound):
                    return
                raise
            time.sleep(_EXEC_POLL)
        raise RuntimeFailure(f"{why} (still there after {_REMOVAL_WAIT:.0f}s)") from why

    def logs_tail(self, container_id: str, lines: int = 20) -> str:
        try:
            with _translated(f"logs of container {container_id[:12]}"):
                raw = self._api.logs(container_id, stdout=True, stderr=True, tail=lines)
        except RuntimeFailure as exc:
            if isinstance(exc.__cause__, docker.errors.NotFound):
                return ""  # only ever used to explain a failure: don't add a second one
            raise
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)

    def exec(self, container_id: str, argv: builtins.list[str], timeout: float) -> int:
        what = f"exec {argv!r} in container {container_id[:12]}"
        deadline = time.monotonic() + timeout
        with _translated(what):
            exec_id = self._api.exec_create(container_id, argv, stdout=False, stderr=False)["Id"]
            # Detached, so the timeout is ours; a blocking exec_start has none.
            self._api.exec_start(exec_id, detach=True)
            while True:
                info = self._api.exec_inspect(exec_id)
                if not info.get("Running") and info.get("ExitCode") is not None:
                    return int(info["ExitCode"])
                if time.monotonic() >= deadline:
                    # The engine has no API to end an exec; it runs on inside the container.
                    raise RuntimeFailure(f"{what}: still running after {timeout:.1f}s")
                time.sleep(_EXEC_POLL)

    def version(self) -> str:
        """The engine's version, from a ping's `Server` header when it has one: GET /version
        makes the engine run `runc` and `docker-init` to ask theirs (~4.5 ms of CPU against
        ~0.1 ms), and the heartbeat asks at every beat."""
        with _translated("engine ping"):
            answer = self._api.get(f"{self._api.base_url}/_ping", timeout=self._api.timeout)
        if answer.status_code == 200 and (found := engine_version(answer.headers.get("Server"))):
            return found
        with _translated("engine version"):
            return str(self._api.version()["Version"])

    def disk_free(self, path: str | None = None) -> int:
        """Free bytes on the file system of `path` (default: the engine's data root)."""
        if path is None:
            with _translated("engine info"):
                path = str(self._api.info()["DockerRootDir"])
        return shutil.disk_usage(path).free
