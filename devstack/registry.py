"""A private plain-HTTP image registry (Debian's docker-registry) on 127.0.0.1, maybe with auth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import docker

from devstack.engine import forget_registry
from devstack.net import LOCALHOST, Reply, free_port, http
from devstack.process import Service, ServiceError, find_binary
from devstack.tokens import ISSUER, SERVICE, TokenIssuer

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


class PushError(ServiceError):
    """docker-py's push does not raise: the error only shows up in its stream."""


def htpasswd_line(username: str, password: str) -> str:
    """One htpasswd line with a bcrypt hash, the only kind docker-registry accepts."""
    import bcrypt  # the dev extra; only a registry with auth needs it

    # Cost 5 (the registry accepts 4 and up): every request checks it, keep it cheap.
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    return f"{username}:{hashed}\n"


class Registry(Service):
    """`docker-registry serve CONFIG` with a config of its own (Debian's packaged one listens
    on :5000 and points htpasswd at a bad path). The engine trusts plain HTTP on 127/8 only.
    `auth` {"username", "password"}: htpasswd (bcrypt) auth; None: it serves anyone.
    `tokens`: token auth instead (`auth: token:`): clients get a JWT from that issuer's realm
    (ours), and the registry verifies it itself against the issuer's certificate."""

    def __init__(self, workdir: Path, name: str = "registry", *,
                 auth: dict[str, str] | None = None, port: int | None = None,
                 tokens: TokenIssuer | None = None, detach: bool = False) -> None:
        super().__init__(workdir, name, detach=detach)
        self.port = port or free_port()
        self.tokens = tokens
        if tokens is not None and auth is None:
            user, password = next(iter(tokens.users.items()))
            auth = {"username": user, "password": password}
        self.auth = auth
        self.config_path = self.workdir / f"{name}.yml"
        self.storage = self.workdir / f"{name}-storage"

    @property
    def host(self) -> str:
        return f"{LOCALHOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def _basic(self) -> tuple[str, str] | None:
        return (self.auth["username"], self.auth["password"]) if self.auth else None

    def _get(self, path: str, scope: str, method: str = "GET",
             headers: dict[str, str] | None = None) -> Reply:
        """A request with what this registry asks for: Basic, a token for `scope`, nothing."""
        if self.tokens is None:
            return http(f"{self.url}{path}", method=method, auth=self._basic,
                        headers=headers, timeout=5)
        user = self.auth["username"] if self.auth else None
        bearer = {"Authorization": f"Bearer {self.tokens.token(scope, user)}"}
        return http(f"{self.url}{path}", method=method, headers={**(headers or {}), **bearer},
                    timeout=5)

    def prepare(self) -> None:
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)},
                        "delete": {"enabled": True}},
            "http": {"addr": self.host},
        }
        if self.tokens is not None:
            config["auth"] = {"token": {"realm": self.tokens.realm, "service": SERVICE,
                                        "issuer": ISSUER,
                                        "rootcertbundle": str(self.tokens.cert_path)}}
        elif self.auth is not None:
            # Written before the start: without the file the registry makes up a user.
            htpasswd = self.workdir / f"{self.name}.htpasswd"
            htpasswd.write_text(htpasswd_line(self.auth["username"], self.auth["password"]))
            config["auth"] = {"htpasswd": {"realm": "devstack", "path": str(htpasswd)}}
        self.config_path.write_text(json.dumps(config))  # JSON is YAML, without indent traps

    def argv(self) -> list[str]:
        return [find_binary("docker-registry"), "serve", str(self.config_path)]

    def ready(self) -> bool:
        return self._get("/v2/", "").status == 200

    def manifest_digest(self, repo: str, tag: str) -> str:
        # Without this Accept the registry answers 400 (it tries to convert to schema 1).
        reply = self._get(f"/v2/{repo}/manifests/{tag}", f"repository:{repo}:pull",
                          method="HEAD", headers={"Accept": MANIFEST_V2})
        if reply.status != 200:
            raise PushError(f"HEAD {repo}:{tag} on {self.host}: HTTP {reply.status}")
        return reply.headers["Docker-Content-Digest"]

    def push(self, client: docker.DockerClient, local_tag: str, repo: str, tag: str) -> str:
        """Tag `local_tag` as HOST/repo:tag, push it, return "HOST/repo@sha256:..."."""
        remote = f"{self.host}/{repo}"
        if not client.api.tag(local_tag, remote, tag):
            raise PushError(f"could not tag {local_tag} as {remote}:{tag}")
        digest = None
        for line in client.api.push(remote, tag=tag, stream=True, decode=True,
                                    auth_config=self.auth):
            if "error" in line:
                raise PushError(f"push of {remote}:{tag} failed: {line['error']}")
            digest = line.get("aux", {}).get("Digest", digest)
        return f"{remote}@{digest or self.manifest_digest(repo, tag)}"

    def forget_local_refs(self, client: docker.DockerClient, label: str) -> None:
        """Untag this registry's references to images labelled `label`, once it is gone."""
        forget_registry(client, label, self.host)
