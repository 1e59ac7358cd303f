"""Fixtures: a private plain-HTTP image registry (Debian's docker-registry) on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
import requests

from tests.harness.common import TEST_LABEL, TIMINGS, free_port, need_binary, wait_for
from tests.harness.redis_fx import stop_process

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


class PushError(RuntimeError):
    """docker-py's push does not raise: the error only shows up in the stream."""


@dataclass(frozen=True)
class Registry:
    host: str  # "127.0.0.1:PORT": the engine trusts plain HTTP on 127.0.0.0/8 only
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def manifest_digest(self, repo: str, tag: str) -> str:
        with requests.Session() as session:
            response = session.head(
                f"{self.url}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_V2}, timeout=5
            )
        response.raise_for_status()
        return response.headers["Docker-Content-Digest"]

    def push(self, client: docker.DockerClient, local_tag: str, repo: str, tag: str) -> str:
        """Tag `local_tag` as HOST/repo:tag, push it, return "HOST/repo@sha256:..."."""
        remote = f"{self.host}/{repo}"
        if not client.api.tag(local_tag, remote, tag):
            raise PushError(f"could not tag {local_tag} as {remote}:{tag}")
        digest = None
        for line in client.api.push(remote, tag=tag, stream=True, decode=True):
            if "error" in line:
                raise PushError(f"push of {remote}:{tag} failed: {line['error']}")
            digest = line.get("aux", {}).get("Digest", digest)
        return f"{remote}@{digest or self.manifest_digest(repo, tag)}"


def _config(port: int, root: Path) -> str:
    # JSON is valid YAML, and this keeps the config free of indentation mistakes.
    return json.dumps(
        {
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
            "http": {"addr": f"127.0.0.1:{port}"},
        }
    )


def _answers(url: str) -> bool:
    with requests.Session() as session:
        return session.get(f"{url}/v2/", timeout=0.5).status_code == 200


def _forget_local_refs(client: docker.DockerClient, host: str) -> None:
    """Untag HOST/... references of labelled images; the images' other tags stay."""
    for image in client.images.list(filters={"label": TEST_LABEL}):
        refs = image.attrs.get("RepoTags") or []
        refs += image.attrs.get("RepoDigests") or []
        for ref in refs:
            if ref.startswith(f"{host}/"):
                with contextlib.suppress(docker.errors.NotFound):
                    client.images.remove(ref)


@pytest.fixture(scope="session")
def registry(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
) -> Iterator[Registry]:
    binary = need_binary("docker-registry")
    workdir = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = workdir / "config.yml"
    config.write_text(_config(port, workdir / "storage"))
    log_path = workdir / "registry.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    reg = Registry(f"127.0.0.1:{port}", proc, log_path)
    try:
        wait_for(
            lambda: proc.poll() is None and _answers(reg.url),
            f"docker-registry /v2/ on port {port} (log {log_path})",
            TIMINGS.service_start,
        )
        yield reg
    finally:
        stop_process(proc)
        _forget_local_refs(docker_client, reg.host)
