"""Load balancer adapters (classic ELB, ELBv2, HAProxy, none) and the factory that picks one."""

from __future__ import annotations

from typing import Any

from orchestrator.engine.aws import BotoClient, aws_client, shared_client
from orchestrator.engine.lb.base import LoadBalancer, MemberState
from orchestrator.engine.lb.elb import ClassicElbLB
from orchestrator.engine.lb.elbv2 import TargetGroupLB
from orchestrator.engine.lb.haproxy import HAProxyLB
from orchestrator.engine.lb.noop import NoopLB
from orchestrator.errors import ConfigError

__all__ = [
    "ClassicElbLB",
    "HAProxyLB",
    "LoadBalancer",
    "MemberState",
    "NoopLB",
    "TargetGroupLB",
    "make_load_balancer",
]

LB_KINDS = ("elb", "elbv2", "haproxy", "none")


def make_load_balancer(
    kind: str,
    name: str,
    *,
    member_port: int | None = None,
    haproxy_socket: str | None = None,
    boto_session_kwargs: dict[str, Any] | None = None,
) -> LoadBalancer:
    """The adapter for an app's `elb:` entry: `name` is the ELB, target group or backend."""
    if kind == "none":
        return NoopLB(name)
    if kind == "haproxy":
        if not haproxy_socket:
            raise ConfigError(
                f"load balancer {name!r} of kind haproxy needs the path of HAProxy's "
                "runtime API socket (haproxy_socket)"
            )
        return HAProxyLB(haproxy_socket, name)
    if kind == "elb":
        return ClassicElbLB(_boto_client("elb", boto_session_kwargs), name)
    if kind == "elbv2":
        return TargetGroupLB(_boto_client("elbv2", boto_session_kwargs), name, port=member_port)
    raise ConfigError(
        f"unknown load balancer kind {kind!r} for {name!r}: use one of {', '.join(LB_KINDS)}"
    )


def _boto_client(service: str, kwargs: dict[str, Any] | None) -> BotoClient:
    # One dict from the settings: region, endpoint (a test's moto), credentials, client options.
    rest = dict(kwargs or {})
    region = rest.pop("region_name", None)
    if set(rest) <= {"endpoint_url"}:  # a worker's settings: its one client per service
        return shared_client(service, region, rest.get("endpoint_url"))
    return aws_client(service, region, **rest)
