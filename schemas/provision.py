"""box.yml's optional `provision:` section: how `boxtype create` builds a box type in AWS."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from schemas.base import SecretRef, Strict
from schemas.refs import parse_port_number

AMI_RE = re.compile(r"^ami-[0-9a-f]{8,17}$")
SUBNET_RE = re.compile(r"^subnet-[0-9a-f]{8,17}$")
VPC_RE = re.compile(r"^vpc-[0-9a-f]{8,17}$")
SECURITY_GROUP_RE = re.compile(r"^sg-[0-9a-f]{8,17}$")
INSTANCE_TYPE_RE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")
REGION_RE = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d$")
ALARM_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
SETTING_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
PROFILE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:instance-profile/[\w+=,.@/-]+$")

# The boxes' own security group, as a source: boxes of this type reach each other.
SELF = "self"
COMPARISONS = {
    ">": "GreaterThanThreshold",
    ">=": "GreaterThanOrEqualToThreshold",
    "<": "LessThanThreshold",
    "<=": "LessThanOrEqualToThreshold",
}
# Worker settings that `boxtype create` writes itself, from the box type and the region.
RESERVED_SETTINGS = frozenset({"box_id", "box_type", "broker_url", "redis_url", "aws_region"})
_SECRET_WORDS = ("password", "secret", "token", "credential")


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
        return {str(parse_port_number(k, "sources port")): s for k, s in v.items()}
    return v


def _url_or_ref(v: object) -> object:
    if isinstance(v, dict) and set(v) == {"secret"}:
        return SecretRef.model_validate(v)
    if isinstance(v, str):
        parts = urlsplit(v)
        if not parts.scheme or not parts.netloc:
            raise ValueError(f"{v!r} is not a URL; write e.g. 'redis://10.0.0.5:6379/0'")
        if parts.password or _secret_params(parts.query):
            raise ValueError(
                "this URL carries a password, which would be readable in the launch template; "
                "store the URL in SSM and write {secret: 'ssm:/orchestrator/broker-url'}"
            )
        if _no_verify(parts.query):
            raise ValueError(
                "this URL turns off TLS certificate checks (ssl_cert_reqs=none/optional); "
                "give the box the CA instead (ssl_ca_certs=/path/ca.crt, or the redis_ca "
                "setting)"
            )
    return v


# Query parameters that carry a credential: refused in the user data as a password is.
_SECRET_PARAMS = frozenset({"password", "passwd", "pass", "pwd", "token", "secret", "auth"})


def _secret_params(query: str) -> list[str]:
    return [k for k, _ in parse_qsl(query, keep_blank_values=True) if k.lower() in _SECRET_PARAMS]


def _no_verify(query: str) -> bool:
    return any(
        k.lower() == "ssl_cert_reqs" and v.lower() in {"none", "optional", "cert_none"}
        for k, v in parse_qsl(query, keep_blank_values=True)
    )


UrlOrRef = Annotated[str | SecretRef, BeforeValidator(_url_or_ref)]


def _setting_value(v: object) -> object:
    if isinstance(v, dict) and set(v) == {"secret"}:
        return SecretRef.model_validate(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    return v


SettingValue = Annotated[str | SecretRef, BeforeValidator(_setting_value)]


class PinnedFile(Strict):
    """A file the box downloads over HTTPS and uses only if its sha256 matches."""

    url: str = Field(description="https URL the box can reach (no password in it)")
    sha256: str = Field(description="64 hex digits: `sha256sum FILE`")

    @field_validator("url")
    @classmethod
    def _https(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme != "https" or not parts.netloc or any(c.isspace() for c in v):
            raise ValueError(f"{v!r} must be an https:// URL without spaces")
        if parts.password or parts.username:
            raise ValueError(
                "this URL carries credentials, which would be readable in the launch template; "
                "serve the file where the box reaches it with its instance role"
            )
        return v

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str) -> str:
        digest = v.removeprefix("sha256:").lower()
        if not SHA256_RE.match(digest):
            raise ValueError(f"sha256 {v!r} must be 64 hex digits (`sha256sum FILE`)")
        return digest


class WorkerBoot(Strict):
    """What the user data writes to /etc/orchestrator/worker.env; secrets by reference only."""

    broker_url: UrlOrRef = Field(
        description="Celery broker: a URL without a password, or {secret: 'ssm:/...'} "
        "resolved on the box at boot"
    )
    redis_url: UrlOrRef | None = Field(
        None, description="Product state (Redis), as broker_url; unset: the worker's default"
    )
    wheel: PinnedFile = Field(
        description="The worker wheel (gc-box-orchestrator) by https URL ending in .whl, "
        "with its sha256: `pip wheel --no-deps -w dist .`, `sha256sum dist/*.whl`"
    )
    lock: PinnedFile = Field(
        description="requirements/worker.lock of the same version (every dependency pinned "
        "with its hashes) by https URL, with its sha256"
    )
    settings: dict[str, SettingValue] = Field(
        default_factory=dict,
        description="More worker settings by name without the ORCHESTRATOR_ prefix "
        "(e.g. log_root: /var/log/orchestrator); values or {secret: ...} references",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_bare_package(cls, data: object) -> object:
        if isinstance(data, dict) and "package" in data:
            raise ValueError(
                "'package' is gone: a box installs only pinned files, never a name from a "
                "public index; write wheel: {url: https://.../gc_box_orchestrator-<v>-py3-none-"
                "any.whl, sha256: ...} and lock: {url: https://.../worker.lock, sha256: ...}"
            )
        return data

    @field_validator("wheel")
    @classmethod
    def _a_wheel(cls, v: PinnedFile) -> PinnedFile:
        # pip names and checks a direct URL by its file name.
        if not urlsplit(v.url).path.endswith(".whl"):
            raise ValueError(f"wheel URL {v.url!r} must end in a wheel's file name (.whl)")
        return v

    @field_validator("settings")
    @classmethod
    def _names(cls, v: dict[str, str | SecretRef]) -> dict[str, str | SecretRef]:
        for name, value in v.items():
            if not SETTING_NAME_RE.match(name):
                raise ValueError(
                    f"setting {name!r} must be a worker setting name in lower case "
                    "without the prefix, e.g. log_root"
                )
            if name in RESERVED_SETTINGS:
                raise ValueError(
                    f"setting {name!r} is written by boxtype create; "
                    "set broker_url/redis_url above, region under provision"
                )
            if name == "insecure_redis_tls":
                raise ValueError(
                    "setting insecure_redis_tls turns off Redis certificate checks on every box; "
                    "give the boxes the CA instead (setting redis_ca)"
                )
            if isinstance(value, str) and any(w in name for w in _SECRET_WORDS):
                raise ValueError(
                    f"setting {name!r} looks secret; write {{secret: 'ssm:/...'}}, not a value"
                )
            if isinstance(value, str) and "\n" in value:
                raise ValueError(f"setting {name!r} must be one line")
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
        BeforeValidator(lambda v: COMPARISONS.get(v, v) if isinstance(v, str) else v),
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
