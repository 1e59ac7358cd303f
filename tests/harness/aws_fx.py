"""Fixtures: a real moto server process (session) and a clean AWS account per test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from devstack.moto import DUMMY_CREDENTIALS, REGION, MotoServer
from tests.harness.common import started

__all__ = ["DUMMY_CREDENTIALS", "AwsAccount", "aws", "moto_server"]


@dataclass
class AwsAccount:
    """A clean moto account for one test: boto3 clients pointed at the moto server."""

    server: MotoServer
    region: str = REGION
    _clients: list[Any] = field(default_factory=list)

    @property
    def endpoint_url(self) -> str:
        return self.server.url

    def client(self, service_name: str) -> Any:
        client = self.server.client(service_name, self.region)
        self._clients.append(client)
        return client

    @property
    def session_kwargs(self) -> dict[str, Any]:
        """What `make_load_balancer(boto_session_kwargs=...)` needs to reach this account."""
        return {"endpoint_url": self.endpoint_url, "region_name": self.region,
                **DUMMY_CREDENTIALS}

    def close(self) -> None:
        # Closing releases the clients' pooled sockets; left open they warn (and warnings fail).
        for client in self._clients:
            client.close()
        self._clients.clear()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with started(MotoServer(tmp_path_factory.mktemp("moto"))) as server:
        yield server


@pytest.fixture
def aws(moto_server: MotoServer) -> Iterator[AwsAccount]:
    moto_server.reset()
    account = AwsAccount(moto_server)
    try:
        yield account
    finally:
        account.close()
