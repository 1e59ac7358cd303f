"""box.yml's optional `provision:` section: how `boxtype create` builds a box type in AWS."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator

from schemas.base import Strict
from schemas.refs import one_key_each, parse_port_number
from schemas.workerboot import WorkerBoot

AMI_RE = re.compile(r"^ami-[0-9a-f]{8,17}\Z")
SUBNET_RE = re.compile(r"^subnet-[0-9a-f]{8,17}\Z")
VPC_RE = re.compile(r"^vpc-[0-9a-f]{8,17}\Z")
SECURITY_GROUP_RE = re.compile(r"^sg-[0-9a-f]{8,17}\Z")
INSTANCE_TYPE_RE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+\Z")
REGION_RE = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-[0-9]\Z")
ALARM_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}\Z")
PROFILE_ARN_RE = re.compile(
    r"^arn:aws[a-z-]*:iam::[0-9]{12}:instance-profile/[A-Za-z0-9_+=,.@/-]+\Z")

# The boxes' own security group, as a source: boxes of this type reach each other.
SELF = "self"
COMPARISONS = {
    ">": "GreaterThanThreshold",
    ">=": "GreaterThanOrEqualToThreshold",
    "<": "LessThanThreshold",
    "<=": "LessThanOrEqualToThreshold",
}
# Worker settings that `boxtype create` writes itself, from the box type and the region.


def _match(rx: re.Pattern[str], example: str, what: str) -> BeforeValidator:
    def check(v: object) -> object:
        if isinstance(v, str) and not rx.match(v):
            raise ValueError(f"{v!r} is not {what}; write e.g. {example!r}")
        return v

    return BeforeValidator(check)


AmiId = Annotated[str, _match(AMI_RE, "ami-0abc1234def567890", "an AMI id")]
SubnetId = Annotated[str, _match(SUBNET_RE, "subnet-0abc1234def567890", "a subnet id")]
VpcId = Annotated[str, _match(VPC_RE, "vpc-0abc1234def567890", "a VPC id")]
GroupId = Annotated[str, _match(SECURITY_GROUP_RE, "sg-0abc1234def567890", "a security group id")]


def parse_source(v: object) -> str:
    """A CIDR (normalised), a security group id, or `self`; anything else says what to write."""
    if not isinstance(v, str):
        raise ValueError(f"source {v!r} must be a CIDR ('10.0.0.0/16'), 'sg-...' or 'self'")
    text = v.strip()
    if text == SELF or SECURITY_GROUP_RE.match(text):
        return text
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(
                f"source {v!r} is not a CIDR ('10.0.0.0/16'), a security group id "
                "('sg-0abc1234def567890') or 'self' (the box type's own boxes)"
            ) from None
        raise ValueError(f"source {v!r} has host bits set; write {str(loose)!r}") from None
    return str(net)


Source = Annotated[str, BeforeValidator(parse_source)]


def _port_keys(v: object) -> object:
    # Keys stay text ("8000"), so errors and line numbers read provision.sources.8000[0].
    if isinstance(v, dict):
        one_key_each(v, lambda k: parse_port_number(k, "sources port"), "port")
        return {str(parse_port_number(k, "sources port")): s for k, s in v.items()}
    return v



class ScalingAlarm(Strict):
    """A CloudWatch alarm on any metric, driving a step scaling policy of the group."""

    name: str = Field(description="Short name: the policy and alarm are <group>-<name>")
    metric: str = Field(min_length=1, description="Metric name, e.g. mem_used_percent")
    namespace: str = Field(min_length=1, description="Metric namespace, e.g. CWAgent")
    statistic: Literal["Average", "Sum", "Minimum", "Maximum", "SampleCount"] = Field(
        "Average", description="How the metric's data points are combined"
    )
    dimensions: dict[str, str] = Field(
        default_factory=dict,
        description="Metric dimensions (default: AutoScalingGroupName = the box type's group)",
    )
    comparison: Annotated[
        Literal[
            "GreaterThanThreshold",
            "GreaterThanOrEqualToThreshold",
            "LessThanThreshold",
            "LessThanOrEqualToThreshold",
        ],
        BeforeValidator(
            lambda v: COMPARISONS.get(v, v) if isinstance(v, str) else v,
            json_schema_input_type=Literal[
                ">",
                ">=",
                "<",
                "<=",
                "GreaterThanThreshold",
                "GreaterThanOrEqualToThreshold",
                "LessThanThreshold",
                "LessThanOrEqualToThreshold",
            ],
        ),
    ] = Field(description="'>', '>=', '<', '<=' (or the CloudWatch operator name)")
    threshold: float = Field(description="The value compared with the metric")
    adjustment: int = Field(
        description="Boxes added (positive) or removed (negative) when the alarm fires"
    )
    period: int = Field(60, ge=10, le=86400, description="Seconds per data point")
    evaluation_periods: int = Field(2, ge=1, le=100, description="Data points that must breach")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not ALARM_NAME_RE.match(v) or v == "cpu":
            raise ValueError(
                f"alarm name {v!r} must be lower-case letters, digits and '-' "
                "(at most 40; 'cpu' is the target tracking policy's)"
            )
        return v

    @field_validator("adjustment")
    @classmethod
    def _nonzero(cls, v: int) -> int:
        if v == 0:
            raise ValueError("adjustment 0 does nothing; write e.g. 1 (add a box) or -1")
        return v

    @field_validator("period")
    @classmethod
    def _period(cls, v: int) -> int:
        if v not in (10, 30) and v % 60:
            raise ValueError(f"period {v} must be 10, 30 or a multiple of 60 seconds")
        return v

    @property
    def scales_out(self) -> bool:
        return self.comparison.startswith("Greater")


class Scaling(Strict):
    """Scaling policies: target tracking on CPU, step policies on CloudWatch alarms."""

    cpu_target: float | None = Field(
        None, gt=0, le=100, description="Average CPU % the group tracks (unset: no CPU policy)"
    )
    warmup: int = Field(300, ge=0, le=3600, description="Seconds before a new box's metrics count")
    alarms: list[ScalingAlarm] = Field(
        default_factory=list, description="Memory and custom metrics: alarm -> step policy"
    )

    @field_validator("alarms")
    @classmethod
    def _unique(cls, v: list[ScalingAlarm]) -> list[ScalingAlarm]:
        names = [a.name for a in v]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"alarm names must be unique; {', '.join(twice)} appear twice")
        return v


class Provisioning(Strict):
    """Launch template, security group, auto scaling group and scaling of one box type."""

    region: str | None = Field(None, description="AWS region (default: ORCHESTRATOR_AWS_REGION)")
    ami: AmiId = Field(description="The AMI every box starts from, e.g. ami-0abc1234def567890")
    instance_type: str = Field("m3.large", description="EC2 instance type")
    subnets: list[SubnetId] = Field(
        min_length=1, description="Subnets the group launches boxes in (one VPC)"
    )
    vpc: VpcId | None = Field(None, description="The subnets' VPC (default: found from them)")
    key_name: str | None = Field(None, min_length=1, description="EC2 key pair for SSH")
    iam_instance_profile: str | None = Field(
        None, min_length=1, description="Instance profile name or ARN (SSM, ELB, CloudWatch)"
    )
    security_groups: list[GroupId] = Field(
        default_factory=list,
        description="Existing security groups also attached to every box (not managed)",
    )
    min: int = Field(1, ge=0, le=10000, description="Fewest boxes")
    max: int = Field(1, ge=0, le=10000, description="Most boxes")
    desired: int | None = Field(
        None,
        ge=0,
        le=10000,
        description="Boxes when the group is created (default: min); afterwards the scaling "
        "policies and `boxtype scale` own it",
    )
    sources: Annotated[dict[str, list[Source]], BeforeValidator(_port_keys)] = Field(
        default_factory=dict,
        description="Who may reach each published host port: {8000: ['10.0.0.0/16', "
        "'sg-...', 'self']}. A port without sources is closed; 0.0.0.0/0 only if written",
    )
    scaling: Scaling = Field(default_factory=Scaling, description="Scaling policies")
    worker: WorkerBoot = Field(description="The worker settings the user data writes")

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, v: str) -> str:
        if not INSTANCE_TYPE_RE.match(v):
            raise ValueError(f"instance type {v!r} is not one; write e.g. 'm3.large'")
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        if v is not None and not REGION_RE.match(v):
            raise ValueError(f"region {v!r} is not an AWS region; write e.g. 'us-east-1'")
        return v

    @field_validator("iam_instance_profile")
    @classmethod
    def _profile(cls, v: str | None) -> str | None:
        if v is not None and v.startswith("arn:") and not PROFILE_ARN_RE.match(v):
            raise ValueError(
                f"{v!r} is not an instance profile ARN; write its name or "
                "'arn:aws:iam::123456789012:instance-profile/NAME'"
            )
        return v

    @field_validator("subnets", "security_groups")
    @classmethod
    def _no_repeats(cls, v: list[str]) -> list[str]:
        twice = sorted({x for x in v if v.count(x) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} listed twice; list each once")
        return v

    @field_validator("max")
    @classmethod
    def _max(cls, v: int, info: ValidationInfo) -> int:
        low = info.data.get("min")
        if low is not None and low > v:
            raise ValueError(f"max {v} is less than min {low}; raise max or lower min")
        return v

    @field_validator("desired")
    @classmethod
    def _desired(cls, v: int | None, info: ValidationInfo) -> int | None:
        low, high = info.data.get("min"), info.data.get("max")
        if v is not None and high is not None and v > high:
            raise ValueError(f"desired {v} is more than max {high}; raise max or lower desired")
        if v is not None and low is not None and v < low:
            raise ValueError(f"desired {v} is less than min {low}; lower min or raise desired")
        return v

    @property
    def port_sources(self) -> dict[int, list[str]]:
        """`sources` by port number."""
        return {int(port): sources for port, sources in self.sources.items()}

    @property
    def desired_capacity(self) -> int:
        return self.min if self.desired is None else self.desired

    @property
    def profile_name(self) -> str | None:
        """The instance profile's name (the last part of an ARN)."""
        if self.iam_instance_profile is None:
            return None
        return self.iam_instance_profile.rsplit("/", 1)[-1]
