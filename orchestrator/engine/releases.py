"""Make releases and keep them in Redis: immutable, fetched by id, checked by hash."""

from __future__ import annotations

import getpass
import time
from functools import lru_cache

import redis

from orchestrator.engine.redisconn import RedisClient
from orchestrator.errors import ReleaseMismatch, ServiceUnavailable
from schemas.boxfile import BoxSpec
from schemas.contract import Keys
from schemas.fleet import FleetSettings
from schemas.release import Release


def make_release(
    box_type: str,
    spec: BoxSpec,
    pinned: dict[str, str],
    fleet: FleetSettings | None = None,
    *,
    reason: str = "",
    created_by: str | None = None,
    now: float | None = None,
) -> Release:
    """A release from a checked spec and images already pinned to digests."""
    fleet = fleet or FleetSettings()
    services = {name: fleet.services[name] for name in spec.services if name in fleet.services}
    # Credentials travel by reference only: the worker resolves them on the box.
    registries = list(fleet.registries)
    digest = Release.content_hash(box_type, spec, pinned, services, fleet.load_balancer, registries)
    created = time.time() if now is None else now
    return Release(
        id=f"r{int(created * 1000)}-{digest[:8]}",
        box_type=box_type,
        spec=spec,
        images=pinned,
        services=services,
        lb_default=fleet.load_balancer,
        registries=registries,
        created_at=created,
        created_by=created_by if created_by is not None else getpass.getuser(),
        reason=reason,
        hash=digest,
    )


class ReleaseStore:
    """Releases under `release:<id>`; written once, never changed."""

    def __init__(self, client: RedisClient, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def put(self, release: Release) -> None:
        try:
            self.client.set(self.keys.release(release.id), release.model_dump_json(), nx=True)
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"cannot store release {release.id}: {exc}") from exc

    def find(self, release_id: str) -> Release | None:
        """The release if it is stored and matches its hash; None otherwise (plans, reports)."""
        try:
            return self.get(release_id)
        except ReleaseMismatch:
            return None

    def get(self, release_id: str, expected_hash: str | None = None) -> Release:
        try:
            raw = self.client.get(self.keys.release(release_id))
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"cannot read release {release_id}: {exc}") from exc
        return self.parse(raw, release_id, expected_hash)

    @staticmethod
    def parse(raw: bytes | str | None, release_id: str, expected_hash: str | None) -> Release:
        """`get`'s check of what Redis held under `release:<id>` (read by the caller)."""
        if raw is None:
            raise ReleaseMismatch(f"release {release_id} is not in Redis")
        return _checked(raw if isinstance(raw, bytes) else raw.encode(), release_id,
                        expected_hash or "")

    def current(self, box_type: str) -> Release | None:
        """The box type's current release (engine/state.py owns the pointer)."""
        from orchestrator.engine.state import RolloutStates

        rid = RolloutStates(self.client, self.keys).current(box_type)
        return self.get(rid) if rid else None


@lru_cache(maxsize=32)
def _checked(raw: bytes, release_id: str, expected_hash: str) -> Release:
    """`raw` parsed and checked against its hash once per exact bytes: every step of a chain
    reads the same release (a Release is frozen: the one object is shared)."""
    release = Release.model_validate_json(raw)
    if not release.verify() or (expected_hash and release.hash != expected_hash):
        raise ReleaseMismatch(
            f"release {release_id} does not match its hash {expected_hash or release.hash}"
        )
    return release
