"""fleet.yml: the catalog of standard services and fleet-wide defaults, beside the box types."""

from __future__ import annotations

import posixpath
import re
from typing import Literal, get_args

from pydantic import Field, field_validator, model_validator

from schemas.base import OptionalRef
from schemas.boxfile import ContainerSpec, LbKind, Strict, _check_image
from schemas.onbox import lb_name_problem
from schemas.refs import NAME_RE, check_registry_host, has_control
from schemas.rollout import alarm_problem
from schemas.settingvalues import LogRoot


class ServiceSpec(ContainerSpec):
    """A standard service (rsyslog, cloudwatch-statsd, ...): one container with its image."""

    image: str = Field(description="Image reference of the service")

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        return _check_image(v)


# An ECR registry host: <account>.dkr.ecr.<region>.amazonaws.com (.cn in China regions).
ECR_HOST_RE = re.compile(
    r"^(?P<account>[0-9]{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z]{2}(?:-[a-z]+)+-[0-9])"
    r"\.amazonaws\.com(?:\.cn)?$"
)


def ecr_host(host: str | None) -> tuple[str, str] | None:
    """(account, region) when `host` is an ECR registry, else None."""
    m = ECR_HOST_RE.match((host or "").lower())
    return (m["account"], m["region"]) if m else None


class RegistryAuth(Strict):
    """Credentials for one registry, by reference: resolved where they are used (pinning on
    the coordinator's machine, pulls on the box), never stored as values."""

    registry: str = Field(description="Registry host[:port], as in image references")
    username: str | None = Field(None, description="User name (not a secret)")
    password: OptionalRef = Field(
        None, description="{secret: 'ssm:/...'} or {secret: 'file:/...#KEY'}"
    )
    ecr: str | None = Field(
        None,
        description="Credentials are ECR tokens (ecr:GetAuthorizationToken) of this ECR "
        "registry host, <account>.dkr.ecr.<region>.amazonaws.com; ECR hosts need no entry",
    )

    @field_validator("registry")
    @classmethod
    def _host(cls, v: str) -> str:
        return check_registry_host(v)

    @field_validator("username")
    @classmethod
    def _user(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or any(not c.isprintable() for c in v)):
            raise ValueError(f"username {v!r} is empty or has a control character")
        return v

    @field_validator("ecr")
    @classmethod
    def _ecr(cls, v: str | None) -> str | None:
        if v is not None and ecr_host(v) is None:
            raise ValueError(
                f"ecr {v!r} is not an ECR registry host: write "
                "<12-digit account>.dkr.ecr.<region>.amazonaws.com"
            )
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> RegistryAuth:
        if self.ecr is not None and (self.username or self.password):
            raise ValueError(
                f"registry {self.registry}: give either ecr (tokens from AWS) or "
                "username + password, not both"
            )
        if self.ecr is None and (self.username is None or self.password is None):
            raise ValueError(
                f"registry {self.registry}: needs username and password: {{secret: ...}} "
                "(or ecr: <account>.dkr.ecr.<region>.amazonaws.com)"
            )
        return self


Lifecycle = Literal["started", "halted", "succeeded", "failed", "rolled-back", "aborted",
                    "abandoned"]
LIFECYCLE: tuple[Lifecycle, ...] = get_args(Lifecycle)


class Notification(Strict):
    """Where lifecycle events go: a webhook (its URL a secret reference) or an SNS topic."""

    webhook: OptionalRef = Field(
        None, description="{secret: 'ssm:/...'} holding the URL; JSON with a Slack-style `text`"
    )
    sns: str | None = Field(
        None, pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}$",
        description="SNS topic ARN",
    )
    events: list[Lifecycle] = Field(
        default_factory=lambda: list(LIFECYCLE), description="Which events (default: all)"
    )

    @model_validator(mode="after")
    def _one_target(self) -> Notification:
        if (self.webhook is None) == (self.sns is None):
            raise ValueError("write exactly one of webhook: {secret: ...} or sns: <topic arn>")
        if not self.events:
            raise ValueError("events is empty, so nothing is ever sent: name some, or leave "
                             "events out for all of them")
        return self

def lb_key(kind: str, name: str, haproxy_socket: str | None = None) -> str:
    """The one stable name of a load balancer, shared by every box type behind it: the
    classic ELB's name, the target group's ARN (or name, as box.yml spells it), or HAProxy's
    runtime socket plus backend (two HAProxies with one backend name are two balancers)."""
    name = name.strip()
    if kind == "haproxy":
        return f"haproxy:{posixpath.normpath(haproxy_socket or '-')}#{name}"
    return f"{kind}:{name}"


class LbBudget(Strict):
    """At most `max_out` members of one load balancer out at once, whatever their box type."""

    kind: Literal["elb", "elbv2", "haproxy"] = Field(description="elb, elbv2 or haproxy")
    name: str = Field(
        min_length=1,
        description="The classic ELB's name, the target group's ARN or name, or the HAProxy "
        "backend, spelled as in box.yml's `elb:`",
    )
    socket: str | None = Field(
        None, description="haproxy only: the runtime API socket (the workers' haproxy_socket)"
    )
    max_out: int = Field(ge=1, le=10_000, description="Members out of service at once, at most")

    @model_validator(mode="after")
    def _socket(self) -> LbBudget:
        if self.kind == "haproxy" and (not (self.socket or "").startswith("/")
                                       or has_control(self.socket or "")):
            raise ValueError(
                "a haproxy load balancer is named by its socket and backend: add "
                "`socket: /path/to/haproxy.sock` (the workers' ORCHESTRATOR_HAPROXY_SOCKET)"
            )
        if self.kind != "haproxy" and self.socket is not None:
            raise ValueError(f"`socket` is for haproxy only: remove it from this {self.kind}")
        # Spelled as box.yml's `elb:` may be (else no box ever meets the budget); an ARN is
        # left to the kind's API.
        name = self.name.strip()
        if not name.startswith("arn:") and (why := lb_name_problem(self.kind, name)):
            raise ValueError(why)
        return self

    @field_validator("max_out", mode="before")
    @classmethod
    def _int(cls, v: object) -> object:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(
                f"max_out must be a whole number >= 1 (1: one member out at a time), not {v!r}"
            )
        return v

    def key(self) -> str:
        return lb_key(self.kind, self.name, self.socket)


class FleetSettings(Strict):
    """Settings shared by every box type of a fleet."""

    services: dict[str, ServiceSpec] = Field(
        default_factory=dict, description="The catalog of standard services, by name"
    )
    load_balancer: LbKind = Field(
        "elb", description="Default kind of an app's `elb:`: elb, elbv2, haproxy or none"
    )
    log_root: LogRoot = Field(
        "/var/log/orchestrator", description="Host directory that receives containers' logs"
    )
    registries: list[RegistryAuth] = Field(
        default_factory=list, description="Registry credentials, by reference"
    )
    step_deadline: float = Field(
        120.0, gt=0, le=3600, description="Seconds one deploy step may take on a box"
    )
    alarms: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Box type -> CloudWatch alarm names every bake of that type watches",
    )
    notifications: list[Notification] = Field(
        default_factory=list, description="Webhooks and SNS topics told of lifecycle events"
    )
    load_balancers: list[LbBudget] = Field(
        default_factory=list,
        description="Budgets shared by every box type behind a load balancer (none: no limit)",
    )

    @field_validator("load_balancers")
    @classmethod
    def _one_budget_each(cls, v: list[LbBudget]) -> list[LbBudget]:
        seen: dict[str, int] = {}
        for i, budget in enumerate(v):
            if budget.key() in seen:
                raise ValueError(
                    f"load_balancers[{i}] names the same load balancer as "
                    f"load_balancers[{seen[budget.key()]}] ({budget.key()}): keep one"
                )
            seen[budget.key()] = i
        return v

    def budgets(self) -> dict[str, int]:
        """Load balancer key -> max_out, for the coordinator to publish."""
        return {b.key(): b.max_out for b in self.load_balancers}

    @model_validator(mode="before")
    @classmethod
    def _name_bare_logs(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("services"), dict):
            services = {}
            for name, spec in data["services"].items():
                if isinstance(spec, dict) and isinstance(spec.get("logs"), list):
                    spec = {**spec, "logs": {str(name): spec["logs"]}}
                services[name] = spec
            data = {**data, "services": services}
        return data

    @field_validator("alarms")
    @classmethod
    def _alarm_names(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for box_type, names in v.items():
            if not NAME_RE.match(str(box_type)):
                raise ValueError(f"alarms: {str(box_type)[:40]!r} is not a box type's name "
                                 "(boxes/<name>.yml: letters, digits, '_', '.', '-')")
            for name in names:
                if why := alarm_problem(name):
                    raise ValueError(f"alarms of {box_type}: {why}")
        return v

    @field_validator("services")
    @classmethod
    def _names(cls, v: dict[str, ServiceSpec]) -> dict[str, ServiceSpec]:
        for name in v:
            if not NAME_RE.match(str(name)):
                raise ValueError(f"service name {name!r} can't be a Docker name")
        return v

    @field_validator("registries")
    @classmethod
    def _one_entry_each(cls, v: list[RegistryAuth]) -> list[RegistryAuth]:
        seen: dict[str, int] = {}
        for i, entry in enumerate(v):
            host = entry.registry.lower()  # host names are case-insensitive
            if host in seen:
                raise ValueError(
                    f"registries[{i}] is {entry.registry} again (registries[{seen[host]}]"
                    "): one entry per registry, or which credentials are used is a guess"
                )
            seen[host] = i
        return v
