"""Fixtures: private plain-HTTP image registries (Debian's docker-registry) on 127.0.0.1.

`registry` serves anyone; `auth_registry` asks for a user and password (htpasswd, bcrypt).
"""

from __future__ import annotations

import contextlib
import json
import secrets
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
    # {"username", "password"} of a registry that asks for them; None when it serves anyone.
    auth: dict[str, str] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def manifest_digest(self, repo: str, tag: str) -> str:
        with requests.Session() as session:
            if self.auth:
                session.auth = (self.auth["username"], self.auth["password"])
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
        stream = client.api.push(
            remote, tag=tag, stream=True, decode=True, auth_config=self.auth
        )
        for line in stream:
            if "error" in line:
                raise PushError(f"push of {remote}:{tag} failed: {line['error']}")
            digest = line.get("aux", {}).get("Digest", digest)
        return f"{remote}@{digest or self.manifest_digest(repo, tag)}"


def _config(port: int, root: Path, htpasswd: Path | None = None) -> str:
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "test", "path": str(htpasswd)}}
    # JSON is valid YAML, and this keeps the config free of indentation mistakes.
    return json.dumps(config)


def _answers(url: str, auth: dict[str, str] | None = None) -> bool:
    with requests.Session() as session:
        if auth:
            session.auth = (auth["username"], auth["password"])
        return session.get(f"{url}/v2/", timeout=0.5).status_code == 200


def htpasswd_line(username: str, password: str) -> str:
    """One htpasswd line with a bcrypt hash, the only kind docker-registry accepts."""
    import bcrypt  # the dev extra; only this fixture needs it

    # Cost 5 (the minimum the registry accepts is 4): every request checks it, keep it cheap.
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    return f"{username}:{hashed}\n"


def _forget_local_refs(client: docker.DockerClient, host: str) -> None:
    """Untag HOST/... references of labelled images; the images' other tags stay."""
    for image in client.images.list(filters={"label": TEST_LABEL}):
        refs = image.attrs.get("RepoTags") or []
        refs += image.attrs.get("RepoDigests") or []
        for ref in refs:
            if ref.startswith(f"{host}/"):
                with contextlib.suppress(docker.errors.NotFound):
                    client.images.remove(ref)


@contextlib.contextmanager
def _serve(
    workdir: Path, client: docker.DockerClient, auth: dict[str, str] | None = None
) -> Iterator[Registry]:
    binary = need_binary("docker-registry")
    port = free_port()
    htpasswd = None
    if auth is not None:
        htpasswd = workdir / "htpasswd"
        htpasswd.write_text(htpasswd_line(auth["username"], auth["password"]))
    config = workdir / "config.yml"
    config.write_text(_config(port, workdir / "storage", htpasswd))
    log_path = workdir / "registry.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    reg = Registry(f"127.0.0.1:{port}", proc, log_path, auth)
    try:
        wait_for(
            lambda: proc.poll() is None and _answers(reg.url, auth),
            f"docker-registry /v2/ on port {port} (log {log_path})",
            TIMINGS.service_start,
        )
        yield reg
    finally:
        stop_process(proc)
        _forget_local_refs(client, reg.host)


@pytest.fixture(scope="session")
def registry(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
) -> Iterator[Registry]:
    with _serve(tmp_path_factory.mktemp("registry"), docker_client) as reg:
        yield reg


@pytest.fixture(scope="session")
def auth_registry(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient
) -> Iterator[Registry]:
    """A registry that serves only user `u` with a random password: `auth` holds both."""
    auth = {"username": "u", "password": f"pw-{secrets.token_hex(12)}"}
    with _serve(tmp_path_factory.mktemp("auth-registry"), docker_client, auth) as reg:
        yield reg
