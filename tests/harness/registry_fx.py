"""Fixtures: private plain-HTTP image registries (Debian's docker-registry) on 127.0.0.1.

`registry` serves anyone; `auth_registry` asks for a user and password (htpasswd, bcrypt).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import docker
import pytest

from devstack.registry import Registry
from tests.harness.common import TEST_LABEL, started


def _serve(registry: Registry, client: docker.DockerClient) -> Iterator[Registry]:
    with started(registry):
        yield registry
    registry.forget_local_refs(client, TEST_LABEL)


@pytest.fixture(scope="session")
def registry(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
) -> Iterator[Registry]:
    yield from _serve(Registry(tmp_path_factory.mktemp("registry")), docker_client)


@pytest.fixture(scope="session")
def auth_registry(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
) -> Iterator[Registry]:
    """A registry that serves only user `u` with a random password: `auth` holds both."""
    auth = {"username": "u", "password": f"pw-{secrets.token_hex(12)}"}
    yield from _serve(Registry(tmp_path_factory.mktemp("auth-registry"), auth=auth),
                      docker_client)
