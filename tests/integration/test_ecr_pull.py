"""ECR credentials on the box: a token from ecr:GetAuthorizationToken (moto), pulled with.

moto's limits, stated: moto has ECR's API but no registry behind it, so the pull goes to a
real Basic-auth docker-registry that takes the token moto hands out (user AWS); and moto's
token never changes and says it expired in 2015, so refresh cannot be proven here, only
that an already-expired token is used for the pull that asked and is not fetched in a loop.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from devstack.moto import DUMMY_ENV
from devstack.registry import Registry
from orchestrator.engine.ecr import EcrTokens
from orchestrator.registry_auth import make_client
from schemas.contract import Outcome
from schemas.fleet import FleetSettings, RegistryAuth
from tests.harness.aws_fx import AwsAccount
from tests.harness.box_fx import BoxWorkers, DeployKit, untag_local
from tests.harness.common import TEST_LABEL, started
from tests.harness.docker_fx import WebImages
from tests.harness.redis_fx import ProductRedis
from tests.integration.test_registry_auth import WEB, assert_password_nowhere

PULL, SWAP = "deploy.pull:-", "deploy.swap:web"


@pytest.fixture
def ecr_token(aws: AwsAccount, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """(ECR registry host, the password moto's token decodes to)."""
    for name, value in DUMMY_ENV.items():
        monkeypatch.setenv(name, value)
    data = aws.client("ecr").get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    assert user == "AWS"
    return data["proxyEndpoint"].removeprefix("https://"), password


@pytest.fixture
def token_taking_registry(
    tmp_path: Path, ecr_token: tuple[str, str], docker_client: docker.DockerClient
) -> Iterator[Registry]:
    registry = Registry(tmp_path / "ecr-mirror", auth={"username": "AWS",
                                                       "password": ecr_token[1]})
    with started(registry):
        yield registry
    registry.forget_local_refs(docker_client, TEST_LABEL)


def test_box_pulls_with_an_ecr_token_refetched_not_looped(
    aws: AwsAccount, ecr_token: tuple[str, str], token_taking_registry: Registry,
    deploy: DeployKit, box_workers: BoxWorkers, docker_client: docker.DockerClient,
    test_images: WebImages, product_redis: ProductRedis,
) -> None:
    ecr_host, password = ecr_token
    registry = token_taking_registry
    repo = f"orch-test-ecr-{uuid.uuid4().hex[:8]}"
    ref = registry.push(docker_client, test_images.v1, repo, "v1")
    fleet = FleetSettings(registries=[RegistryAuth(registry=registry.host, ecr=ecr_host)])

    # Pinning (the coordinator's side) takes the same ECR token for that registry.
    client = make_client(fleet.registries, insecure=["127."], region=aws.region,
                         endpoint_url=aws.endpoint_url)
    assert client.pin(f"{registry.host}/{repo}:v1") == ref

    (box,) = box_workers.start(1, extra_env={
        "ORCHESTRATOR_AWS_ENDPOINT_URL": aws.endpoint_url,
        "ORCHESTRATOR_AWS_REGION": aws.region, **DUMMY_ENV})
    release = deploy.release(WEB, {"web": ref}, fleet=fleet, repo=f"{registry.host}/{repo}")
    assert password not in release.model_dump_json()
    untag_local(docker_client, f"{registry.host}/{repo}:v1")
    untag_local(docker_client, ref)
    out = deploy.wait_end(deploy.send(deploy.request(release, box.box_id)))
    assert out[PULL].outcome == Outcome.OK and out[PULL].reason == "pulled 1 image(s)", out[PULL]
    assert out[SWAP].outcome == Outcome.OK, out[SWAP]
    assert docker_client.images.get(ref)
    assert_password_nowhere(product_redis, password, [box])

    # moto's token expired in 2015: each pull that needs it fetches once; none is kept.
    tokens = EcrTokens(aws.endpoint_url)
    account, region = ecr_host.split(".")[0], aws.region
    first = tokens.credentials(account, region)
    second = tokens.credentials(account, region)
    assert first == second == {"username": "AWS", "password": password}
    assert tokens.fetches == 2
    # Seen from a clock before 2015, the same token is fresh: it is kept and not fetched again.
    early = EcrTokens(aws.endpoint_url, now=lambda: 0.0)
    assert early.credentials(account, region) == early.credentials(account, region) == first
    assert early.fetches == 1
