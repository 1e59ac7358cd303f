"""box.yml as pydantic models: both spellings of the seed format normalise to one model."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema, field_validator, model_validator
from pydantic.config import JsonDict

from schemas.base import SecretRef, Strict
from schemas.onbox import HTTP_PATH_RE, env_of_lines, env_problem
from schemas.provision import Provisioning
from schemas.refs import (
    ENV_NAME_RE,
    NAME_RE,
    argv,
    check_container_path,
    check_volume_source,
    env_lines_once,
    int_keys_once,
    octal_misread,
    parse_image,
    parse_min_healthy,
    parse_port_number,
    parse_port_spec,
)

LbKind = Literal["elb", "elbv2", "haproxy", "none"]


_PLAIN_INT = re.compile(r"-?(?:0|[1-9][0-9]*)\Z")
_PLAIN_FLOAT = re.compile(r"-?[0-9]*\.[0-9]+\Z|-?[0-9]+\.[0-9]*\Z")
_QUOTE = "; quote it (KEY: \"value\") so it stays the text you wrote"


def _env_value(v: object) -> object:
    if isinstance(v, SecretRef):
        return v
    # YAML 1.1 changes these silently (`NO` -> false, `0123` -> 83, `~` -> null); Docker
    # Compose refuses booleans in `environment` the same way.
    if v is None:
        raise ValueError("env value is empty or ~, which YAML reads as null" + _QUOTE)
    if isinstance(v, bool):
        raise ValueError(
            "an unquoted yes/no/on/off/true/false is read by YAML as the boolean "
            f"{str(v).lower()}" + _QUOTE
        )
    text = getattr(v, "source_text", None)
    if isinstance(v, int) and text is not None and not _PLAIN_INT.match(text):
        raise ValueError(f"env value {text} is read by YAML as the number {v}" + _QUOTE)
    if isinstance(v, float) and text is not None:
        if not _PLAIN_FLOAT.match(text):
            raise ValueError(f"env value {text} is read by YAML as the number {v}" + _QUOTE)
        return text
    if isinstance(v, int | float | str):
        return str(int(v)) if isinstance(v, int) else str(v)
    if isinstance(v, dict) and set(v) == {"secret"}:
        return SecretRef.model_validate(v)
    # Not shown: an env value may be a password, and this one may hold it.
    what = "a mapping other than {secret: ...}" if isinstance(v, dict) else f"a {type(v).__name__}"
    raise ValueError(
        f"env value is {what}; it must be a string, or a secret reference such as "
        "{secret: 'ssm:/web/db'} or {secret: 'file:/srv/secrets/web.env#DB'}"
    )


EnvValue = Annotated[
    str | SecretRef,
    BeforeValidator(_env_value, json_schema_input_type=str | int | float | SecretRef),
]


class PortMapping(Strict):
    """One published port: host (optionally one address) to container."""

    host_ip: str | None = Field(None, description="Host address to bind; all addresses if unset")
    host_port: int = Field(ge=1, le=65535, description="Port on the box")
    container_port: int = Field(ge=1, le=65535, description="Port inside the container")
    protocol: Literal["tcp", "udp"] = Field("tcp", description="tcp or udp")

    def __str__(self) -> str:
        ip = f"{self.host_ip}:" if self.host_ip else ""
        return f"{ip}{self.host_port}->{self.container_port}/{self.protocol}"


def _ports(v: object) -> object:
    if v is None:
        return []
    if isinstance(v, dict):  # the seed's mapping form {8000: 8000}
        for number in (n for pair in v.items() for n in pair):
            if why := octal_misread(number):  # the text below would lose how it was written
                raise ValueError(f"port {why}")
        return [f"{host}:{container}" for host, container in v.items()]
    if isinstance(v, list):
        return v
    raise ValueError("ports must be a list ('8080:80', 9090) or a mapping (8000: 8000)")


def _abs_path(v: object) -> object:
    if isinstance(v, str):
        check_container_path(v, "log path")
    return v


PortItem = Annotated[
    PortMapping, BeforeValidator(parse_port_spec, json_schema_input_type=str | int | PortMapping)
]
LogPath = Annotated[
    str, BeforeValidator(_abs_path), WithJsonSchema({"type": "string", "pattern": "^/"})
]
# The same rules for editors (ECMA regexes, where `$` is the end of the text).
_NAMES: JsonDict = {"propertyNames": {"pattern": "^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$"}}
_ENV_NAMES: JsonDict = {"propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}}


class HealthCheck(Strict):
    """How the worker proves new containers healthy: exactly one of http, tcp, command."""

    http: str | None = Field(
        None,
        description="HTTP path that must answer 2xx/3xx, e.g. /health",
        json_schema_extra={"pattern": "^/[!-~]*$"},
    )
    tcp: int | None = Field(None, ge=1, le=65535, description="Container port that must accept")
    command: Annotated[
        list[str] | None, BeforeValidator(argv, json_schema_input_type=str | list[str] | None)
    ] = Field(None, description="Command run in the container; exit 0")
    port: int | None = Field(
        None, ge=1, le=65535, description="Container port for http (default: first published)"
    )
    interval: float = Field(0.5, gt=0, le=60, description="Seconds between attempts")
    timeout: float = Field(2.0, gt=0, le=60, description="Seconds one attempt may take")
    retries: int = Field(20, ge=1, le=1000, description="Failed attempts before giving up")
    start_period: float = Field(0.0, ge=0, le=600, description="Seconds failures don't count")

    @field_validator("http")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        if v is not None and not HTTP_PATH_RE.match(v):
            raise ValueError(
                f"http path {v!r} must start with '/' and hold no blanks, control or "
                "non-ASCII characters (percent-encode them), e.g. '/health'"
            )
        return v

    @model_validator(mode="after")
    def _exactly_one(self) -> HealthCheck:
        kinds = [k for k in ("http", "tcp", "command") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                "health needs exactly one of http (a path), tcp (a port) or command; "
                f"found {', '.join(kinds) or 'none'}"
            )
        if self.command is not None and not "".join(self.command).strip():  # never passes
            raise ValueError("health command is empty; write the command, e.g. "
                             "[/bin/check, --quick], or use http or tcp")
        return self

    @property
    def deadline(self) -> float:
        """The longest a check may take before it is declared failed."""
        return self.start_period + self.retries * (self.interval + self.timeout)


class ContainerSpec(Strict):
    """One container of an app (the seed's `containers.<name>`)."""

    restart_on_failure: bool = Field(False, description="Restart when it exits non-zero")
    use_host_hostname: bool = Field(False, description="Give the container the box's hostname")
    ports: Annotated[
        list[PortItem], BeforeValidator(_ports, json_schema_input_type=list[str | int] | dict)
    ] = Field(default_factory=list, description="Published ports: list or {host: container}")
    logs: Annotated[
        dict[str, list[LogPath]],
        BeforeValidator(
            lambda v: v, json_schema_input_type=list[str] | dict[str, list[str]] | None
        ),
    ] = Field(
        default_factory=dict,
        description="Log directories in the container, forwarded to the box's log root. "
        "A list, or {name: [paths]}",
    )
    volumes: list[str] = Field(
        json_schema_extra={"items": {"type": "string", "pattern":
                                      "^(/[^:]*|[a-zA-Z0-9][a-zA-Z0-9_.-]*):/[^:]*[^:/][^:]*"
                                      "(:(ro|rw))?$"}},
        default_factory=list, description="'/host/path:/container/path[:ro]' or 'name:/path'"
    )
    env: dict[str, EnvValue] = Field(
        json_schema_extra=_ENV_NAMES,
        default_factory=dict, description="Environment: {KEY: value} or {KEY: {secret: ref}}"
    )
    envs: Annotated[list[str] | None, BeforeValidator(env_lines_once)] = Field(
        None, exclude=True, description="The seed's list spelling of env: ['KEY=value', ...]"
    )
    command: Annotated[
        list[str] | None,
        BeforeValidator(argv, json_schema_input_type=str | list[str] | None),
    ] = Field(None, description="Command to run: a string or an argv list")
    health: HealthCheck | None = Field(None, description="Health check (default: still running)")
    stop_timeout: int = Field(10, ge=0, le=600, description="Seconds between SIGTERM and SIGKILL")

    @field_validator("logs", mode="before")
    @classmethod
    def _logs_list(cls, v: object) -> object:
        # A bare list is named later by the container (see AppSpec); keep it for that.
        if isinstance(v, list):
            return {"": v}
        return {} if v is None else v

    @field_validator("logs")
    @classmethod
    def _absolute(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for name in v:
            if name and not NAME_RE.match(name):
                raise ValueError(f"log name {name!r} must be letters, digits, '_', '.', '-'")
        return v

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, v: list[str]) -> list[str]:
        for item in v:
            parts = item.split(":")
            if len(parts) not in (2, 3) or not parts[1].startswith("/") or not parts[0]:
                raise ValueError(
                    f"volume {item!r} must be 'SOURCE:/container/path' or "
                    "'SOURCE:/container/path:ro' (SOURCE an absolute host path or a volume name)"
                )
            if len(parts) == 3 and parts[2] not in ("ro", "rw"):
                raise ValueError(f"volume mode {parts[2]!r} in {item!r} must be ro or rw")
            check_volume_source(parts[0], item)
            check_container_path(parts[1], f"volume {item!r}: container path")
        return v

    @field_validator("env")
    @classmethod
    def _env_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            if not ENV_NAME_RE.match(str(key)):
                raise ValueError(f"env name {key!r} must be letters, digits and '_'")
        problem = env_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _merge_envs(self) -> ContainerSpec:
        if self.envs is None:
            return self
        if self.env:
            raise ValueError("write env as a mapping or envs as a list, not both")
        env = env_of_lines(self.envs)
        object.__setattr__(self, "env", env)
        object.__setattr__(self, "envs", None)
        return self

    @property
    def published_container_ports(self) -> list[int]:
        return [p.container_port for p in self.ports]


def _check_image(v: str) -> str:
    parse_image(v)
    return v


ImageField = Annotated[str, BeforeValidator(lambda v: v if not isinstance(v, str) else v.strip())]


class AppSpec(Strict):
    """One app: containers from one image, deployed together, behind an optional LB."""

    depends: list[str] = Field(default_factory=list, description="Apps started before this one")
    elb: str | None = Field(
        None,
        description="Load balancer the box leaves during the swap: classic ELB name, "
        "ELBv2 target group name/ARN, or HAProxy backend (kind: lb_kind or the fleet default)",
    )
    lb_kind: LbKind | None = Field(None, description="Kind of `elb`; default from fleet.yml")
    lb_port: int | None = Field(None, ge=1, le=65535, description="ELBv2 target port")
    strategy: Literal["stop-first", "start-first"] = Field(
        "stop-first",
        description="stop-first: the box leaves its load balancer, the old containers stop, "
        "the new start. start-first: the new containers start beside the old ones on the "
        "alternate ports, and the box's member moves to them once they are healthy",
    )
    alternate_ports: Annotated[dict[int, int], BeforeValidator(int_keys_once)] = Field(
        default_factory=dict,
        description="start-first: published host port -> the host port the next version "
        "publishes it on; the two sets are used in turn (blue/green)",
    )
    image: ImageField = Field(description="Image reference, with or without tag or digest")
    containers: dict[str, ContainerSpec] = Field(
        json_schema_extra=_NAMES,
        min_length=1, description="Containers of this app, by name"
    )

    @model_validator(mode="before")
    @classmethod
    def _name_bare_logs(cls, data: object) -> object:
        # The seed's `logs: [paths]` means "the logs of this container": name them so.
        if isinstance(data, dict) and isinstance(data.get("containers"), dict):
            containers = {}
            for name, spec in data["containers"].items():
                if isinstance(spec, dict) and isinstance(spec.get("logs"), list):
                    spec = {**spec, "logs": {str(name): spec["logs"]}}
                containers[name] = spec
            data = {**data, "containers": containers}
        return data

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        return _check_image(v)

    @field_validator("containers")
    @classmethod
    def _container_names(cls, v: dict[str, ContainerSpec]) -> dict[str, ContainerSpec]:
        for name in v:
            if not NAME_RE.match(str(name)):
                raise ValueError(
                    f"container name {name!r} can't be a Docker name: use letters, digits, "
                    "'_', '.', '-', starting with a letter or digit"
                )
        return v


class Migrate(Strict):
    """A one-off task per rollout: run once, on one box, in a container of the new image of
    `app`, after preflight and before any box leaves its load balancer."""

    app: str = Field(description="The app whose new image (and first container's env) it uses")
    command: list[str] = Field(min_length=1, description="The command, e.g. [rake, db:migrate]")
    deadline: float = Field(
        600.0, gt=0, le=3600,
        description="Seconds it may run; keep it below the workers' visibility_timeout",
    )

    @field_validator("command", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        return argv(v)


class BoxSpec(Strict):
    """A box type's box.yml: standard services and apps."""

    services: list[str] = Field(
        default_factory=list, description="Standard services from the fleet catalog"
    )
    apps: dict[str, AppSpec] = Field(
        description="Apps on this box type, by name", json_schema_extra=_NAMES
    )
    migrate: Migrate | None = Field(
        None, description="A one-off task each rollout runs once before any box leaves"
    )
    min_healthy: Annotated[str, BeforeValidator(parse_min_healthy), WithJsonSchema({"anyOf": [
        {"type": "string", "pattern": r"^([0-9]{1,6}|(100|[1-9]?[0-9])%)$"},
        {"type": "integer", "minimum": 0, "maximum": 999999}]})] = Field(
        "0",
        description="Capacity guard: a box leaves a load balancer only if at least this many "
        "(or this % of) registered members stay healthy; 0 turns it off",
    )
    provision: Provisioning | None = Field(
        None,
        exclude=True,
        description="How `orchestrator boxtype create` provisions this box type in AWS "
        "(launch template, security group, auto scaling group, scaling policies). "
        "Read by the coordinator only: not stored in releases, never sent to boxes",
    )

    @field_validator("apps")
    @classmethod
    def _app_names(cls, v: dict[str, AppSpec]) -> dict[str, AppSpec]:
        for name in v:
            if not NAME_RE.match(str(name)):
                raise ValueError(
                    f"app name {name!r} can't be a Docker name: use letters, digits, "
                    "'_', '.', '-', starting with a letter or digit"
                )
        return v


__all__ = [
    "AppSpec",
    "BoxSpec",
    "ContainerSpec",
    "HealthCheck",
    "LbKind",
    "PortMapping",
    "SecretRef",
    "Strict",
    "parse_port_number",
]
