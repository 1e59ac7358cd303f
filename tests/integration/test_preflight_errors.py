"""A box's answer to the coordinator (preflight, the migrate task, `plan`'s secrets query) is
journaled even when its code raises: the coordinator reads why at once, not after its whole
timeout as "no answer"."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.engine.journal import Journal
from orchestrator.engine.releases import ReleaseStore
from orchestrator.preflight import Answers
from schemas.contract import Label, StepRequest, TaskName
from schemas.release import Release
from tests.harness.redis_fx import ProductRedis
from tests.harness.releases_fx import plain_release
from worker.facts import RunRequest
from worker.main import build_context
from worker.migrate import run_migration
from worker.preflight import run_preflight
from worker.query import run_secrets_query
from worker.runtime_noop import NoopRuntime
from worker.settings import WorkerSettings
from worker.steps.protocol import StepContext

pytestmark = pytest.mark.integration


@pytest.fixture
def broken(product_redis: ProductRedis, tmp_path: Path) -> Iterator[tuple[StepContext, Release]]:
    """A box whose releases' folder is a file (an OSError no code path expects), with a
    stored release and a container of it running."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "releases").write_text("a file where the box keeps its releases' folder")
    settings = WorkerSettings(
        _env_file=None,  # type: ignore[call-arg]
        redis_url=product_redis.url, key_prefix=product_redis.prefix, runtime="noop",
        state_dir=str(state), log_root=str(tmp_path), insecure_unsigned=True,
    )
    runtime = NoopRuntime()
    ctx = build_context(settings, runtime)
    rel = plain_release(1)
    ReleaseStore(ctx.redis, ctx.keys).put(rel)
    runtime.run(RunRequest(name="web", image=rel.images["web"], labels={
        Label.BOX: "b1", Label.ROLE: "app", Label.APP: "web", Label.RELEASE: rel.id}))
    try:
        yield ctx, rel
    finally:
        ctx.redis.close()


def request(rollout_id: str, rel: Release) -> dict[str, object]:
    return StepRequest(rollout_id=rollout_id, box_id="b1", box_type="web", release_id=rel.id,
                       release_hash=rel.hash).model_dump(mode="json")


def raised(task: str, state: Path) -> str:
    return f"{task} raised FileExistsError: [Errno 17] File exists: '{state / 'releases'}'"


def test_a_preflight_that_raises_journals_its_error_as_the_answer(
    broken: tuple[StepContext, Release]
) -> None:
    ctx, rel = broken
    got = run_preflight(ctx, request("r-err", rel))
    assert got["ok"] is False
    assert got["problems"] == [raised("preflight", Path(ctx.settings.state_dir))], got
    # What the coordinator reads: the answer, woken at once (a 60 s wait that ends now).
    answers = Answers(ctx.redis, ctx.keys, "r-err", "web", ["b1"]).wait(timeout=60)
    assert answers == {"b1": got["problems"][0]}


def test_a_migrate_task_and_a_secrets_query_that_raise_journal_their_error(
    broken: tuple[StepContext, Release]
) -> None:
    ctx, rel = broken
    state = Path(ctx.settings.state_dir)
    journal = Journal(ctx.redis, ctx.keys)
    assert run_migration(ctx, request("r-mig", rel)) == {
        "ok": False, "reason": raised("migrate", state)}
    entry = journal.get("r-mig", "b1", TaskName.MIGRATE.value, None)
    assert entry is not None and entry.reason == raised("migrate", state)
    got = run_secrets_query(ctx, request("r-sec", rel))
    assert got["problem"] == raised("secrets query", state), got
    entry = journal.get("r-sec", "b1", TaskName.SECRETS.value, None)
    assert entry is not None and entry.reason == raised("secrets query", state)
