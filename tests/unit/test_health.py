"""wait_healthy against a scripted fake runtime and a fake clock: retries, start period, exits."""

from __future__ import annotations

import builtins
import contextlib
import http.server
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

import worker.health as health_mod
from orchestrator.errors import HealthCheckFailed, RuntimeFailure
from schemas.boxfile import ContainerSpec
from worker.facts import ContainerFact, PortBinding
from worker.health import wait_healthy

FACT = ContainerFact(
    id="c1",
    name="web-1.shop.api",
    image="shop:1",
    image_id="sha256:1",
    state="running",
    labels={},
    created="2026-01-01T00:00:00Z",
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


@dataclass
class FakeRuntime:
    """States change at given clock times; exec answers from a script and takes `exec_cost`."""

    clock: FakeClock
    # (at, state, exit_code, restart_count): the last entry with at <= now applies.
    timeline: list[tuple[float, str | None, int | None, int]] = field(
        default_factory=lambda: [(0.0, "running", None, 0)]
    )
    exec_codes: Callable[[int], int | Exception] = lambda n: 1
    exec_cost: float = 0.01
    exec_calls: list[float] = field(default_factory=list)

    def list(
        self, labels: dict[str, str] | None = None, names: builtins.list[str] | None = None
    ) -> builtins.list[ContainerFact]:
        assert names == [FACT.name]
        _at, state, code, restarts = [t for t in self.timeline if t[0] <= self.clock.now][-1]
        if state is None:
            return []
        return [replace(FACT, state=state, exit_code=code, restart_count=restarts)]

    def exec(self, container_id: str, argv: builtins.list[str], timeout: float) -> int:
        assert container_id == FACT.id and timeout > 0
        self.exec_calls.append(self.clock.now)
        self.clock.now += min(self.exec_cost, timeout)
        result = self.exec_codes(len(self.exec_calls))
        if isinstance(result, Exception):
            raise result
        return result


def spec(health: dict[str, Any] | None = None, **kwargs: Any) -> ContainerSpec:
    return ContainerSpec.model_validate({"health": health, **kwargs})


def check(
    rt: FakeRuntime,
    health: dict[str, Any] | None,
    *,
    settle: float = 0.5,
    budget: float = 30.0,
    ports: list[PortBinding] | None = None,
    **spec_kwargs: Any,
) -> float:
    """Run wait_healthy; return the fake seconds it took."""
    start = rt.clock.now
    try:
        wait_healthy(
            rt,
            FACT,
            spec(health, **spec_kwargs),
            host="127.0.0.1",
            ports=ports or [],
            settle=settle,
            deadline=start + budget,
            clock=rt.clock,
            sleep=rt.clock.sleep,
        )
    finally:
        assert rt.clock.now <= start + budget + 1e-9, "went past the deadline"
    return rt.clock.now - start


@pytest.fixture
def rt() -> FakeRuntime:
    return FakeRuntime(FakeClock())


def cmd(**kwargs: Any) -> dict[str, Any]:
    return {"command": ["check"], "interval": 0.5, "timeout": 1.0, **kwargs}


def test_passes_on_the_first_success(rt: FakeRuntime) -> None:
    rt.exec_codes = lambda n: 0 if n == 3 else 1
    took = check(rt, cmd(retries=5))
    assert len(rt.exec_calls) == 3
    # Attempts start `interval` apart, however long each one took.
    assert [round(t - rt.exec_calls[0], 3) for t in rt.exec_calls] == [0.0, 0.5, 1.0]
    assert took == pytest.approx(1.01)


def test_retries_counted_failures_then_fails_with_the_last_error(rt: FakeRuntime) -> None:
    rt.exec_codes = lambda n: n  # exit codes 1, 2, 3, ...
    with pytest.raises(HealthCheckFailed) as failed:
        check(rt, cmd(retries=3))
    assert len(rt.exec_calls) == 3
    message = str(failed.value)
    assert "command ['check'] failed 3 counted attempts (3 in all)" in message
    assert "last error: exit code 3" in message
    assert "after 1.0s" in message  # how long it tried


def test_failures_during_the_start_period_do_not_count(rt: FakeRuntime) -> None:
    with pytest.raises(HealthCheckFailed, match=r"2 counted attempts \(6 in all\)"):
        check(rt, cmd(retries=2, interval=0.25, start_period=1.0))


def test_success_after_the_start_period(rt: FakeRuntime) -> None:
    rt.exec_codes = lambda n: 0 if n == 6 else 1
    check(rt, cmd(retries=1, interval=0.25, start_period=1.2))
    assert len(rt.exec_calls) == 6


def test_runtime_errors_of_exec_are_failed_attempts(rt: FakeRuntime) -> None:
    rt.exec_codes = lambda n: RuntimeFailure("exec: still running after 1.0s") if n < 2 else 0
    check(rt, cmd(retries=2))
    assert len(rt.exec_calls) == 2


def test_an_exit_fails_at_once_with_its_code(rt: FakeRuntime) -> None:
    rt.timeline = [(0.0, "running", None, 0), (100.3, "exited", 3, 0)]
    with pytest.raises(HealthCheckFailed, match="container exited with code 3") as failed:
        check(rt, cmd(interval=5.0, retries=100))
    assert "last error: exit code 1" in str(failed.value)
    assert rt.clock.now - 100.0 <= 0.41  # noticed within one state poll, not at the next attempt


def test_a_restart_by_the_restart_policy_is_a_failure(rt: FakeRuntime) -> None:
    rt.timeline = [(0.0, "running", None, 0), (100.2, "restarting", 137, 1)]
    with pytest.raises(HealthCheckFailed, match="exited with code 137 and was restarted"):
        check(rt, cmd(retries=100), restart_on_failure=True)


def test_a_restart_seen_only_afterwards_is_a_failure_too(rt: FakeRuntime) -> None:
    # Running again: the engine has already reset the exit code, only the count rose.
    rt.timeline = [(0.0, "running", None, 0), (100.2, "running", None, 1)]
    with pytest.raises(HealthCheckFailed, match="container exited and was restarted"):
        check(rt, cmd(retries=100), restart_on_failure=True)


def test_a_container_already_gone_fails_before_any_attempt(rt: FakeRuntime) -> None:
    rt.timeline = [(0.0, None, None, 0)]
    with pytest.raises(HealthCheckFailed, match="no longer exists"):
        check(rt, cmd())
    assert rt.exec_calls == []


def test_never_past_the_deadline(rt: FakeRuntime) -> None:
    with pytest.raises(HealthCheckFailed, match="did not pass before the deadline"):
        check(rt, cmd(retries=1000, interval=0.3), budget=2.0)
    assert rt.clock.now == pytest.approx(102.0)


def test_exit_explains_a_final_failure_better_than_the_check(rt: FakeRuntime) -> None:
    rt.exec_codes = lambda n: RuntimeFailure("container is not running")
    rt.timeline = [(0.0, "running", None, 0), (100.005, "exited", 2, 0)]
    with pytest.raises(HealthCheckFailed, match="exited with code 2"):
        check(rt, cmd(retries=1))


SETTLE = [
    ("still running after settle", [(0.0, "running", None, 0)], None),
    ("exits while settling", [(0.0, "running", None, 0), (100.25, "exited", 1, 0)],
     "exited with code 1"),
    ("never started", [(0.0, "created", None, 0)], "container is created"),
    ("restarting", [(0.0, "running", None, 0), (100.1, "restarting", 1, 1)], "restarted"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "timeline", "error"), SETTLE, ids=[r[0] for r in SETTLE])
def test_without_a_check_the_container_must_keep_running(
    rt: FakeRuntime,
    what: str,
    timeline: list[tuple[float, str | None, int | None, int]],
    error: str | None,
) -> None:
    rt.timeline = timeline
    if error is None:
        assert check(rt, None, settle=0.5) == pytest.approx(0.5)
    else:
        with pytest.raises(HealthCheckFailed, match=error):
            check(rt, None, settle=0.5)
        assert rt.clock.now < 100.5


def test_settle_longer_than_the_deadline_fails_at_the_deadline(rt: FakeRuntime) -> None:
    with pytest.raises(HealthCheckFailed, match="deadline reached before the container ran 5.0s"):
        check(rt, None, settle=5.0, budget=1.0)


# Real sockets on 127.0.0.1 below: the probes themselves, still with the fake clock.


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        codes = {"/health": 200, "/moved": 302, "/sick": 503}
        self.send_response(codes.get(self.path, 404))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.mark.parametrize(("path", "ok"), [("/health", True), ("/moved", True), ("/sick", False)])
def test_http_status_decides(rt: FakeRuntime, http_port: int, path: str, ok: bool) -> None:
    ports = [PortBinding("", http_port, 8080, "tcp")]
    health = {"http": path, "interval": 0.1, "timeout": 1.0, "retries": 2}
    if ok:
        check(rt, health, ports=ports)
    else:
        with pytest.raises(HealthCheckFailed, match=r"http GET http://127.0.0.1:\d+/sick.*503"):
            check(rt, health, ports=ports)


def test_http_uses_the_published_port_of_health_port(rt: FakeRuntime, http_port: int) -> None:
    ports = [PortBinding("", 1, 9000, "tcp"), PortBinding("127.0.0.1", http_port, 8080, "tcp")]
    check(rt, {"http": "/health", "port": 8080, "retries": 1}, ports=ports)


def test_http_on_a_port_nothing_publishes_fails_at_once(rt: FakeRuntime) -> None:
    with pytest.raises(HealthCheckFailed, match="container port 8080 published"):
        check(rt, {"http": "/health", "port": 8080}, ports=[PortBinding("", 1, 9000, "tcp")])


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server


def test_tcp_passes_when_something_listens(rt: FakeRuntime, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    check(rt, {"tcp": 5432, "retries": 1}, ports=[PortBinding("127.0.0.1", port, 5432, "tcp")])


def test_tcp_fails_on_a_connection_closed_at_once(rt: FakeRuntime, listener: socket.socket) -> None:
    # What docker-proxy does when nothing listens in the container: accept, then close.
    def accept_and_close() -> None:  # every connection, the quick looks' too, until closed
        with contextlib.suppress(OSError):
            while True:
                conn, _addr = listener.accept()
                conn.close()

    closer = threading.Thread(target=accept_and_close, daemon=True)
    closer.start()
    port = listener.getsockname()[1]
    with pytest.raises(HealthCheckFailed, match="closed at once"):
        check(rt, {"tcp": 5432, "retries": 2}, ports=[PortBinding("", port, 5432, "tcp")])


def test_tcp_fails_when_refused(rt: FakeRuntime) -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]  # closed again below: nothing listens there
    with pytest.raises(HealthCheckFailed, match="ConnectionRefusedError"):
        check(rt, {"tcp": 5432, "retries": 1}, ports=[PortBinding("", port, 5432, "tcp")])


# Quick looks: after an attempt nothing answered, the next look comes QUICK_RETRY later,
# uncounted; counted attempts keep their interval. A scripted probe, the fake clock.


def scripted(monkeypatch: pytest.MonkeyPatch, rt: FakeRuntime,
             answers: list[str | None]) -> list[float]:
    """Each attempt answers the next of `answers` (the last one for ever); when each came."""
    calls: list[float] = []

    def attempt(timeout: float) -> str | None:
        calls.append(rt.clock.now)
        return answers[min(len(calls), len(answers)) - 1]

    monkeypatch.setattr(health_mod, "_probe",
                        lambda *_a, **_k: health_mod._Probe("scripted", attempt))
    return calls


HTTP = {"http": "/health", "interval": 1.0, "timeout": 1.0, "retries": 3}
REFUSED = health_mod.NoAnswer("ConnectionRefusedError: refused")


def test_a_server_listening_soon_after_an_unanswered_attempt_is_seen_at_once(
    rt: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = scripted(monkeypatch, rt, [REFUSED, REFUSED, None])
    took = check(rt, HTTP, ports=[PortBinding("", 1, 8080, "tcp")])
    assert took == pytest.approx(2 * health_mod.QUICK_RETRY)  # not a whole interval
    assert len(calls) == 3


def test_quick_looks_are_not_counted_attempts(
    rt: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = scripted(monkeypatch, rt, [REFUSED])
    with pytest.raises(HealthCheckFailed, match="failed 3 counted attempts"):
        check(rt, HTTP, ports=[PortBinding("", 1, 8080, "tcp")])
    assert rt.clock.now - 100.0 == pytest.approx(2.0)  # counted at 0, 1 and 2 s, as configured
    assert len(calls) > 3


def test_an_answered_failure_waits_its_interval(
    rt: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = scripted(monkeypatch, rt, ["HTTP 503 Service Unavailable", None])
    assert check(rt, HTTP, ports=[PortBinding("", 1, 8080, "tcp")]) == pytest.approx(1.0)
    assert len(calls) == 2  # no look in between: the app answered, and said no


def test_a_quick_look_the_app_answers_ends_the_quick_looks(
    rt: FakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = scripted(monkeypatch, rt, [REFUSED, "HTTP 503 Service Unavailable", None])
    assert check(rt, HTTP, ports=[PortBinding("", 1, 8080, "tcp")]) == pytest.approx(1.0)
    assert calls == pytest.approx([100.0, 100.0 + health_mod.QUICK_RETRY, 101.0])


def test_only_a_connection_nothing_answered_is_no_answer(http_port: int) -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        closed = s.getsockname()[1]  # closed again below: nothing listens there
    refused = health_mod._http("127.0.0.1", closed, "/health").attempt(1.0)
    sick = health_mod._http("127.0.0.1", http_port, "/sick").attempt(1.0)
    assert isinstance(refused, health_mod.NoAnswer)
    assert sick is not None and not isinstance(sick, health_mod.NoAnswer)
    assert isinstance(health_mod._tcp("127.0.0.1", closed).attempt(1.0), health_mod.NoAnswer)
