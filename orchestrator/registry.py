"""Pin image references to digests through the registry's HTTP API (no Docker needed)."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request

from orchestrator.errors import ConfigError, ServiceUnavailable
from schemas.refs import parse_image

ACCEPT = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


def pin(
    ref: str,
    *,
    insecure: list[str],
    credentials: tuple[str, str] | None = None,
    timeout: float = 10.0,
) -> str:
    """`host/repo:tag` -> `host/repo@sha256:...`, as the registry reports it now."""
    image = parse_image(ref)
    if image.digest:
        return image.with_digest(image.digest)
    if image.registry is None:
        raise ConfigError(
            f"image {ref!r} names no registry: write it as HOST[:PORT]/REPO[:TAG] "
            "(or pin it yourself with @sha256:...)"
        )
    scheme = "http" if any(image.registry.startswith(p) for p in insecure) else "https"
    url = f"{scheme}://{image.registry}/v2/{image.repository}/manifests/{image.tag or 'latest'}"
    req = urllib.request.Request(url, method="HEAD", headers={"Accept": ACCEPT})
    if credentials:
        token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - registry URL
            digest = resp.headers.get("Docker-Content-Digest")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise ConfigError(
                f"image {ref!r} is not in the registry (no tag {image.tag or 'latest'!r}); "
                "push it first or fix the tag"
            ) from None
        if exc.code in (401, 403):
            raise ConfigError(
                f"registry {image.registry} refused {ref!r} ({exc.code}): add its credentials "
                "to fleet.yml `registries`"
            ) from None
        raise ServiceUnavailable(
            f"registry {image.registry} answered {exc.code} for {ref}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise ServiceUnavailable(f"registry {image.registry} does not answer: {exc}") from None
    if not digest:
        raise ServiceUnavailable(f"registry {image.registry} gave no digest for {ref}")
    return image.with_digest(digest)
