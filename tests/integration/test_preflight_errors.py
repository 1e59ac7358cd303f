"""A preflight that raises still answers: the coordinator reads why at once, not after its
whole timeout as "no answer"."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.engine.releases import ReleaseStore
from orchestrator.preflight import Answers
from schemas.contract import StepRequest
from tests.harness.redis_fx import ProductRedis
from tests.harness.releases_fx import plain_release
from worker.main import build_context
from worker.preflight import run_preflight
from worker.runtime_noop import NoopRuntime
from worker.settings import WorkerSettings

pytestmark = pytest.mark.integration


def test_a_preflight_that_raises_journals_its_error_as_the_answer(
    product_redis: ProductRedis, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "releases").write_text("a file where the box keeps its releases' folder")
    settings = WorkerSettings(
        _env_file=None,  # type: ignore[call-arg]
        redis_url=product_redis.url, key_prefix=product_redis.prefix, runtime="noop",
        state_dir=str(state), log_root=str(tmp_path), insecure_unsigned=True,
    )
    ctx = build_context(settings, NoopRuntime())
    try:
        rel = plain_release(1)
        ReleaseStore(ctx.redis, ctx.keys).put(rel)
        req = StepRequest(rollout_id="r-err", box_id="b1", box_type="web",
                          release_id=rel.id, release_hash=rel.hash)
        got = run_preflight(ctx, req.model_dump(mode="json"))
        assert got["ok"] is False
        assert got["problems"] == [f"preflight raised FileExistsError: [Errno 17] File exists: "
                                   f"'{state / 'releases'}'"], got
        # What the coordinator reads: the answer, woken at once (a 60 s wait that ends now).
        answers = Answers(ctx.redis, ctx.keys, "r-err", "web", ["b1"]).wait(timeout=60)
        assert answers == {"b1": got["problems"][0]}
    finally:
        ctx.redis.close()
