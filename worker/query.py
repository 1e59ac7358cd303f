"""`plan`'s question to a box: which apps' secret values changed? Answered with names only."""

from __future__ import annotations

import time
from typing import Any

from orchestrator.errors import OrchestratorError
from schemas.contract import CONTRACT_VERSION, Outcome, StepRequest, StepResult, TaskName
from worker.secrethash import secrets_changed
from worker.steps.protocol import StepContext

# The answer is read once by the asking `plan`, which then deletes it; an answer that comes
# after the plan gave up goes away by itself.
ANSWER_TTL = 120


def run_secrets_query(ctx: StepContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Compare, on this box, each app's secret values now with those it started with."""
    started = time.time()
    req = StepRequest.model_validate(payload)
    outcome, reason, changed = Outcome.OK, "", []
    if req.contract_version != CONTRACT_VERSION:
        outcome, reason = Outcome.FAILED, f"contract {req.contract_version} != {CONTRACT_VERSION}"
    else:
        try:
            release = ctx.releases.get(req.release_id, req.release_hash)
            changed = secrets_changed(ctx.box_env(req.box_id, req.box_type), release)
        except OrchestratorError as exc:
            outcome, reason = Outcome.FAILED, f"{type(exc).__name__}: {exc}"
    ctx.journal.record(
        StepResult(
            step=TaskName.SECRETS.value,
            rollout_id=req.rollout_id,
            box_id=req.box_id,
            outcome=outcome,
            reason=reason,
            details={"secret_changed": ",".join(changed)},
            started=started,
            ended=time.time(),
        )
    )
    ctx.redis.expire(ctx.keys.journal(req.rollout_id, req.box_id), ANSWER_TTL)
    return {"box": req.box_id, "secret_changed": changed, "problem": reason}
