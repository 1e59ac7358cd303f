"""fleet.yml: the catalog of standard services and fleet-wide defaults, beside the box types."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, field_validator, model_validator

from schemas.boxfile import ContainerSpec, LbKind, SecretRef, Strict, _check_image
from schemas.refs import NAME_RE


class ServiceSpec(ContainerSpec):
    """A standard service (rsyslog, cloudwatch-statsd, ...): one container with its image."""

    image: str = Field(description="Image reference of the service")

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        return _check_image(v)


class RegistryAuth(Strict):
    """Credentials for one registry, by reference: the worker resolves them on the box."""

    registry: str = Field(description="Registry host[:port], as in image references")
    username: str = Field(description="User name (not a secret)")
    password: SecretRef = Field(description="{secret: 'ssm:/...'} or {secret: 'file:/...#KEY'}")


Lifecycle = Literal["started", "halted", "succeeded", "failed", "rolled-back", "aborted",
                    "abandoned"]
LIFECYCLE: tuple[Lifecycle, ...] = get_args(Lifecycle)


class Notification(Strict):
    """Where lifecycle events go: a webhook (its URL a secret reference) or an SNS topic."""

    webhook: SecretRef | None = Field(
        None, description="{secret: 'ssm:/...'} holding the URL; JSON with a Slack-style `text`"
    )
    sns: str | None = Field(
        None, pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$",
        description="SNS topic ARN",
    )
    events: list[Lifecycle] = Field(
        default_factory=lambda: list(LIFECYCLE), description="Which events (default: all)"
    )

    @model_validator(mode="after")
    def _one_target(self) -> Notification:
        if (self.webhook is None) == (self.sns is None):
            raise ValueError("write exactly one of webhook: {secret: ...} or sns: <topic arn>")
        return self


class FleetSettings(Strict):
    """Settings shared by every box type of a fleet."""

    services: dict[str, ServiceSpec] = Field(
        default_factory=dict, description="The catalog of standard services, by name"
    )
    load_balancer: LbKind = Field(
        "elb", description="Default kind of an app's `elb:`: elb, elbv2, haproxy or none"
    )
    log_root: str = Field(
        "/var/log/orchestrator", description="Host directory that receives containers' logs"
    )
    registries: list[RegistryAuth] = Field(
        default_factory=list, description="Registry credentials, by reference"
    )
    step_deadline: float = Field(
        120.0, gt=0, le=3600, description="Seconds one deploy step may take on a box"
    )
    notifications: list[Notification] = Field(
        default_factory=list, description="Webhooks and SNS topics told of lifecycle events"
    )

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

    @field_validator("services")
    @classmethod
    def _names(cls, v: dict[str, ServiceSpec]) -> dict[str, ServiceSpec]:
        for name in v:
            if not NAME_RE.match(str(name)):
                raise ValueError(f"service name {name!r} can't be a Docker name")
        return v

    @field_validator("log_root")
    @classmethod
    def _abs(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"log_root {v!r} must be an absolute path, e.g. /var/log/orchestrator")
        return v
