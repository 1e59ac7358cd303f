"""Coordinator settings: ORCHESTRATOR_* environment variables (shared names with the worker)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, ValidationError, field_validator

from orchestrator.engine.tls import RedisConnection
from orchestrator.envmodel import EnvModel
from orchestrator.errors import ConfigError
from schemas.durations import Seconds
from schemas.refs import clipped
from schemas.settingvalues import AwsRegion, EndpointUrl, KeyPrefix, OneLine, SocketPath


class CoordinatorSettings(RedisConnection, EnvModel):
    """What `orchestrator rollout` and friends need; the README lists each."""

    env_prefix: ClassVar[str] = "ORCHESTRATOR_"

    boxes_dir: Path = Field(Path("boxes"), description="Folder of <box-type>.yml files")
    fleet_file: Path | None = Field(
        None, description="fleet.yml (default: fleet.yml beside or above the boxes folder)"
    )
    key_prefix: KeyPrefix = Field("orch:", description="Prefix of every product key in Redis")
    redis_wait: Seconds = Field(
        10.0, ge=0, description="Seconds a command waits for Redis to answer before giving up"
    )
    lease_ttl: Seconds = Field(60.0, ge=1, description="Lease TTL while a rollout is renewed")
    slot_ttl: Seconds = Field(30.0, ge=1, description="A scheduled box silent this long is dead")
    preflight_timeout: Seconds = Field(120.0, gt=0, description="Seconds for every box's preflight")
    watch_interval: Seconds = Field(0.2, gt=0, description="Seconds between event stream reads")
    haproxy_socket: SocketPath = Field(
        None, description="HAProxy runtime API socket: `status` reads memberships through it"
    )
    aws_region: AwsRegion = Field("us-east-1", description="AWS region of the box types' groups")
    aws_endpoint_url: EndpointUrl = Field(None, description="AWS endpoint (tests: moto server)")
    fleet_source: Literal["auto", "heartbeats", "asg"] = Field(
        "auto",
        description="auto: the box type's ASG when AWS credentials exist and a group is "
        "tagged, else live heartbeats; or heartbeats / asg",
    )
    signing_key: str | None = Field(
        None,
        description="The Ed25519 private key that signs releases and orders: a path, "
        "`file:<path>` or `ssm:<parameter>` (`orchestrator keys generate`)",
    )
    order_ttl: Seconds = Field(
        6 * 3600.0, gt=0, description="Seconds a signed order may claim boxes (resume renews)"
    )
    insecure_unsigned: bool = Field(
        False,
        description="INSECURE, throwaway setups only: start rollouts without a signing key "
        "(boxes then refuse them unless they run with the same setting)",
    )
    performer: OneLine = Field(
        None, description="Who deploys, as CI names them (recorded with the user and host)"
    )
    allow_no_reason: bool = Field(
        False, description="Let `rollout`, `rollback` and `repair` run without --reason"
    )
    hooks_dir: Path | None = Field(
        None, description="Folder of hook executables (default: hooks/ beside the boxes folder)"
    )
    hook_timeout: Seconds = Field(600.0, gt=0, description="Seconds a hook may run")
    insecure_registries: list[str] = Field(
        default_factory=lambda: ["localhost", "127."],
        description="Registry host prefixes reached over plain HTTP",
    )

    @field_validator("boxes_dir", "fleet_file", "hooks_dir")
    @classmethod
    def _a_usable_path(cls, v: Path | None) -> Path | None:
        """A path the system can't even look up (too long, a loop, no permission on the way)
        is named here, not met as a traceback by whichever command first looks."""
        try:
            if v is not None:
                v.stat()
        except (FileNotFoundError, NotADirectoryError):
            pass  # said by the command that needs it, with what it needed it for
        except OSError as exc:
            raise ValueError(f"{clipped(str(v))}: {exc.strerror}; name a path that can be used"
                             ) from None
        return v

    @field_validator("hooks_dir")
    @classmethod
    def _a_folder(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_dir():  # named, so meant: a typo must not skip every hook
            raise ValueError(f"{v} is not a folder; name the folder of hook executables")
        return v

    @field_validator("insecure_registries")
    @classmethod
    def _no_blank_prefix(cls, prefixes: list[str]) -> list[str]:
        # Every host starts with the empty prefix: "" would send every pull over plain HTTP.
        if any(not p.strip() for p in prefixes):
            raise ValueError(
                'an entry is empty or blank, which every registry host starts with; list '
                'host prefixes, e.g. ["localhost", "127.", "registry.local:5000"]'
            )
        return prefixes


def load_settings() -> CoordinatorSettings:
    """The coordinator's settings; a bad ORCHESTRATOR_* value (a TLS file it names included)
    is one clear line, exit 2."""
    try:
        settings = CoordinatorSettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "_".join(str(p) for p in first["loc"][:1]).upper()
        msg = str(first["msg"]).removeprefix("Value error, ")
        raise _bad(field, msg) from None
    if problem := settings.tls_file_problem():
        raise _bad(*problem)
    return settings


def _bad(field: str, why: str) -> ConfigError:
    return ConfigError(f"environment variable ORCHESTRATOR_{field}: {why}; fix or unset it")
