"""A box keeps each release it takes on its own disk, and finds it there when Redis lost it:
even when a worker's threads take the same release at once (its first preflights)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from orchestrator.engine.releases import ReleaseStore
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
    errors: list[BaseException] = []
    try:
        for rel in rels:
            gate = threading.Barrier(16)

            def take(rel_id: str = rel.id, digest: str = rel.hash,
                     gate: threading.Barrier = gate) -> None:
                box = BoxReleases(ctx.redis, ctx.keys, str(state))  # a thread's own, as tasks
                gate.wait()
                try:
                    box.get(rel_id, digest)
                except BaseException as exc:  # noqa: BLE001 (collected, asserted below)
                    errors.append(exc)

            threads = [threading.Thread(target=take) for _ in range(16)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
        assert errors == []
        ctx.redis.delete(*[ctx.keys.release(r.id) for r in rels])  # Redis lost them
        box = BoxReleases(ctx.redis, ctx.keys, str(state))
        assert [box.get(r.id, r.hash) for r in rels] == rels  # whole, verified, from disk
        assert sorted(p.name for p in (state / "releases").iterdir()) == sorted(
            f"{r.id}.json" for r in rels)  # no temporary file left behind
    finally:
        ctx.redis.close()
