"""Prove a freshly started container healthy (http, tcp or command check) within a deadline."""

from __future__ import annotations

import builtins
import http.client
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from orchestrator.errors import HealthCheckFailed, OrchestratorError
from schemas.boxfile import ContainerSpec, HealthCheck
from worker.facts import ContainerFact

# How often the container's state is polled between attempts: an exit shows within this.
STATE_POLL = 0.1
# After an attempt nothing answered (refused, or docker-proxy's accept-then-close: nothing
# listens in the container yet), the next look comes this soon, uncounted: no request reached
# the app. A counted attempt still comes every `interval`. (A swap waited up to a whole
# interval for a server that was listening 10 ms after the first look.)
QUICK_RETRY = 0.02
# docker-proxy accepts on a published port even when nothing listens in the container, then
# closes the connection at once; a TCP check waits this long for that close.
TCP_CLOSE_WAIT = 0.2
_ALL_ADDRESSES = ("", "0.0.0.0", "::")

Port = tuple[str, int, int, str]  # (host_ip, host_port, container_port, protocol): PortBinding


class HealthRuntime(Protocol):
    """The part of ContainerRuntime a health check uses; any ContainerRuntime is one."""

    def list(
        self, labels: dict[str, str] | None = None, names: builtins.list[str] | None = None
    ) -> builtins.list[ContainerFact]: ...

    def exec(self, container_id: str, argv: builtins.list[str], timeout: float) -> int: ...


class NoAnswer(str):
    """A failed attempt that nothing answered: no request reached the app."""


@dataclass(frozen=True)
class _Probe:
    describe: str  # e.g. "http GET http://127.0.0.1:8080/health"
    attempt: Callable[[float], str | None]  # timeout -> None when healthy, else the error


def _published(ports: Sequence[Port], container_port: int | None, host: str) -> tuple[str, int]:
    chosen = [p for p in ports if container_port is None or p[2] == container_port]
    chosen.sort(key=lambda p: p[3] != "tcp")  # a check speaks TCP: prefer a tcp binding
    if not chosen:
        which = f"container port {container_port}" if container_port else "any port"
        raise HealthCheckFailed(
            f"the health check needs {which} published on the box, and it is not "
            f"(published: {', '.join(f'{p[1]}->{p[2]}/{p[3]}' for p in ports) or 'none'})"
        )
    host_ip, host_port = chosen[0][0], chosen[0][1]
    return (host if host_ip in _ALL_ADDRESSES else host_ip), host_port


def _http(host: str, port: int, path: str) -> _Probe:
    def attempt(timeout: float) -> str | None:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            response = conn.getresponse()
            response.read(65536)
        except (OSError, http.client.HTTPException) as exc:
            text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            # Refused, reset or closed before a status line (RemoteDisconnected): no answer.
            return NoAnswer(text) if isinstance(exc, ConnectionError) else text
        finally:
            conn.close()
        if 200 <= response.status < 400:
            return None
        return f"HTTP {response.status} {response.reason}"

    return _Probe(f"http GET http://{host}:{port}{path}", attempt)


def _tcp(host: str, port: int) -> _Probe:
    def attempt(timeout: float) -> str | None:
        try:
            with socket.create_connection((host, port), timeout=timeout) as sock:
                sock.settimeout(min(TCP_CLOSE_WAIT, timeout))
                try:
                    data = sock.recv(1)
                except TimeoutError:
                    return None  # open and quiet: something listens
        except OSError as exc:
            text = f"{type(exc).__name__}: {exc}"
            return NoAnswer(text) if isinstance(exc, ConnectionError) else text
        if data:
            return None
        return NoAnswer("connection closed at once: nothing listens behind the published port")

    return _Probe(f"tcp connect {host}:{port}", attempt)


def _command(runtime: HealthRuntime, fact: ContainerFact, argv: list[str]) -> _Probe:
    def attempt(timeout: float) -> str | None:
        try:
            code = runtime.exec(fact.id, argv, timeout)
        except OrchestratorError as exc:
            return str(exc)
        return None if code == 0 else f"exit code {code}"

    return _Probe(f"command {argv!r}", attempt)


def _probe(
    runtime: HealthRuntime, fact: ContainerFact, hc: HealthCheck, host: str, ports: Sequence[Port]
) -> _Probe:
    if hc.http is not None:
        return _http(*_published(ports, hc.port, host), hc.http)
    if hc.tcp is not None:
        return _tcp(*_published(ports, hc.tcp, host))
    assert hc.command is not None  # HealthCheck validates exactly one kind
    return _command(runtime, fact, hc.command)


def _not_running(runtime: HealthRuntime, fact: ContainerFact) -> str | None:
    """Why the container is no longer the healthy candidate it was, or None."""
    now = next((f for f in runtime.list(names=[fact.name]) if f.id == fact.id), None)
    if now is None:
        return "container no longer exists"
    if now.restart_count > fact.restart_count:
        # The engine resets the exit code once the restart policy started it again.
        code = f" with code {now.exit_code}" if now.exit_code is not None else ""
        return f"container exited{code} and was restarted by its restart policy"
    if now.state == "running":
        return None
    if now.state == "exited":
        return f"container exited with code {now.exit_code}"
    code = f" (last exit code {now.exit_code})" if now.exit_code is not None else ""
    return f"container is {now.state}{code}"


@dataclass(frozen=True)
class _Watch:
    """The wait between attempts: it fails as soon as the container stops running."""

    runtime: HealthRuntime
    fact: ContainerFact
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    fail: Callable[[str, str | None], HealthCheckFailed]

    def until(
        self, until: float, last: str | None, again: Callable[[], str | None] | None = None
    ) -> bool:
        """Sleep until `until`, raising as soon as the container stops running. With `again`
        (nothing answered the last attempt), look again every QUICK_RETRY meanwhile; True
        once a look passed."""
        polled = -STATE_POLL
        while True:
            if again is None or self.clock() - polled >= STATE_POLL:
                reason = _not_running(self.runtime, self.fact)
                if reason:
                    raise self.fail(reason, last)
                polled = self.clock()
            left = until - self.clock()
            if left <= 0:
                return False
            self.sleep(min(QUICK_RETRY if again else STATE_POLL, left))
            if again is not None:
                got = again()
                if got is None:
                    return True
                if not isinstance(got, NoAnswer):
                    again = None  # something answered, and said no: a counted attempt decides


def wait_healthy(
    runtime: HealthRuntime,
    fact: ContainerFact,
    spec: ContainerSpec,
    *,
    host: str,
    ports: Sequence[Port],
    settle: float,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once `fact`'s container passed its check; HealthCheckFailed says why it did not.

    Without a check the container must still run `settle` seconds after the call. `deadline`
    is an absolute `clock()` value; `host` is used for ports published on every address.
    """
    start = clock()

    def fail(what: str, last: str | None = None) -> HealthCheckFailed:
        tail = f"; last error: {last}" if last else ""
        return HealthCheckFailed(f"{fact.name}: {what} after {clock() - start:.1f}s{tail}")

    watch_until = _Watch(runtime, fact, clock, sleep, fail).until
    hc = spec.health
    if hc is None:
        watch_until(min(start + settle, deadline), None)
        if clock() < start + settle:
            raise fail(f"deadline reached before the container ran {settle:.1f}s")
        return

    probe = _probe(runtime, fact, hc, host, ports)

    def look() -> str | None:
        return probe.attempt(max(min(hc.timeout, deadline - clock()), 0.001))

    counted = attempts = 0
    last: str | None = None
    watch_until(start, None)  # fail at once for a container that is already gone
    while True:
        began = clock()
        if began >= deadline:
            raise fail(
                f"{probe.describe} did not pass before the deadline ({attempts} attempts)", last
            )
        last = probe.attempt(min(hc.timeout, deadline - began))
        attempts += 1
        if last is None:
            return
        if began - start >= hc.start_period:  # Docker's rule: the start period forgives
            counted += 1
        if counted >= hc.retries:
            watch_until(clock(), last)  # an exit explains the failures better than they do
            raise fail(
                f"{probe.describe} failed {counted} counted attempts ({attempts} in all)", last
            )
        if watch_until(min(began + hc.interval, deadline), last,
                       look if isinstance(last, NoAnswer) else None):
            return


def check_once(
    fact: ContainerFact, spec: ContainerSpec, *, host: str, ports: Sequence[Port], timeout: float
) -> str | None:
    """One look, for the heartbeat: None when an HTTP or TCP check passes (or the container
    has none), else what failed. Command checks are left to deploys: an exec every beat would
    cost the box more than the answer is worth."""
    hc = spec.health
    if hc is None or hc.command is not None:
        return None
    try:
        probe = _probe(_NO_EXEC, fact, hc, host, ports)
    except HealthCheckFailed as exc:
        return str(exc)
    failed = probe.attempt(min(hc.timeout, timeout))
    return f"{probe.describe}: {failed}" if failed else None


class _NoExec:
    def list(
        self, labels: dict[str, str] | None = None, names: builtins.list[str] | None = None
    ) -> builtins.list[ContainerFact]:
        return []

    def exec(self, container_id: str, argv: builtins.list[str], timeout: float) -> int:
        raise AssertionError("check_once runs no command")


_NO_EXEC = _NoExec()
