"""The AWS boundary: every boto3 client is made here, and every botocore error becomes ours."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

from orchestrator.errors import (
    ConfigError,
    OrchestratorError,
    ProvisioningFailed,
    ServiceUnavailable,
)

# boto3 clients are generated at run time; there is no static type to name.
BotoClient = Any

# The one client configuration. Calls run inside a step (leave/join a load balancer, read an
# SSM secret, suspend a group) whose default deadline is 120 s: 4 attempts of at most 5 s to
# connect and 15 s to read, with standard mode's jittered backoff (at most 1+2+4 s), give up
# after about 90 s, so a hung endpoint fails the step instead of outliving it. Provisioning's
# calls are short API calls too; its former read 30 s / 5 attempts (about 190 s) did not fit.
_CONFIG = Config(
    connect_timeout=5, read_timeout=15, retries={"max_attempts": 4, "mode": "standard"}
)
# Client settings, not session settings: accepted among session kwargs so one dict from the
# settings reaches both (a test's moto endpoint_url is the common case).
_CLIENT_KEYS = frozenset({"config", "verify", "use_ssl"})
_UNREACHABLE = (
    EndpointConnectionError,
    ConnectionClosedError,
    ConnectTimeoutError,
    ReadTimeoutError,
)


class AwsClients:
    """The services a box type lives in, for one region; each client made on first use."""

    def __init__(self, region: str, endpoint_url: str | None = None, **session_kwargs: Any):
        self.region = region
        self._session = boto3.session.Session(region_name=region, **session_kwargs)
        self._endpoint_url = endpoint_url
        self._made: dict[str, BotoClient] = {}

    def client(self, service: str) -> BotoClient:
        if service not in self._made:
            self._made[service] = _make(self._session, service, self._endpoint_url)
        return self._made[service]

    @property
    def ec2(self) -> BotoClient:
        return self.client("ec2")

    @property
    def autoscaling(self) -> BotoClient:
        return self.client("autoscaling")

    @property
    def cloudwatch(self) -> BotoClient:
        return self.client("cloudwatch")

    @property
    def iam(self) -> BotoClient:
        return self.client("iam")

    def close(self) -> None:
        # Left open, pooled sockets warn at exit (and warnings fail the tests).
        for client in self._made.values():
            client.close()
        self._made.clear()


def connect(region: str, endpoint_url: str | None = None, **session_kwargs: Any) -> AwsClients:
    """Clients with bounded calls; credentials from boto3's usual chain unless given."""
    return AwsClients(region, endpoint_url, **session_kwargs)


def aws_client(
    service: str, region: str | None = None, endpoint_url: str | None = None, **kwargs: Any
) -> BotoClient:
    """One client with bounded calls; the caller closes it. `kwargs` are session settings
    (credentials, profile) or client ones (verify, use_ssl, a `config` merged over ours)."""
    session_kwargs = {k: v for k, v in kwargs.items() if k not in _CLIENT_KEYS}
    client_kwargs = {k: v for k, v in kwargs.items() if k in _CLIENT_KEYS}
    session = boto3.session.Session(region_name=region, **session_kwargs)
    return _make(session, service, endpoint_url, **client_kwargs)


_shared: dict[tuple[str, str | None, str | None], BotoClient] = {}
_shared_lock = threading.Lock()


def shared_client(service: str, region: str | None, endpoint_url: str | None) -> BotoClient:
    """One client per service, region and endpoint for the process's life, never closed: a
    box's worker asks SSM and its load balancer several times a step, and each new client
    cost ~90 ms (a session, its endpoint and service models; on EC2 a credentials lookup
    too). botocore clients are thread-safe and refresh an instance role's credentials."""
    key = (service, region, endpoint_url)
    with _shared_lock:
        if key in _shared:
            return _shared[key]
        session = boto3.session.Session(region_name=region)
        client = _make(session, service, endpoint_url)
        # Kept only with credentials: a client made without any (an instance role not served
        # yet at boot) would stay without; the next call makes another.
        if session.get_credentials() is not None:
            _shared[key] = client
        return client


def _make(
    session: boto3.session.Session,
    service: str,
    endpoint_url: str | None,
    config: Config | None = None,
    **client_kwargs: Any,
) -> BotoClient:
    # Every client of the project is made here, with the one bounded configuration.
    merged = _CONFIG.merge(config) if config is not None else _CONFIG
    try:
        return session.client(service, endpoint_url=endpoint_url, config=merged, **client_kwargs)
    except BotoCoreError as exc:  # no region, or a malformed one
        raise ConfigError(
            f"cannot make an AWS {service} client: {exc}; set ORCHESTRATOR_AWS_REGION"
        ) from exc


def has_credentials() -> bool:
    """Whether boto3's usual chain finds credentials (env, profile, instance role)."""
    return boto3.session.Session().get_credentials() is not None


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "?"))


def call(
    what: str,
    fn: Callable[..., dict[str, Any]],
    *,
    done_codes: frozenset[str] = frozenset(),
    refused: type[OrchestratorError] = ProvisioningFailed,
    **kwargs: Any,
) -> dict[str, Any]:
    """Call boto3, translating its errors at this one boundary: a refusal becomes `refused`;
    an error code in `done_codes` returns {}."""
    try:
        return fn(**kwargs)
    except ClientError as exc:
        code = error_code(exc)
        if code in done_codes:
            return {}
        message = exc.response.get("Error", {}).get("Message", "")
        raise refused(f"{what}: AWS refused: {code}: {message}") from exc
    except (NoCredentialsError, NoRegionError) as exc:
        raise ConfigError(
            f"{what}: {exc}; set AWS credentials (AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or an instance role) and ORCHESTRATOR_AWS_REGION"
        ) from exc
    except _UNREACHABLE as exc:
        raise ServiceUnavailable(f"{what}: AWS does not answer: {exc}") from exc
    except ResponseParserError as exc:  # an HTML error page where XML or JSON was due
        raise ServiceUnavailable(f"{what}: AWS answered something unreadable: {exc}") from exc
    except BotoCoreError as exc:
        raise refused(f"{what}: {exc}") from exc


def pages(
    what: str,
    client: BotoClient,
    operation: str,
    key: str,
    *,
    refused: type[OrchestratorError] = ProvisioningFailed,
    **kwargs: Any,
) -> list[Any]:
    """Every item of a paginated describe call."""
    out: list[Any] = []
    paginator = client.get_paginator(operation)

    def collect() -> dict[str, Any]:
        for page in paginator.paginate(**kwargs):
            out.extend(page.get(key, []))
        return {}

    call(what, collect, refused=refused)
    return out
