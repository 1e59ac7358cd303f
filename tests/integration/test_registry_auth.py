"""Registry credentials by reference, end to end: fleet settings -> release -> box -> engine.

A second docker-registry asks for a user and password (htpasswd, bcrypt). The release names
the password only as `file:<env file>#REGISTRY_PASSWORD`; the box worker resolves it, pulls,
and the value shows up nowhere: not in Redis, not in the worker's log, not in a reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from devstack.registry import Registry
from devstack.workers import BoxWorker, dev_keys
from schemas.boxfile import SecretRef
from schemas.contract import Label, Outcome, StepRequest
from schemas.fleet import FleetSettings, RegistryAuth
from tests.harness.box_fx import BoxWorkers, DeployKit, untag_local, wait_http
from tests.harness.docker_fx import WebImages
from tests.harness.redis_fx import ProductRedis

WEB = """
apps:
  web:
    image: {repo}
    containers:
      web:
        ports: ["18080:8080"]
        health: {{http: /health, interval: 0.1, timeout: 1, retries: 20}}
"""
PULL, SWAP = "deploy.pull:-", "deploy.swap:web"


@dataclass(frozen=True)
class AuthImage:
    registry: Registry
    ref: str  # HOST/orch-test-auth-<nonce>@sha256:...
    repo: str  # HOST/orch-test-auth-<nonce>

    @property
    def password(self) -> str:
        assert self.registry.auth is not None
        return self.registry.auth["password"]

    def forget_locally(self, client: docker.DockerClient) -> None:
        """Remove HOST/repo@digest and HOST/repo:v1; the image stays as orch-test/web:v1."""
        untag_local(client, f"{self.repo}:v1")
        untag_local(client, self.ref)
        assert not any(
            t.startswith(f"{self.registry.host}/")
            for i in client.images.list(name=self.repo)
            for t in (i.attrs.get("RepoTags") or []) + (i.attrs.get("RepoDigests") or [])
        )


@pytest.fixture
def auth_image(
    docker_client: docker.DockerClient, test_images: WebImages, auth_registry: Registry
) -> AuthImage:
    """The v1 image in the auth registry, under a repository of its own for each test.

    The engine keeps every manifest it pulled by digest and serves a later pull of the same
    repository@digest from that cache without asking the registry, credentials or not: only a
    repository this engine never pulled from shows what the registry itself says.
    """
    repo = f"orch-test-auth-{uuid.uuid4().hex[:8]}"
    ref = auth_registry.push(docker_client, test_images.v1, repo, "v1")
    return AuthImage(auth_registry, ref, f"{auth_registry.host}/{repo}")


@pytest.fixture
def env_file(tmp_path: Path, auth_image: AuthImage) -> Path:
    path = tmp_path / "registry.env"
    path.write_text(f"# registry credentials\nOTHER=x\nREGISTRY_PASSWORD={auth_image.password}\n")
    return path


def fleet_with(
    auth_image: AuthImage, env_file: Path, key: str = "REGISTRY_PASSWORD"
) -> FleetSettings:
    return FleetSettings(
        registries=[
            RegistryAuth(
                registry=auth_image.registry.host,
                username="u",
                password=SecretRef(secret=f"file:{env_file}#{key}"),
            )
        ]
    )


def box_containers(client: docker.DockerClient, box_id: str) -> list[str]:
    found = client.containers.list(all=True, filters={"label": f"{Label.BOX}={box_id}"})
    return sorted(f"{c.name}:{c.status}:{c.labels.get(Label.RELEASE, '')}" for c in found)


def product_values(product: ProductRedis) -> Iterator[str]:
    """Every key and value under the product prefix, whatever the key's type."""
    client = product.client
    for key in client.scan_iter(match=f"{product.prefix}*", count=500):
        yield key
        kind = client.type(key)
        if kind == "string":
            yield client.get(key) or ""
        elif kind == "hash":
            for field, value in client.hgetall(key).items():
                yield field
                yield value
        elif kind == "list":
            yield from client.lrange(key, 0, -1)
        elif kind == "set":
            yield from client.smembers(key)
        elif kind == "zset":
            yield from client.zrange(key, 0, -1)
        elif kind == "stream":
            for _id, fields in client.xrange(key):
                for field, value in fields.items():
                    yield field
                    yield value
        elif kind != "none":  # none: expired since SCAN listed it (e.g. a `reaper:` turn)
            raise AssertionError(f"product key {key} of unknown type {kind}")


def assert_password_nowhere(
    product: ProductRedis, password: str, workers: list[BoxWorker]
) -> int:
    values = list(product_values(product))
    assert values, "nothing under the product prefix: the scan looked in the wrong place"
    leaks = [v[:80] for v in values if password in v]
    assert not leaks, f"the registry password is stored in Redis: {leaks}"
    for worker in workers:
        assert password not in worker.log(), f"the registry password is in {worker.log_path}"
    return len(values)


def test_pull_with_credentials_by_reference(
    deploy: DeployKit, box_workers: BoxWorkers, auth_image: AuthImage, env_file: Path,
    docker_client: docker.DockerClient, product_redis: ProductRedis,
) -> None:
    (box,) = box_workers.start(1)
    release = deploy.release(
        WEB, {"web": auth_image.ref}, fleet=fleet_with(auth_image, env_file), repo=auth_image.repo
    )
    # The release carries the reference, never the value, and its hash covers it.
    assert [r.password.secret for r in release.registries] == [f"file:{env_file}#REGISTRY_PASSWORD"]
    assert auth_image.password not in release.model_dump_json() and release.verify()
    auth_image.forget_locally(docker_client)

    out = deploy.wait_end(deploy.send(deploy.request(release, box.box_id)))
    assert out[PULL].outcome == Outcome.OK, out[PULL]
    assert out[PULL].reason == "pulled 1 image(s)"
    assert out[SWAP].outcome == Outcome.OK, out[SWAP]
    wait_http(f"http://{box.bind_ip}:18080/", "v1")
    pulled = docker_client.images.get(auth_image.ref)
    assert pulled.id == docker_client.images.get(WebImages().v1).id

    assert_password_nowhere(product_redis, auth_image.password, [box])


def test_pull_without_credentials_fails_clearly_and_runs_nothing(
    deploy: DeployKit, box_workers: BoxWorkers, auth_image: AuthImage, env_file: Path,
    docker_client: docker.DockerClient, product_redis: ProductRedis,
) -> None:
    (box,) = box_workers.start(1)
    good = deploy.release(
        WEB, {"web": auth_image.ref}, fleet=fleet_with(auth_image, env_file), repo=auth_image.repo
    )
    bare = deploy.release(WEB, {"web": auth_image.ref}, repo=auth_image.repo)
    assert bare.registries == [] and bare.hash != good.hash  # the credentials are content
    auth_image.forget_locally(docker_client)

    out = deploy.wait_end(deploy.send(deploy.request(bare, box.box_id)))
    pull = out[PULL]
    assert pull.outcome == Outcome.FAILED, pull
    assert auth_image.ref in pull.reason and "authentication failed" in pull.reason, pull.reason
    assert "the release lists none" in pull.reason, pull.reason
    assert out[SWAP].outcome == Outcome.SKIPPED, out[SWAP]
    assert box_containers(docker_client, box.box_id) == []  # nothing of that release runs
    of_release = {"label": f"{Label.RELEASE}={bare.id}"}
    assert docker_client.containers.list(all=True, filters=of_release) == []
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(auth_image.ref)

    # The same box, with the credentials: the refusal was about them, nothing else.
    ok = deploy.wait_end(deploy.send(deploy.request(good, box.box_id)))
    assert ok[PULL].outcome == Outcome.OK, ok[PULL]
    assert ok[SWAP].outcome == Outcome.OK, ok[SWAP]
    wait_http(f"http://{box.bind_ip}:18080/", "v1")
    assert [c.split(":")[-1] for c in box_containers(docker_client, box.box_id)] == [good.id]

    assert_password_nowhere(product_redis, auth_image.password, [box])


def test_wrong_password_names_the_user_not_the_password(
    deploy: DeployKit, box_workers: BoxWorkers, auth_image: AuthImage, tmp_path: Path,
    docker_client: docker.DockerClient, product_redis: ProductRedis,
) -> None:
    (box,) = box_workers.start(1)
    wrong = tmp_path / "wrong.env"
    wrong_value = "not-the-password-4711"
    wrong.write_text(f"REGISTRY_PASSWORD={wrong_value}\n")
    release = deploy.release(
        WEB, {"web": auth_image.ref}, fleet=fleet_with(auth_image, wrong), repo=auth_image.repo
    )
    missing = deploy.release(
        WEB, {"web": auth_image.ref}, fleet=fleet_with(auth_image, wrong, key="NO_SUCH_KEY"),
        repo=auth_image.repo,
    )
    auth_image.forget_locally(docker_client)

    out = deploy.wait_end(deploy.send(deploy.request(release, box.box_id)))
    pull = out[PULL]
    assert pull.outcome == Outcome.FAILED, pull
    assert "authentication failed" in pull.reason and "as user 'u'" in pull.reason, pull.reason
    assert auth_image.ref in pull.reason and wrong_value not in pull.reason
    assert box_containers(docker_client, box.box_id) == []

    # A reference that names no value: the reason says which reference, not a value.
    out = deploy.wait_end(deploy.send(deploy.request(missing, box.box_id)))
    pull = out[PULL]
    assert pull.outcome == Outcome.FAILED, pull
    assert "SecretUnavailable" in pull.reason and "NO_SUCH_KEY" in pull.reason, pull.reason
    assert auth_image.registry.host in pull.reason
    assert box_containers(docker_client, box.box_id) == []

    for value in (wrong_value, auth_image.password):
        assert_password_nowhere(product_redis, value, [box])


def test_preflight_pulls_with_the_release_credentials(
    deploy: DeployKit, box_workers: BoxWorkers, auth_image: AuthImage, env_file: Path,
    docker_client: docker.DockerClient, product_redis: ProductRedis,
) -> None:
    from worker.main import build_context
    from worker.preflight import run_preflight
    from worker.runtime import DockerRuntime
    from worker.settings import WorkerSettings

    good = deploy.release(
        WEB, {"web": auth_image.ref}, fleet=fleet_with(auth_image, env_file), repo=auth_image.repo
    )
    bare = deploy.release(WEB, {"web": auth_image.ref}, repo=auth_image.repo)
    settings = WorkerSettings(
        _env_file=None,  # type: ignore[call-arg]
        redis_url=product_redis.url,
        key_prefix=product_redis.prefix,
        log_root=str(box_workers.tmp / "preflight-logs"),
        trusted_keys=dev_keys()[1],
    )
    ctx = build_context(settings, DockerRuntime())
    try:
        def ask(release_id: str, release_hash: str) -> dict[str, object]:
            req = StepRequest(
                rollout_id="preflight", box_id="pf-box", box_type=deploy.box_type,
                release_id=release_id, release_hash=release_hash,
                changed_apps=["web"], lb_apps=[],
            )
            deploy.sign(req, deploy.releases.get(release_id))
            return run_preflight(ctx, req.model_dump(mode="json"))

        auth_image.forget_locally(docker_client)
        refused = ask(bare.id, bare.hash)
        assert refused["ok"] is False
        (problem,) = refused["problems"]  # type: ignore[misc]
        assert "RegistryAuthFailed" in problem and auth_image.ref in problem, problem

        answer = ask(good.id, good.hash)
        assert answer["ok"] is True, answer
        assert docker_client.images.get(auth_image.ref)
        assert auth_image.password not in repr(refused) + repr(answer)
    finally:
        ctx.redis.close()
