"""Fixtures: private plain-HTTP image registries (Debian's docker-registry) on 127.0.0.1.

`registry` serves anyone; `auth_registry` asks for a user and password (htpasswd, bcrypt);
`token_registry` wants Bearer tokens (`auth: token:`): the token issuer it trusts is ours
(devstack/tokens.py, signing with a test key), but the registry verifies every token itself.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import docker
import pytest

from devstack.registry import Registry
from devstack.tokens import TokenIssuer
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


@pytest.fixture(scope="session")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
) -> Iterator[Registry]:
    """A token-auth registry; user `t` (random password, in `auth`) gets tokens for anything."""
    work = tmp_path_factory.mktemp("token-registry")
    with started(TokenIssuer(work, {"t": f"tpw-{secrets.token_hex(12)}"})) as issuer:
        yield from _serve(Registry(work, tokens=issuer), docker_client)
