"""Worker settings: ORCHESTRATOR_* environment variables or /etc/orchestrator/worker.env."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from orchestrator.engine.tls import RedisConnection
from schemas.durations import Seconds
from schemas.refs import NAME_RE
from schemas.settingvalues import AwsRegion, EndpointUrl, KeyPrefix, LogRoot, SocketPath

# Where the user data writes the worker's settings (and its references); see orchestrator/aws.
ENV_FILE = "/etc/orchestrator/worker.env"
SETTINGS_DIR = "/etc/orchestrator"


class WorkerSettings(RedisConnection, BaseSettings):
    """Every knob of `orchestrator-worker`; the README lists each one."""

    model_config = SettingsConfigDict(
        env_prefix="ORCHESTRATOR_", env_file=ENV_FILE, extra="ignore", allow_inf_nan=False
    )

    box_id: str | None = Field(None, description="This box's id; EC2 instance id when unset")
    box_type: str | None = Field(None, description="This box's type; EC2 tag when unset")
    key_prefix: KeyPrefix = Field("orch:", description="Prefix of every product key in Redis")
    bind_ip: str | None = Field(
        None, description="Host address for published ports (simulated boxes: 127.0.0.11, ...)"
    )
    health_host: str = Field("127.0.0.1", description="Address health checks connect to")
    log_root: LogRoot = Field("/var/log/orchestrator", description="Host root of forwarded logs")
    hostname: str | None = Field(None, description="Hostname for use_host_hostname containers")
    haproxy_socket: SocketPath = Field(None, description="HAProxy runtime API socket path")
    haproxy_server: str | None = Field(None, description="HAProxy server name (default: box id)")
    aws_region: AwsRegion = Field("us-east-1", description="AWS region for ELB, ELBv2, SSM")
    aws_endpoint_url: EndpointUrl = Field(None, description="AWS endpoint (tests: moto server)")
    metrics_listen: str | None = Field(
        None, description="host:port of this worker's own /metrics (unset: not served)"
    )
    imds_url: str = Field("http://169.254.169.254", description="EC2 instance metadata service")
    heartbeat_interval: Seconds = Field(5.0, gt=0, description="Seconds between heartbeats")
    heartbeat_ttl: Seconds = Field(15.0, gt=0, description="Heartbeat TTL (>= 3 x interval)")
    step_deadline: Seconds = Field(120.0, gt=0, description="Seconds one step may take")
    visibility_timeout: Seconds = Field(
        300.0, gt=0, description="Broker redelivery timeout (> step deadline)"
    )
    restore_interval: Seconds = Field(5.0, gt=0, description="kombu's unacked restore sweep")
    lease_ttl: Seconds = Field(60.0, ge=1, description="TTL of a box type's lease while renewed")
    slot_ttl: Seconds = Field(30.0, ge=1, description="A scheduled box silent this long is dead")
    settle_time: Seconds = Field(2.0, ge=0, description="Running this long = healthy, w/o a check")
    drain_timeout: Seconds = Field(60.0, gt=0, description="Seconds to wait for LB draining")
    services_interval: Seconds = Field(30.0, gt=0, description="Seconds between service checks")
    realign_members: bool = Field(
        True,
        description="At rest, each heartbeat tick puts a start-first app's HAProxy member back "
        "on the port its running version publishes (an HAProxy reload without a server-state "
        "file puts back the configured port); false: only `status` flags it, `repair` fixes it",
    )
    runtime: Literal["docker", "noop"] = Field(
        "docker", description="Container runtime; noop only for benchmarks"
    )
    concurrency: int = Field(1, ge=1, description="Pool size (1 per real box)")
    secret_check_interval: Seconds = Field(
        60.0, gt=0,
        description="Seconds between the box's own checks for rotated secret values (each "
        "resolves every secret: SSM reads); `status` shows what the last one found",
    )
    state_dir: str = Field(
        "/var/lib/orchestrator",
        description="The box's own record (what it left, what it is changing) and the "
        "releases it ran: what it finishes after a restart or a loss of Redis",
    )
    trusted_keys: str = Field(
        "",
        description="Public keys whose signatures this box accepts, comma-separated (two "
        "while a key is rotated); empty: the box refuses every order",
    )
    insecure_unsigned: bool = Field(
        False,
        description="INSECURE, throwaway setups only: act on unsigned releases and orders",
    )
    fault_point: str | None = Field(
        None,
        description="Drills and tests only: `<step>:<action>[=stop|kill]` (actions: run, "
        "stop, start, rename, remove, leave, join) stops or kills the worker just before it",
    )
    fault_step: str | None = Field(
        None,
        description="Drills and tests only: this task (`deploy.swap` or `deploy.swap:<app>`) "
        "raises an unexpected error, "
        "to prove the link_error rescue (restore, rejoin)",
    )
    allowed_host_paths: list[str] = Field(
        default_factory=list,
        description="Host paths a release may mount or read as `file:` secrets although "
        "under a default-denied one (`/etc`, `/root`, `/boot`, `/proc`, `/sys`, `/dev`, "
        "the Docker socket); an allowed sub-path wins over a denied parent (JSON list)",
    )
    protected_paths: list[str] = Field(
        default_factory=list,
        description="More of the worker's own files (keys, a settings file elsewhere), "
        "never open to a release; its settings directory, state dir and every `*_file`, "
        "`*_dir`, `*_socket` setting are always protected (JSON list)",
    )
    extra_labels: dict[str, str] = Field(
        default_factory=dict, description="Labels added to every container (JSON object)"
    )
    extra_box_ids: list[str] = Field(
        default_factory=list,
        description="More simulated boxes served by this process (benchmarks): their queues "
        "and heartbeats (JSON list)",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        for source in (env_settings, dotenv_settings):
            source.decode_complex_value = _depth_guard(  # type: ignore[method-assign]
                source.decode_complex_value
            )
        return init_settings, env_settings, dotenv_settings, file_secret_settings

    @field_validator("box_id", "extra_box_ids")
    @classmethod
    def _box_ids(cls, v: str | list[str] | None) -> str | list[str] | None:
        for box_id in [v] if isinstance(v, str) else v or []:
            if not NAME_RE.match(box_id):
                raise ValueError(
                    f"box id {box_id!r} must be a name: letters, digits, '_', '.', '-', at most "
                    "63, starting with a letter or digit (it names the box's queue, containers "
                    "and keys; an EC2 instance id is one)"
                )
        return v

    @model_validator(mode="after")
    def _consistent(self) -> WorkerSettings:
        if self.heartbeat_ttl < 3 * self.heartbeat_interval:
            raise ValueError(
                f"heartbeat_ttl {self.heartbeat_ttl} must be at least 3 x heartbeat_interval "
                f"({3 * self.heartbeat_interval})"
            )
        if self.visibility_timeout <= self.step_deadline:
            raise ValueError(
                f"visibility_timeout {self.visibility_timeout} must exceed step_deadline "
                f"{self.step_deadline}, or a running step is delivered twice"
            )
        return self


def _depth_guard(decode: Callable[..., Any]) -> Callable[..., Any]:
    """A JSON setting's decoder whose RecursionError (JSON nested past the interpreter's depth)
    is a ValueError: pydantic-settings turns only that into its SettingsError naming the
    field, and lets the other through as a traceback."""

    def guarded(*args: Any) -> Any:
        try:
            return decode(*args)
        except RecursionError:
            raise ValueError("JSON nested too deep") from None

    return guarded
