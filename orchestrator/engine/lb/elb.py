"""Classic ELB adapter, and the boto3 error translation the AWS adapters share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.engine.aws import BotoClient, call
from orchestrator.engine.lb.base import DEFAULT_POLL_INTERVAL, MemberState, poll_state
from orchestrator.errors import LoadBalancerError


def aws_call(
    lb_name: str,
    action: str,
    fn: Callable[..., dict[str, Any]],
    *,
    done_codes: frozenset[str] = frozenset(),
    **kwargs: Any,
) -> dict[str, Any]:
    """Call boto3 for a load balancer; errors translated by the one AWS boundary."""
    return call(
        f"{lb_name}: {action}", fn, done_codes=done_codes, refused=LoadBalancerError, **kwargs
    )


class ClassicElbLB:
    """A classic ELB; a member is an EC2 instance id."""

    # Deregistering an instance that is not registered is what leave wants anyway.
    _NOT_REGISTERED = frozenset({"InvalidInstance", "InvalidEndPoint"})

    def __init__(
        self, client: BotoClient, name: str, *, poll_interval: float = DEFAULT_POLL_INTERVAL
    ) -> None:
        self.client = client
        self.load_balancer = name
        self.name = f"elb {name}"
        self._poll_interval = poll_interval

    def leave(self, member: str) -> None:
        aws_call(
            self.name,
            f"deregister {member}",
            self.client.deregister_instances_from_load_balancer,
            done_codes=self._NOT_REGISTERED,
            LoadBalancerName=self.load_balancer,
            Instances=[{"InstanceId": member}],
        )

    def wait_drained(self, member: str, timeout: float) -> None:
        # With connection draining, a deregistering instance stays InService ("deregistration
        # currently in progress") until its connections end, then it is no longer listed.
        poll_state(
            self.name,
            member,
            "drained",
            lambda: self.state(member),
            lambda s: not s.in_service,
            timeout,
            self._poll_interval,
        )

    def join(self, member: str) -> None:
        aws_call(
            self.name,
            f"register {member}",
            self.client.register_instances_with_load_balancer,
            LoadBalancerName=self.load_balancer,
            Instances=[{"InstanceId": member}],
        )

    def wait_in_service(self, member: str, timeout: float) -> None:
        poll_state(
            self.name,
            member,
            "in service",
            lambda: self.state(member),
            lambda s: s.in_service,
            timeout,
            self._poll_interval,
        )

    def members(self) -> list[MemberState]:
        reply = aws_call(
            self.name,
            "describe_instance_health",
            self.client.describe_instance_health,
            LoadBalancerName=self.load_balancer,
        )
        return [
            MemberState(
                str(e.get("InstanceId")),
                e.get("State") == "InService",
                str(e.get("State", "Unknown")),
            )
            for e in reply.get("InstanceStates", [])
        ]

    def state(self, member: str) -> MemberState:
        # Listing every registered instance, rather than asking about one, tells "not
        # registered" apart from "Unknown" the same way on AWS (an error) and moto (Unknown).
        reply = aws_call(
            self.name,
            "describe_instance_health",
            self.client.describe_instance_health,
            LoadBalancerName=self.load_balancer,
        )
        for entry in reply.get("InstanceStates", []):
            if entry.get("InstanceId") == member:
                state = str(entry.get("State", "Unknown"))
                description = entry.get("Description") or "N/A"
                raw = state if description == "N/A" else f"{state}: {description}"
                return MemberState(member, in_service=state == "InService", raw=raw)
        return MemberState(member, in_service=False, raw="not registered")
