"""HAProxyLB against a real HAProxy in front of simulated boxes, under live traffic."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from devstack.haproxy import HAProxy
from devstack.traffic import TrafficLoop, TrafficStats
from orchestrator.engine.lb import HAProxyLB, make_load_balancer
from orchestrator.engine.lb.base import LoadBalancer
from orchestrator.errors import ConfigError, LoadBalancerError, ServiceUnavailable
from tests.harness.common import wait_for
from tests.harness.haproxy_fx import HttpBackend, HttpBackends

Fleet = tuple[HAProxy, HAProxyLB, dict[str, HttpBackend]]

# Enough traffic that a box taken out without draining is hit many times during its gap.
THREADS = 4
RATE_PER_THREAD = 60.0


@pytest.fixture
def fleet(
    http_backends: HttpBackends, haproxy_factory: Callable[..., HAProxy]
) -> Fleet:
    boxes = {f"box{i + 1}": box for i, box in enumerate(http_backends.boxes(3, "v1"))}
    proxy = haproxy_factory([(name, box.host, box.port) for name, box in boxes.items()])
    return proxy, HAProxyLB(proxy.socket_path, proxy.backend), boxes


def admin_state(proxy: HAProxy, server: str) -> int:
    """srv_admin_state read with the harness's own client, not the adapter under test."""
    for line in proxy.command(f"show servers state {proxy.backend}").splitlines():
        fields = line.split()
        if len(fields) > 6 and fields[3] == server:
            return int(fields[6])
    raise AssertionError(f"{server} not in show servers state")


def swap(box: HttpBackend, body: str) -> None:
    box.stop()
    box.start(body)
    wait_for(lambda: box.answers() == body, f"{box.url} to answer {body}")


def naive_swap(proxy: HAProxy, traffic: TrafficLoop, name: str, box: HttpBackend) -> None:
    box.stop()
    # The gap: nothing listens on the box while traffic goes on.
    traffic.wait_total(traffic.stats.total + 20)
    box.start("v2")
    wait_for(lambda: box.answers() == "v2", f"{name} to answer v2")
    wait_for(lambda: proxy.server_checks()[name] == "L7OK", f"HAProxy to check {name} UP")


def only_v2_after(proxy: HAProxy) -> Counter[str]:
    with TrafficLoop(proxy.url, threads=2, rate_per_thread=100, max_requests=60) as after:
        after.wait_total(60)
    assert after.stats.failed == 0, after.stats.summary()
    return after.stats.bodies


def test_drained_rolling_swap_loses_no_request(fleet: Fleet) -> None:
    proxy, lb, boxes = fleet
    assert isinstance(lb, LoadBalancer)
    with TrafficLoop(proxy.url, THREADS, RATE_PER_THREAD, max_seconds=90) as traffic:
        traffic.wait_total(50)
        for name, box in boxes.items():
            lb.leave(name)
            lb.wait_drained(name, timeout=10)
            assert admin_state(proxy, name) == 1  # MAINT: no traffic and no health checks
            swap(box, "v2")
            lb.join(name)
            lb.wait_in_service(name, timeout=10)
            traffic.wait_total(traffic.stats.total + 100)
    stats: TrafficStats = traffic.stats
    print(f"drained swap: {stats.summary()}")
    assert stats.failed == 0, stats.summary()
    assert stats.bodies["v1"] > 0 and stats.bodies["v2"] > 0, stats.summary()
    assert only_v2_after(proxy) == Counter({"v2": 60})


def test_naive_swap_without_draining_fails_requests(fleet: Fleet) -> None:
    # The same fleet and traffic as above, without the LB steps: the test above can fail.
    proxy, _, boxes = fleet
    with TrafficLoop(proxy.url, THREADS, RATE_PER_THREAD, max_seconds=90) as traffic:
        traffic.wait_total(50)
        for name, box in boxes.items():
            naive_swap(proxy, traffic, name, box)
            traffic.wait_total(traffic.stats.total + 100)
    stats = traffic.stats
    print(f"naive swap: {stats.summary()}")
    assert stats.failed > 0, stats.summary()
    assert only_v2_after(proxy) == Counter({"v2": 60})


def test_state_follows_drain_maint_ready(fleet: Fleet) -> None:
    proxy, lb, _ = fleet
    up = lb.state("box1")
    assert up.in_service and up.raw.startswith("UP") and up.sessions == 0, up

    lb.leave("box1")
    draining = lb.state("box1")
    assert not draining.in_service and "admin=DRAIN" in draining.raw, draining
    assert admin_state(proxy, "box1") == 8

    lb.wait_drained("box1", timeout=5)
    maint = lb.state("box1")
    assert not maint.in_service and maint.raw.startswith("MAINT"), maint
    assert admin_state(proxy, "box1") == 1

    lb.leave("box1")  # again: a server already in maint stays there (no return to drain)
    assert admin_state(proxy, "box1") == 1

    lb.join("box1")
    lb.wait_in_service("box1", timeout=5)
    assert lb.state("box1").in_service and admin_state(proxy, "box1") == 0
    lb.join("box1")  # again: no error
    assert lb.state("box1").in_service


def slow_request(url: str, seconds: float, results: list[tuple[int, str]]) -> threading.Thread:
    host, port = url.split("//")[1].rstrip("/").split(":")

    def run() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=seconds + 5)
        try:
            conn.request("GET", f"/slow?seconds={seconds}")
            response = conn.getresponse()
            results.append((response.status, response.read().decode()))
        finally:
            conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def one_session_on_box1(proxy: HAProxy, lb: HAProxyLB, seconds: float,
                        results: list[tuple[int, str]]) -> threading.Thread:
    # Only box1 takes traffic, so the slow request is certainly in flight on it.
    for other in ("box2", "box3"):
        proxy.command(f"set server {proxy.backend}/{other} state maint")
    thread = slow_request(proxy.url, seconds, results)
    wait_for(lambda: lb.state("box1").sessions == 1, "the slow request to reach box1")
    return thread


def test_wait_drained_waits_for_the_request_in_flight(fleet: Fleet) -> None:
    proxy, lb, _ = fleet
    results: list[tuple[int, str]] = []
    thread = one_session_on_box1(proxy, lb, 1.0, results)
    started = time.monotonic()
    lb.leave("box1")
    lb.wait_drained("box1", timeout=10)
    waited = time.monotonic() - started
    thread.join(timeout=5)
    print(f"drain waited {waited:.2f}s for a 1.0s request")
    assert waited > 0.5
    assert results == [(200, "v1")]  # the request in flight finished, it was not cut
    assert admin_state(proxy, "box1") == 1


def test_wait_drained_deadline_names_lb_and_member(fleet: Fleet) -> None:
    proxy, lb, _ = fleet
    results: list[tuple[int, str]] = []
    thread = one_session_on_box1(proxy, lb, 2.0, results)
    lb.leave("box1")
    with pytest.raises(LoadBalancerError, match=r"haproxy backend web: box1 not drained"):
        lb.wait_drained("box1", timeout=0.5)
    assert admin_state(proxy, "box1") == 8  # still draining: never forced into maint
    thread.join(timeout=10)
    assert results == [(200, "v1")]


def test_wait_drained_without_leave_is_an_error(fleet: Fleet) -> None:
    _, lb, _ = fleet
    with pytest.raises(LoadBalancerError, match="box2 is not draining"):
        lb.wait_drained("box2", timeout=2)


def test_unknown_server_or_backend_raises_with_haproxy_message(fleet: Fleet) -> None:
    proxy, lb, _ = fleet
    with pytest.raises(LoadBalancerError, match=r"haproxy backend web: no server 'box9'"):
        lb.leave("box9")
    with pytest.raises(LoadBalancerError, match=r"set box9 ready refused: No such server"):
        lb.join("box9")
    other = HAProxyLB(proxy.socket_path, "api")
    with pytest.raises(LoadBalancerError, match=r"haproxy backend api: .*Can't find backend"):
        other.state("box1")
    with pytest.raises(LoadBalancerError, match=r"No such backend"):
        other.join("box1")


def test_server_override_and_factory(fleet: Fleet) -> None:
    proxy, _, _ = fleet
    pinned = HAProxyLB(proxy.socket_path, proxy.backend, server="box3")
    pinned.leave("i-0abc")  # the box id; HAProxy knows this box as box3
    assert admin_state(proxy, "box3") == 8
    built = make_load_balancer("haproxy", proxy.backend, haproxy_socket=proxy.socket_path)
    assert isinstance(built, HAProxyLB) and built.name == "haproxy backend web"
    assert not built.state("box3").in_service


def test_missing_socket_is_service_unavailable(tmp_path: Path) -> None:
    lb = HAProxyLB(f"{tmp_path}/no.sock", "web")
    with pytest.raises(ServiceUnavailable, match="haproxy backend web: runtime API"):
        lb.state("box1")


def test_names_that_could_inject_cli_commands_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="haproxy backend name 'web; disable"):
        HAProxyLB(f"{tmp_path}/admin.sock", "web; disable server web/box2")
    lb = HAProxyLB(f"{tmp_path}/admin.sock", "web")
    with pytest.raises(LoadBalancerError, match="server name 'box1;shutdown sessions'"):
        lb.leave("box1;shutdown sessions")
