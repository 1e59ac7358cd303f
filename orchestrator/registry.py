"""Pin image references to digests: the registry's HTTP API (Basic, Bearer tokens) or ECR's."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message

from orchestrator.errors import ConfigError, ServiceUnavailable
from schemas.fleet import ecr_host
from schemas.refs import ImageRef, parse_image

ACCEPT = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)
# A token is renewed this long before the expiry it was given with.
TOKEN_MARGIN = 10.0
# The token lifetime a realm that says none is assumed to give (the distribution spec's 60 s).
DEFAULT_TOKEN_LIFETIME = 60.0
_PARAM_RE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')

# (registry host) -> (user, password) or None; resolved where pinning runs.
Credentials = Callable[[str], "tuple[str, str] | None"]
# (account, region, repository, tag) -> digest, read from ECR (describe_images).
EcrDigest = Callable[[str, str, str, str], str]


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="…",service="…",scope="…"` -> ("bearer", {realm, service, scope})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m[1].lower(): (m[2] if m[2] else m[3]) for m in _PARAM_RE.finditer(rest)}
    return scheme.lower(), params


@dataclass
class Token:
    value: str
    expires: float  # time.monotonic() after which it is not used again


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes = b""


def _basic(creds: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()


@dataclass
class RegistryClient:
    """One client per pinning run: a Bearer token is kept per (registry, repository scope)
    until shortly before its expiry, so pinning many images asks the realm once per scope."""

    insecure: list[str]
    credentials: Credentials = lambda _host: None
    ecr: EcrDigest | None = None
    timeout: float = 10.0
    tokens: dict[tuple[str, str], Token] = field(default_factory=dict)
    token_requests: int = 0  # how many times a realm was asked (tests read it)

    def pin(self, ref: str) -> str:
        """`host/repo:tag` -> `host/repo@sha256:...`, as the registry reports it now."""
        image = parse_image(ref)
        if image.digest:
            return image.with_digest(image.digest)
        if image.registry is None:
            raise ConfigError(
                f"image {ref!r} names no registry: write it as HOST[:PORT]/REPO[:TAG] "
                "(or pin it yourself with @sha256:...)"
            )
        tag = image.tag or "latest"
        account_region = ecr_host(image.registry)
        if account_region is not None:
            if self.ecr is None:
                raise ConfigError(f"image {ref!r} is in ECR, but no AWS access is configured")
            account, region = account_region
            return image.with_digest(self.ecr(account, region, image.repository, tag))
        return image.with_digest(self._registry_digest(image, ref, tag))

    # --- the registry HTTP API ---------------------------------------------------------
    def _registry_digest(self, image: ImageRef, ref: str, tag: str) -> str:
        host = str(image.registry)
        scheme = "http" if any(host.startswith(p) for p in self.insecure) else "https"
        url = f"{scheme}://{host}/v2/{image.repository}/manifests/{tag}"
        scope = f"repository:{image.repository}:pull"
        reply = self._authorized("HEAD", url, host, scope, ref)
        digest = reply.headers.get("Docker-Content-Digest")
        if reply.status == 200 and not digest:
            # Some registries leave the header out of HEAD: the digest is the body's sha256.
            reply = self._authorized("GET", url, host, scope, ref)
            digest = reply.headers.get("Docker-Content-Digest") or (
                "sha256:" + hashlib.sha256(reply.body).hexdigest() if reply.body else None
            )
        if reply.status != 200:
            raise self._refusal(reply, host, ref, tag)
        if not digest:
            raise ServiceUnavailable(f"registry {host} gave no digest for {ref}")
        return digest

    def _authorized(self, method: str, url: str, host: str, scope: str, ref: str) -> Reply:
        """The request, answering the registry's challenge once: Basic, or a Bearer token."""
        cached = self.tokens.get((host, scope))
        if cached is not None and cached.expires > time.monotonic():
            reply = self._send(method, url, host, f"Bearer {cached.value}")
            if reply.status != 401:
                return reply
            del self.tokens[(host, scope)]  # revoked or expired early: ask the realm again
        else:
            reply = self._send(method, url, host, None)
        if reply.status != 401:
            return reply
        scheme, params = parse_challenge(reply.headers.get("WWW-Authenticate", ""))
        creds = self.credentials(host)
        if scheme == "basic":
            if creds is None:
                return reply
            return self._send(method, url, host, _basic(creds))
        if scheme == "bearer" and params.get("realm"):
            token = self._token(host, params, scope, creds, ref)
            return self._send(method, url, host, f"Bearer {token}")
        raise ServiceUnavailable(
            f"registry {host} asks for authentication this client does not speak: "
            f"{scheme or 'no WWW-Authenticate header'}"
        )

    def _token(
        self,
        host: str,
        challenge: dict[str, str],
        scope: str,
        creds: tuple[str, str] | None,
        ref: str,
    ) -> str:
        """A token from the challenge's realm for `scope` (anonymous without credentials)."""
        query = {"scope": challenge.get("scope") or scope}
        if challenge.get("service"):
            query["service"] = challenge["service"]
        url = challenge["realm"] + "?" + urllib.parse.urlencode(query)
        who = f"user {creds[0]!r}" if creds else "no credentials"
        self.token_requests += 1
        reply = self._send("GET", url, host, _basic(creds) if creds else None, what="token")
        if reply.status in (401, 403):
            raise ConfigError(
                f"registry {host}: its token service refused {who} for {ref} "
                f"({reply.status}); check the password reference of {host} in fleet.yml "
                "`registries`" + ("" if creds else ", or add an entry for it")
            )
        if reply.status != 200:
            raise ServiceUnavailable(
                f"registry {host}: its token service {challenge['realm']} answered "
                f"{reply.status}"
            )
        try:
            doc = json.loads(reply.body)
            value = str(doc.get("token") or doc["access_token"])
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ServiceUnavailable(
                f"registry {host}: its token service answered without a token"
            ) from None
        lifetime = float(doc.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
        self.tokens[(host, query["scope"])] = Token(
            value, time.monotonic() + max(0.0, lifetime - TOKEN_MARGIN)
        )
        return value

    def _send(
        self, method: str, url: str, host: str, authorization: str | None, what: str = "manifest"
    ) -> Reply:
        headers = {"Accept": ACCEPT} if what == "manifest" else {}
        if authorization:
            headers["Authorization"] = authorization
        req = urllib.request.Request(url, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                return Reply(resp.status, resp.headers, resp.read() if method == "GET" else b"")
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, exc.headers, b"")
        except TimeoutError:
            raise ServiceUnavailable(
                f"registry {host} did not answer within {self.timeout:.0f}s ({what} request)"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ServiceUnavailable(f"registry {host} does not answer: {reason}") from None

    def _refusal(self, reply: Reply, host: str, ref: str, tag: str) -> Exception:
        creds = self.credentials(host)
        who = f"as user {creds[0]!r}" if creds else "without credentials"
        if reply.status == 404:
            return ConfigError(
                f"image {ref!r} is not in registry {host} (no tag {tag!r}); push it first "
                "or fix the tag"
            )
        if reply.status == 401:
            fix = (
                f"check the password reference of {host} in fleet.yml `registries`"
                if creds
                else f"add credentials for {host} to fleet.yml `registries`"
            )
            return ConfigError(f"registry {host} refused {ref!r} {who} (401): {fix}")
        if reply.status == 403:
            return ConfigError(
                f"registry {host} denied {ref!r} {who} (403): that user may not pull this "
                "repository; grant it pull access or use another user"
            )
        if reply.status == 429:
            after = reply.headers.get("Retry-After")
            wait = f" (it asks to wait {after}s)" if after else ""
            return ServiceUnavailable(
                f"registry {host} is rate-limiting {who} (429){wait}; try again later"
            )
        return ServiceUnavailable(f"registry {host} answered {reply.status} for {ref}")

