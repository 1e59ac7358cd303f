"""A box keeps each release it takes on its own disk, and finds it there when Redis lost it:
even when a worker's threads take the same release at once (its first preflights)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.engine.releases import ReleaseStore
from tests.harness.common import all_at_once
from tests.harness.redis_fx import ProductRedis
from tests.harness.releases_fx import plain_release
from worker.main import build_context
from worker.releases import BoxReleases
from worker.runtime_noop import NoopRuntime
from worker.settings import WorkerSettings

pytestmark = pytest.mark.integration


def test_threads_taking_one_release_at_once_each_keep_it(
    product_redis: ProductRedis, tmp_path: Path
) -> None:
    """A shared `<id>.tmp` made every thread's rename but the first fail: those boxes raised
    in preflight and never answered."""
    state = tmp_path / "state"
    settings = WorkerSettings(
        _env_file=None,  # type: ignore[call-arg]
        redis_url=product_redis.url, key_prefix=product_redis.prefix, runtime="noop",
        state_dir=str(state), log_root=str(tmp_path), insecure_unsigned=True,
    )
    ctx = build_context(settings, NoopRuntime())
    rels = [plain_release(n) for n in range(12)]
    for rel in rels:
        ReleaseStore(ctx.redis, ctx.keys).put(rel)
    try:
        for rel in rels:

            def take(_: int, rel_id: str = rel.id, digest: str = rel.hash) -> None:
                BoxReleases(ctx.redis, ctx.keys, str(state)).get(rel_id, digest)  # a task's own

            assert all_at_once(16, take, timeout=10) == []
        ctx.redis.delete(*[ctx.keys.release(r.id) for r in rels])  # Redis lost them
        box = BoxReleases(ctx.redis, ctx.keys, str(state))
        assert [box.get(r.id, r.hash) for r in rels] == rels  # whole, verified, from disk
        assert sorted(p.name for p in (state / "releases").iterdir()) == sorted(
            f"{r.id}.json" for r in rels)  # no temporary file left behind
    finally:
        ctx.redis.close()
