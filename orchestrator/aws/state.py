"""What a box type should be in AWS, what it is, and the actions between the two. Pure."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

# Values known only once an earlier action ran; the applier substitutes them.
NEW_SECURITY_GROUP = "<new security group>"
NEW_TEMPLATE = "<new launch template>"
NEW_TEMPLATE_VERSION = "<new template version>"


def policy_arn_placeholder(policy: str) -> str:
    return f"<arn of {policy}>"


def resource_name(box_type: str) -> str:
    """The security group, launch template and auto scaling group of a box type."""
    return f"orchestrator-{box_type}"


def template_hash(data: dict[str, Any]) -> str:
    blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def template_description(data: dict[str, Any]) -> str:
    """A version's description carries its content hash: unchanged content, no new version."""
    return f"orchestrator sha256:{template_hash(data)[:16]}"


@dataclass(frozen=True, order=True)
class Rule:
    """One ingress permission: protocol, port range, and a CIDR or security group id."""

    protocol: str
    from_port: int
    to_port: int
    source: str

    def __str__(self) -> str:
        if self.protocol == "-1":
            what = "all traffic"
        elif self.from_port == self.to_port:
            what = f"{self.protocol} {self.from_port}"
        else:
            what = f"{self.protocol} {self.from_port}-{self.to_port}"
        return f"{what} from {self.source}"

    def permission(self) -> dict[str, Any]:
        """The IpPermissions entry that grants exactly this rule."""
        out: dict[str, Any] = {"IpProtocol": self.protocol}
        if self.protocol != "-1":
            out.update(FromPort=self.from_port, ToPort=self.to_port)
        if self.source.startswith("sg-") or self.source == NEW_SECURITY_GROUP:
            out["UserIdGroupPairs"] = [{"GroupId": self.source}]
        elif ":" in self.source:
            out["Ipv6Ranges"] = [{"CidrIpv6": self.source}]
        else:
            out["IpRanges"] = [{"CidrIp": self.source}]
        return out


def rules_of(permissions: list[dict[str, Any]]) -> frozenset[Rule]:
    """Rules from describe_security_groups' IpPermissions (one rule per source)."""
    out: set[Rule] = set()
    for p in permissions:
        proto = str(p.get("IpProtocol", "-1"))
        low, high = int(p.get("FromPort", -1)), int(p.get("ToPort", -1))
        sources = [r["CidrIp"] for r in p.get("IpRanges", [])]
        sources += [r["CidrIpv6"] for r in p.get("Ipv6Ranges", [])]
        sources += [g["GroupId"] for g in p.get("UserIdGroupPairs", [])]
        sources += [f"prefix list {x['PrefixListId']}" for x in p.get("PrefixListIds", [])]
        out.update(Rule(proto, low, high, s) for s in sources)
    return frozenset(out)


@dataclass(frozen=True)
class PolicySpec:
    """A scaling policy: put_scaling_policy's arguments, less the group and the name."""

    params: dict[str, Any]
    summary: str


@dataclass(frozen=True)
class AlarmSpec:
    """A CloudWatch alarm that runs a step policy: put_metric_alarm's arguments, less actions."""

    policy: str
    params: dict[str, Any]
    summary: str


@dataclass(frozen=True)
class Desired:
    """The box type as box.yml and its provision section say it should be."""

    box_type: str
    name: str
    rules: frozenset[Rule]
    template: dict[str, Any]  # LaunchTemplateData without SecurityGroupIds
    extra_groups: tuple[str, ...]
    min_size: int
    max_size: int
    desired_capacity: int
    subnets: tuple[str, ...]
    policies: dict[str, PolicySpec] = field(default_factory=dict)
    alarms: dict[str, AlarmSpec] = field(default_factory=dict)
    closed_ports: tuple[int, ...] = ()


@dataclass(frozen=True)
class SecurityGroupFacts:
    id: str
    rules: frozenset[Rule]
    vpc_id: str = ""


@dataclass(frozen=True)
class TemplateFacts:
    id: str
    latest_version: int
    description: str
    data: dict[str, Any]


@dataclass(frozen=True)
class GroupFacts:
    min_size: int
    max_size: int
    desired_capacity: int
    subnets: tuple[str, ...]
    template_id: str | None
    template_version: str | None
    tags: dict[str, str]
    load_balancers: tuple[str, ...] = ()
    instances: int = 0


@dataclass(frozen=True)
class Facts:
    """What AWS says exists now; policies and alarms are describe_* entries by name."""

    vpc_id: str
    security_group: SecurityGroupFacts | None = None
    template: TemplateFacts | None = None
    group: GroupFacts | None = None
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    alarms: dict[str, dict[str, Any]] = field(default_factory=dict)


Verb = Literal["create", "change", "delete"]
_SYMBOL = {"create": "+", "change": "~", "delete": "-"}


@dataclass(frozen=True)
class Action:
    """One AWS change: what the plan shows, and the adapter call that makes it."""

    verb: Verb
    kind: str
    name: str
    detail: str
    call: str
    params: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{_SYMBOL[self.verb]} {self.kind} {self.name}" + (
            f": {self.detail}" if self.detail else ""
        )


@dataclass(frozen=True)
class Plan:
    """Actions in the order they must run, and notes a person should read."""

    actions: list[Action]
    notes: list[str] = field(default_factory=list)
