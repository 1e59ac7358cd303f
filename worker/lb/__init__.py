"""Load balancer adapters (classic ELB, ELBv2, HAProxy, none) and the factory that picks one."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from orchestrator.errors import ConfigError
from worker.lb.base import LoadBalancer, MemberState
from worker.lb.elb import ClassicElbLB
from worker.lb.elbv2 import TargetGroupLB
from worker.lb.haproxy import HAProxyLB
from worker.lb.noop import NoopLB

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

# Client settings, not session settings: accepted in boto_session_kwargs so one dict from the
# settings reaches both (a test's moto endpoint_url is the common case).
_CLIENT_KEYS = frozenset({"endpoint_url", "config", "verify", "use_ssl"})


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


def _boto_client(service: str, kwargs: dict[str, Any] | None) -> Any:
    session_kwargs = {k: v for k, v in (kwargs or {}).items() if k not in _CLIENT_KEYS}
    client_kwargs = {k: v for k, v in (kwargs or {}).items() if k in _CLIENT_KEYS}
    # Bounded calls: a hung AWS endpoint must fail a step before its deadline, not hold it.
    client_kwargs.setdefault(
        "config",
        Config(connect_timeout=5, read_timeout=15, retries={"max_attempts": 4, "mode": "standard"}),
    )
    return boto3.session.Session(**session_kwargs).client(service, **client_kwargs)
