"""boto3 clients for one region, and the one place boto3 errors become ours."""

from __future__ import annotations

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

_CONFIG = Config(
    connect_timeout=5, read_timeout=30, retries={"max_attempts": 5, "mode": "standard"}
)
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

    def _client(self, service: str) -> BotoClient:
        if service not in self._made:
            self._made[service] = self._session.client(
                service, endpoint_url=self._endpoint_url, config=_CONFIG
            )
        return self._made[service]

    @property
    def ec2(self) -> BotoClient:
        return self._client("ec2")

    @property
    def autoscaling(self) -> BotoClient:
        return self._client("autoscaling")

    @property
    def cloudwatch(self) -> BotoClient:
        return self._client("cloudwatch")

    @property
    def iam(self) -> BotoClient:
        return self._client("iam")

    def close(self) -> None:
        # Left open, pooled sockets warn at exit (and warnings fail the tests).
        for client in self._made.values():
            client.close()
        self._made.clear()


def connect(region: str, endpoint_url: str | None = None, **session_kwargs: Any) -> AwsClients:
    """Clients with bounded calls; credentials from boto3's usual chain unless given."""
    return AwsClients(region, endpoint_url, **session_kwargs)


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


def pages(what: str, client: BotoClient, operation: str, key: str, **kwargs: Any) -> list[Any]:
    """Every item of a paginated describe call."""
    out: list[Any] = []
    paginator = client.get_paginator(operation)

    def collect() -> dict[str, Any]:
        for page in paginator.paginate(**kwargs):
            out.extend(page.get(key, []))
        return {}

    call(what, collect)
    return out
