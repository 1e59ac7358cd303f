"""One way to end an interrupted chain: journal the failure, then restore and rejoin."""

from __future__ import annotations

import logging
import time
from typing import Any

from schemas.contract import Outcome, StepRequest, StepResult, TaskName
from worker.steps.protocol import StepContext, run_step
from worker.steps.registry import STEPS

log = logging.getLogger("orchestrator.worker")


def end_chain(
    ctx: StepContext, req: StepRequest, step: str, reason: str, *, finish: bool = False
) -> dict[TaskName, dict[str, object]]:
    """Record `step` as failed, then run restore and join_lb (and finish, for a rollout's
    chain) as the box-level steps they are; their results, by step."""
    now = time.time()
    # Recorded as a failure, so the chain's redelivered steps skip and only restore/join act.
    ctx.journal.record(
        StepResult(
            step=step,
            app=req.app,
            rollout_id=req.rollout_id,
            box_id=req.box_id,
            outcome=Outcome.FAILED,
            reason=reason,
            started=now,
            ended=now,
        )
    )
    base = req.model_copy(update={"app": None}).model_dump(mode="json")
    ends = [TaskName.RESTORE, TaskName.JOIN_LB] + ([TaskName.FINISH] if finish else [])
    return {end: run_step(ctx, end, base, STEPS[end]) for end in ends}


def recover(ctx: StepContext, box_id: str) -> None:
    """On start: end the chain this box was running when its worker died."""
    raw = ctx.redis.get(ctx.keys.active_chain(box_id))
    if raw is None:
        return
    req = StepRequest.model_validate_json(raw).model_copy(update={"app": None})
    log.warning("ending interrupted chain of rollout %s on %s", req.rollout_id, box_id)
    reason = "the worker restarted in the middle of this box's chain"
    for step, out in end_chain(ctx, req, "recover", reason).items():
        log.warning("recovery %s: %s %s", step, out.get("outcome"), out.get("reason"))


def rescue(ctx: StepContext, task: str, payload: object, error: str) -> None:
    """After a step raised instead of returning a failure: end its chain the same way."""
    req = StepRequest.model_validate(payload)
    # The chain stopped at the error, before its `finish`: without it the rollout halted
    # only once the box's slot expired (slot TTL, 30 s by default).
    end_chain(ctx, req, task, f"escaped error: {error}", finish=_in_rollout(ctx, payload))


def _in_rollout(ctx: StepContext, payload: Any) -> bool:
    """A rollout's chain (it ends with `finish`), not a bare box chain."""
    if ctx.rollouts is None or not isinstance(payload, dict) or not payload.get("rollout_id"):
        return False
    return bool(ctx.redis.exists(ctx.keys.rollout_part(str(payload["rollout_id"]), "spec")))
