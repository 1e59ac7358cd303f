"""Moving a member to another port while it stays in service (start-first): HAProxy's runtime
API against a real HAProxy, and an ELBv2 target group against a real moto server."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from typing import Any

from devstack.haproxy import HAProxy
from orchestrator.engine.lb import HAProxyLB, TargetGroupLB
from orchestrator.engine.lb.base import MovableLB
from tests.harness.aws_fx import AwsAccount
from tests.harness.common import free_port, wait_for
from tests.harness.haproxy_fx import HttpBackends
from tests.integration.test_lb_aws import Network, network, target_group_arn
from tests.integration.test_lb_haproxy import slow_request

__all__ = ["network", "target_group_arn"]


def body(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 (a loopback test URL)
        return str(reply.read().decode())


def servers_state(proxy: HAProxy, server: str) -> dict[str, str]:
    lines = proxy.command(f"show servers state {proxy.backend}").splitlines()
    header = next(line for line in lines if line.startswith("# "))[2:].split()
    rows = [dict(zip(header, line.split(), strict=False)) for line in lines
            if line and not line.startswith("#") and " " in line]
    return next(r for r in rows if r["srv_name"] == server)


def test_haproxy_move_keeps_the_request_in_flight_and_the_check_on_the_new_port(
    http_backends: HttpBackends, haproxy_factory: Callable[..., HAProxy],
) -> None:
    old = http_backends.start("127.0.0.1", free_port(), "v1")
    new = http_backends.start("127.0.0.1", free_port(), "v2")
    proxy = haproxy_factory([("box1", old.host, old.port)])
    lb = HAProxyLB(proxy.socket_path, proxy.backend)
    assert isinstance(lb, MovableLB)
    # A check port configured apart from the server's (as `check port N` would): it must move.
    proxy.command(f"set server {proxy.backend}/box1 check-port {old.port}")
    assert lb.member_port("box1") == old.port and lb.check_port("box1") == old.port
    results: list[tuple[int, str]] = []
    thread = slow_request(proxy.url, 1.0, results)
    wait_for(lambda: lb.sessions_at("box1", f"127.0.0.1:{old.port}") == 1, "slow request on v1")

    lb.move("box1", new.port, check_port=new.port)
    assert lb.member_port("box1") == new.port and lb.check_port("box1") == new.port
    assert body(proxy.url) == "v2"  # new requests go to the new port at once
    # `scur` counts the old port's session too; only `show sess` tells them apart.
    assert lb.sessions_at("box1", f"127.0.0.1:{old.port}") == 1
    lb.wait_moved("box1", old.port, timeout=10)
    thread.join(timeout=5)
    assert results == [(200, "v1")]  # the request in flight finished where it started
    old.stop()
    # The check probes the new port: the server stays UP with the old backend gone.
    for _ in range(3):
        assert body(proxy.url) == "v2"
    state = servers_state(proxy, "box1")
    assert (state["srv_op_state"], state["srv_admin_state"]) == ("2", "0")
    assert not [c for c in proxy.state_changes() if "DOWN" in c.text or "DRAIN" in c.text
                or "maintenance" in c.text]


def test_elbv2_move_registers_the_new_port_before_it_deregisters_the_old(
    aws: AwsAccount, network: Network, target_group_arn: str,
) -> None:
    """What moto can prove: the calls and their order (the new port registered and reported
    healthy before the old one is deregistered), and where the target ends. What it can't:
    moto marks a target healthy at once (no health check against the new port), drops a
    deregistered target at once (no deregistration delay, no in-flight requests) and keeps
    one registration per instance (registering the new port replaces the old; deregistering
    the old drops the instance)."""
    client = aws.client("elbv2")
    box = network.instance_ids[0]
    lb = TargetGroupLB(client, "web-tg")
    client.register_targets(TargetGroupArn=target_group_arn, Targets=[{"Id": box, "Port": 18080}])
    assert isinstance(lb, MovableLB)
    assert lb.member_port(box) == 18080 and lb.check_port(box) is None

    calls: list[tuple[str, Any]] = []
    for name in ("register_targets", "deregister_targets", "describe_target_health"):
        real = getattr(client, name)

        def observed(*, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            reply = _real(**kwargs)  # the real call to moto; only what was asked is noted
            seen = kwargs.get("Targets") or [
                (d["Target"]["Port"], d["TargetHealth"]["State"])
                for d in reply["TargetHealthDescriptions"]]
            calls.append((_name, seen))
            return reply

        setattr(client, name, observed)
    lb.move(box, 18081)
    lb.wait_moved(box, 18080, timeout=5)
    asked = [(n, t) for n, t in calls if n != "describe_target_health"]
    assert asked == [("register_targets", [{"Id": box, "Port": 18081}]),
                     ("deregister_targets", [{"Id": box, "Port": 18080}])]
    first_healthy = next(i for i, (n, t) in enumerate(calls)
                         if n == "describe_target_health" and (18081, "healthy") in t)
    assert first_healthy < calls.index(asked[1])  # healthy on the new port, then deregistered
    # Where the target ends can't be shown here: moto's deregistration of (box, 18080) drops
    # the instance's one registration, the new port's included; AWS drops that port only.
