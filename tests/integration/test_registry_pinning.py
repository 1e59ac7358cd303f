"""Pinning through one registry client: Basic auth and Bearer tokens against real
docker-registry processes, ECR through moto; rollouts from both registries under traffic.

The token registry verifies every JWT itself (`auth: token:` with its root certificate
bundle); only the issuer it trusts is ours (devstack/tokens.py, a test key).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import docker
import pytest

from devstack.moto import DUMMY_ENV
from devstack.registry import Registry
from devstack.traffic import TrafficLoop
from orchestrator.errors import ConfigError
from orchestrator.registry import RegistryClient
from orchestrator.registry_auth import make_client
from schemas.boxfile import SecretRef
from schemas.fleet import RegistryAuth
from tests.harness.docker_fx import WebImages
from tests.harness.rollout_fx import Fleet, json_lines

# Slots and leases that outlast a loaded machine's stalls (the shared CI box runs 5 suites).
LOADED = {"ORCHESTRATOR_SLOT_TTL": "20", "ORCHESTRATOR_LEASE_TTL": "20"}


def _creds(registry: Registry) -> tuple[str, str]:
    assert registry.auth is not None
    return registry.auth["username"], registry.auth["password"]


def _push(registry: Registry, client: docker.DockerClient, images: WebImages,
          *versions: str) -> tuple[str, dict[str, str]]:
    """Each version under a repository of its own for this test: HOST/repo and its refs."""
    repo = f"orch-test-pin-{uuid.uuid4().hex[:8]}"
    refs = {v: registry.push(client, getattr(images, v), repo, v) for v in versions}
    return f"{registry.host}/{repo}", refs


@pytest.mark.parametrize("kind", ["auth_registry", "token_registry"])
def test_pin_answers_the_challenge_and_names_the_registry_when_refused(
    kind: str, request: pytest.FixtureRequest, docker_client: docker.DockerClient,
    test_images: WebImages,
) -> None:
    registry: Registry = request.getfixturevalue(kind)
    repo, refs = _push(registry, docker_client, test_images, "v1", "v2")
    user, password = _creds(registry)
    client = RegistryClient(["127."], lambda host: (user, password) if host == registry.host
                            else None)
    assert client.pin(f"{repo}:v1") == refs["v1"]
    assert client.pin(f"{repo}:v2") == refs["v2"]
    if kind == "token_registry":
        # One token per repository scope, kept until its expiry: the realm was asked once.
        assert client.token_requests == 1 and len(client.tokens) == 1

    for creds, words in ((None, "add credentials"), ((user, "wrong-pw"), "refused")):
        bad = RegistryClient(["127."], lambda _h, c=creds: c)  # type: ignore[misc]
        with pytest.raises(ConfigError) as caught:
            bad.pin(f"{repo}:v1")
        message = str(caught.value)
        assert registry.host in message and words in message, message
        assert password not in message and "wrong-pw" not in message
    with pytest.raises(ConfigError, match="not in registry"):
        client.pin(f"{repo}:nosuchtag")


def _fleet_yml(fleet: Fleet, registry: Registry, password: str) -> None:
    secret = fleet.tmp / "registry.env"
    secret.write_text(f"REGISTRY_PASSWORD={password}\n")
    user = _creds(registry)[0]
    (fleet.tmp / "fleet.yml").write_text(
        f"registries:\n  - registry: '{registry.host}'\n    username: {user}\n"
        f"    password: {{secret: 'file:{secret}#REGISTRY_PASSWORD'}}\n"
    )
    fleet.env["ORCHESTRATOR_FLEET_FILE"] = str(fleet.tmp / "fleet.yml")


@pytest.mark.parametrize("kind", ["auth_registry", "token_registry"])
def test_rollout_from_an_authenticated_registry_under_traffic(
    kind: str, request: pytest.FixtureRequest, fleet_factory: Callable[..., Fleet],
    docker_client: docker.DockerClient, test_images: WebImages,
) -> None:
    registry: Registry = request.getfixturevalue(kind)
    repo, refs = _push(registry, docker_client, test_images, "v1", "v2")
    fleet = fleet_factory(2, extra_env=LOADED)
    fleet.env.update(LOADED)
    _fleet_yml(fleet, registry, "wrong-password-1")
    fleet.write(f"{repo}:v1")
    # Wrong credentials: refused while pinning, naming the registry; no box was asked.
    refused = fleet.cli("rollout", fleet.box_type)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert registry.host in refused.stderr and "wrong-password-1" not in refused.stderr
    assert fleet.cli("history", fleet.box_type).stdout.count("succeeded") == 0

    _fleet_yml(fleet, registry, _creds(registry)[1])
    first = fleet.cli("rollout", fleet.box_type, "--reason", "v1")
    assert first.returncode == 0, first.stdout + first.stderr
    fleet.wait_all_in_service()
    with TrafficLoop(fleet.proxy.url, threads=4, rate_per_thread=40, max_seconds=60) as loop:
        loop.wait_total(40, timeout=10)
        run = fleet.cli("rollout", fleet.box_type, "--image", f"web={repo}:v2", "--json")
        loop.wait_total(loop.stats.total + 40, timeout=10)
    stats = loop.stop()
    assert run.returncode == 0, run.stdout + run.stderr
    assert stats.failed == 0, stats.summary()
    assert stats.bodies["v2\n"] > 0, stats.bodies
    summary = json_lines(run.stdout)[-1]["summary"]
    assert summary["state"] == "succeeded" and summary["ok"] == 2, summary  # type: ignore[index]
    status = json_lines(fleet.cli("status", fleet.box_type, "--json").stdout)
    assert {r["apps"]["web"]["digest"] for r in status} == {  # type: ignore[index]
        refs["v2"].split("@")[1][:19]
    }


def test_ecr_pins_through_describe_images(
    aws: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto's ECR API. Its limits: there is no registry behind it (pulls are shown against
    the Basic registry elsewhere), and the digest it computes is not the manifest's, so the
    image is put with imageDigest = the sha256 of the manifest bytes, as a registry reports."""
    import hashlib
    import json

    from tests.harness.aws_fx import AwsAccount

    assert isinstance(aws, AwsAccount)
    for name, value in DUMMY_ENV.items():
        monkeypatch.setenv(name, value)
    ecr = aws.client("ecr")
    repo = ecr.create_repository(repositoryName="team/app")["repository"]
    host = repo["repositoryUri"].split("/")[0]
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": 2, "digest": "sha256:" + "a" * 64},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": 3, "digest": "sha256:" + "b" * 64}],
    })
    digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
    ecr.put_image(repositoryName="team/app", imageManifest=manifest, imageTag="v1",
                  imageDigest=digest)

    client = make_client([], insecure=[], region=aws.region, endpoint_url=aws.endpoint_url)
    assert client.pin(f"{host}/team/app:v1") == f"{host}/team/app@{digest}"
    with pytest.raises(ConfigError) as caught:
        client.pin(f"{host}/team/app:v9")
    assert "ImageNotFound" in str(caught.value) and host.split(".")[0] in str(caught.value)

    # An ECR image reference, and a registry entry taking ECR tokens, pass `validate`.
    boxes = tmp_path / "boxes"
    boxes.mkdir()
    (boxes / "web.yml").write_text(
        f"apps:\n  web:\n    image: {host}/team/app:v1\n    containers:\n"
        "      web:\n        ports: ['8080:8080']\n"
    )
    (tmp_path / "fleet.yml").write_text(
        f"registries:\n  - registry: 'mirror.example:5000'\n    ecr: '{host}'\n"
    )
    RegistryAuth(registry="mirror.example:5000", ecr=host)
    with pytest.raises(ValueError, match="not an ECR registry host"):
        RegistryAuth(registry="x", ecr="example.com")
    with pytest.raises(ValueError, match="needs username and password"):
        RegistryAuth(registry="x", username="u")
    RegistryAuth(registry="x", username="u", password=SecretRef(secret="file:/x#K"))
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "validate", str(boxes / "web.yml"),
         "--fleet", str(tmp_path / "fleet.yml")],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_rate_limits_denials_and_silence_are_named() -> None:
    """docker-registry answers neither 429 nor a per-repository 403, and always answers: a
    local HTTP server stands in for those three registry behaviours (our client is real)."""
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from orchestrator.errors import ServiceUnavailable

    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # noqa: N802
            if "/limited/" in self.path:
                self.send_response(429)
                self.send_header("Retry-After", "30")
            else:
                self.send_response(403)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts, never answers
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        client = RegistryClient(["127."], lambda _h: ("u", "pw"), timeout=1.0)
        with pytest.raises(ServiceUnavailable, match=r"rate-limiting .* \(429\).*30s"):
            client.pin(f"{host}/limited/app:v1")
        with pytest.raises(ConfigError, match=rf"registry {host} denied .*'u' \(403\)"):
            client.pin(f"{host}/team/app:v1")
        quiet = f"127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(ServiceUnavailable, match=rf"registry {quiet} did not answer within"):
            client.pin(f"{quiet}/app:v1")
    finally:
        server.shutdown()
        server.server_close()
        silent.close()
