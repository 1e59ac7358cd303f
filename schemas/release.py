"""An immutable release: the normalised box.yml with every image pinned, and its hashes."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.boxfile import AppSpec, BoxSpec, LbKind
from schemas.fleet import RegistryAuth, ServiceSpec
from schemas.trust import Sig


def _digest(data: Any) -> str:
    blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def app_spec_hash(app: AppSpec, pinned_image: str) -> str:
    """What makes an app's containers what they are; an unchanged hash means no swap.

    The load balancer is left out on purpose: moving an app to another LB needs no restart.
    Secrets are hashed by reference here; their values are compared on the box (a keyed
    hash per container, worker/secrethash.py), so a rotated value swaps the app too.
    """
    return _digest({"image": pinned_image, "containers": app.model_dump(mode="json")["containers"]})


def service_spec_hash(service: ServiceSpec) -> str:
    return _digest(service.model_dump(mode="json"))


class Release(BaseModel):
    """Stored once under `release:<id>`; tasks carry its id and hash, never its content."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="r<unix-ms>-<hash prefix>")
    box_type: str
    spec: BoxSpec
    images: dict[str, str] = Field(description="app -> image pinned by digest (name@sha256:...)")
    services: dict[str, ServiceSpec] = Field(
        default_factory=dict, description="The catalog entries this box type names"
    )
    lb_default: LbKind = "elb"
    registries: list[RegistryAuth] = Field(
        default_factory=list,
        description="Registry credentials by reference (never a value); the box resolves them",
    )
    created_at: float
    created_by: str = ""
    reason: str = ""
    hash: str = Field(
        description="sha256 of the content (spec, images, services, lb default, registries)"
    )
    signature: Sig | None = Field(
        None, description="The coordinator's Ed25519 signature of everything above"
    )

    @staticmethod
    def content_hash(
        box_type: str,
        spec: BoxSpec,
        images: dict[str, str],
        services: dict[str, ServiceSpec],
        lb_default: str,
        registries: list[RegistryAuth] | None = None,
    ) -> str:
        content: dict[str, Any] = {
            "box_type": box_type,
            "spec": spec.model_dump(mode="json"),
            "images": images,
            "services": {k: v.model_dump(mode="json") for k, v in services.items()},
            "lb_default": lb_default,
        }
        # Only when there are some: releases made before this field keep their hash.
        if registries:
            # exclude_none: entries written before `ecr` existed keep their hash.
            content["registries"] = [
                r.model_dump(mode="json", exclude_none=True) for r in registries
            ]
        return _digest(content)

    def verify(self) -> bool:
        return self.hash == self.content_hash(
            self.box_type, self.spec, self.images, self.services, self.lb_default, self.registries
        )

    def image_of(self, app: str) -> str:
        return self.images.get(app, self.spec.apps[app].image)

    def spec_hash(self, app: str) -> str:
        return app_spec_hash(self.spec.apps[app], self.image_of(app))

    def lb_kind(self, app: str) -> str:
        spec = self.spec.apps[app]
        if spec.elb is None:
            return "none"
        return spec.lb_kind or self.lb_default
