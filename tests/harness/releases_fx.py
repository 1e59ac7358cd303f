"""A signed-by-content release of a one-app box type, built without any service."""

from __future__ import annotations

from schemas.boxfile import BoxSpec
from schemas.release import Release

SPEC = {"apps": {"web": {"image": "r.example.com/web:1",
                         "containers": {"web": {"ports": ["8080:8080"]}}}}}


def plain_release(n: int = 1, box_type: str = "web", **changes: object) -> Release:
    """Release `r<n>-<hash>` of `box_type`: one app, its image pinned by digest; `changes`
    set fields after the hash is taken (a forged or odd release)."""
    spec = BoxSpec.model_validate(SPEC)
    images = {"web": "r.example.com/web@sha256:" + "a" * 64}
    digest = Release.content_hash(box_type, spec, images, {}, "elb")
    return Release.model_validate({"id": f"r{n}-{digest[:8]}", "box_type": box_type,
                                   "spec": spec, "images": images, "created_at": 1.0,
                                   "hash": digest, **changes})
