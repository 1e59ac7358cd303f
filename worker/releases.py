"""The releases this box runs, kept on its own disk too: a restore after Redis lost them."""

from __future__ import annotations

from pathlib import Path

from orchestrator.engine.redisconn import RedisClient
from orchestrator.engine.releases import ReleaseStore
from orchestrator.errors import ReleaseMismatch, ServiceUnavailable
from schemas.contract import Keys
from schemas.release import Release
from worker.atomicfile import replace_file


class BoxReleases(ReleaseStore):
    """Redis first; what it lost (or can't say now) from `<state_dir>/releases/`, verified."""

    def __init__(self, client: RedisClient, keys: Keys, state_dir: str) -> None:
        super().__init__(client, keys)
        self.folder = Path(state_dir) / "releases"

    def get(self, release_id: str, expected_hash: str | None = None) -> Release:
        try:
            release = super().get(release_id, expected_hash)
        except (ReleaseMismatch, ServiceUnavailable) as exc:
            kept = self._kept(release_id)
            if kept is None or (expected_hash and kept.hash != expected_hash):
                raise exc from None
            return kept
        self._keep(release)
        return release

    def _path(self, release_id: str) -> Path:
        return self.folder / f"{Path(release_id).name}.json"

    def _kept(self, release_id: str) -> Release | None:
        try:
            release = Release.model_validate_json(self._path(release_id).read_bytes())
        except (OSError, ValueError):
            return None
        return release if release.verify() else None

    def _keep(self, release: Release) -> None:
        path = self._path(release.id)
        if path.exists():
            return
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        # A worker's first preflights of a release keep it on several threads at once.
        replace_file(path, release.model_dump_json().encode())
