"""ELBv2 adapter: one target group of an ALB or NLB, by name or ARN."""

from __future__ import annotations

from typing import Any

from orchestrator.engine.aws import BotoClient
from orchestrator.engine.lb.base import DEFAULT_POLL_INTERVAL, MemberState, poll_state
from orchestrator.engine.lb.elb import aws_call
from orchestrator.errors import LoadBalancerError

NOT_REGISTERED = "not registered"
# `unused`: not registered, or the group serves no load balancer; either way no traffic.
_NO_TRAFFIC = frozenset({NOT_REGISTERED, "unused"})


def _drained(state: MemberState) -> bool:
    # raw is "<AWS state>" or "<AWS state>: <reason>", built by _describe below.
    return state.raw.partition(":")[0] in _NO_TRAFFIC


class TargetGroupLB:
    """A target group; a member is a target id (instance id or IP), optionally on `port`."""

    def __init__(
        self,
        client: BotoClient,
        target_group: str,
        port: int | None = None,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        self.client = client
        self.target_group = target_group
        self.port = port
        self.name = f"elbv2 target group {target_group}"
        self._poll_interval = poll_interval
        self._arn: str | None = None

    @property
    def target_group_arn(self) -> str:
        """The group's ARN, looked up once (by name unless it is an ARN already)."""
        if self._arn is None:
            if self.target_group.startswith("arn:"):
                query: dict[str, Any] = {"TargetGroupArns": [self.target_group]}
            else:
                query = {"Names": [self.target_group]}
            reply = aws_call(
                self.name, "describe_target_groups", self.client.describe_target_groups, **query
            )
            groups = reply.get("TargetGroups", [])
            if len(groups) != 1:
                raise LoadBalancerError(
                    f"{self.name}: expected one target group, got {len(groups)}"
                )
            self._arn = str(groups[0]["TargetGroupArn"])
        return self._arn

    def leave(self, member: str) -> None:
        aws_call(
            self.name,
            f"deregister {member}",
            self.client.deregister_targets,
            done_codes=frozenset({"InvalidTarget"}),
            TargetGroupArn=self.target_group_arn,
            Targets=[self._target(member)],
        )

    def wait_drained(self, member: str, timeout: float) -> None:
        # On AWS a deregistered target is `draining` for the deregistration delay, then gone.
        poll_state(
            self.name,
            member,
            "drained",
            lambda: self._describe(member),
            _drained,
            timeout,
            self._poll_interval,
        )

    def join(self, member: str) -> None:
        aws_call(
            self.name,
            f"register {member}",
            self.client.register_targets,
            TargetGroupArn=self.target_group_arn,
            Targets=[self._target(member)],
        )

    def wait_in_service(self, member: str, timeout: float) -> None:
        poll_state(
            self.name,
            member,
            "in service",
            lambda: self._describe(member),
            lambda s: s.in_service,
            timeout,
            self._poll_interval,
        )

    def state(self, member: str) -> MemberState:
        return self._describe(member)

    def members(self) -> list[MemberState]:
        reply = aws_call(
            self.name,
            "describe_target_health",
            self.client.describe_target_health,
            TargetGroupArn=self.target_group_arn,
        )
        out = []
        for entry in reply.get("TargetHealthDescriptions", []):
            target = entry.get("Target", {})
            if self.port is not None and target.get("Port") != self.port:
                continue
            state = str(entry.get("TargetHealth", {}).get("State", "unknown"))
            port = target.get("Port")
            out.append(MemberState(str(target.get("Id")), state == "healthy", state, port=port))
        return out

    def member_port(self, member: str) -> int | None:
        """The port of `member`'s registration that gets traffic (healthy first), if any."""
        ports = self._ports(member)
        return next((p for p, st in ports if st == "healthy"),
                    next((p for p, st in ports if st not in ("draining", "unused")), None))

    def check_port(self, member: str) -> int | None:
        return None  # the group's health check follows each target's own port

    def move(self, member: str, port: int, check_port: int | None = None,
             timeout: float = 300.0) -> None:
        """Register `member` on `port`, wait until the group says it is healthy, then
        deregister its other ports: each drains for the group's deregistration delay."""
        arn = self.target_group_arn
        old = [p for p, _ in self._ports(member) if p != port]
        aws_call(self.name, f"register {member}:{port}", self.client.register_targets,
                 TargetGroupArn=arn, Targets=[{"Id": member, "Port": port}])
        poll_state(self.name, f"{member}:{port}", "healthy",
                   lambda: self._on_port(member, port), lambda s: s.in_service, timeout,
                   self._poll_interval)
        if old:
            aws_call(self.name, f"deregister {member}:{old}", self.client.deregister_targets,
                     done_codes=frozenset({"InvalidTarget"}), TargetGroupArn=arn,
                     Targets=[{"Id": member, "Port": p} for p in old])

    def wait_moved(self, member: str, old_port: int, timeout: float) -> None:
        """Block until `member`'s registration on `old_port` has drained (is gone)."""
        poll_state(self.name, f"{member}:{old_port}", "drained",
                   lambda: self._on_port(member, old_port), _drained, timeout,
                   self._poll_interval)

    def _ports(self, member: str) -> list[tuple[int, str]]:
        reply = aws_call(self.name, "describe_target_health", self.client.describe_target_health,
                         TargetGroupArn=self.target_group_arn)
        return [(int(e["Target"]["Port"]), str(e.get("TargetHealth", {}).get("State", "")))
                for e in reply.get("TargetHealthDescriptions", [])
                if e.get("Target", {}).get("Id") == member and e["Target"].get("Port")]

    def _on_port(self, member: str, port: int) -> MemberState:
        state = dict(self._ports(member)).get(port, NOT_REGISTERED)
        return MemberState(member, in_service=state == "healthy", raw=state, port=port)

    def _target(self, member: str) -> dict[str, Any]:
        target: dict[str, Any] = {"Id": member}
        if self.port is not None:
            target["Port"] = self.port
        return target

    def _describe(self, member: str) -> MemberState:
        # Listing the whole group avoids asking about an unregistered target, which AWS
        # answers with `unused` and moto with the wrong port.
        reply = aws_call(
            self.name,
            "describe_target_health",
            self.client.describe_target_health,
            TargetGroupArn=self.target_group_arn,
        )
        for entry in reply.get("TargetHealthDescriptions", []):
            target = entry.get("Target", {})
            if target.get("Id") != member:
                continue
            if self.port is not None and target.get("Port") != self.port:
                continue
            health = entry.get("TargetHealth", {})
            state = str(health.get("State", "unknown"))
            reason = health.get("Reason")
            raw = f"{state}: {reason}" if reason else state
            return MemberState(member, in_service=state == "healthy", raw=raw)
        return MemberState(member, in_service=False, raw=NOT_REGISTERED)
