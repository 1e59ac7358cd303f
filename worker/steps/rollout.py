"""The rollout's own steps on a box: `claim` (the only halt point) and `finish` (the fill)."""

from __future__ import annotations

import logging

import redis

from orchestrator.engine.budget import Budgets
from orchestrator.engine.lease import Lease
from orchestrator.errors import OrchestratorError
from schemas.contract import Outcome, StepRequest, StepResult, TaskName
from schemas.release import Release
from schemas.rollout import Rollout
from worker.retire import retire_soon
from worker.stage import sweep
from worker.steps.protocol import StepContext, StepOutcome

log = logging.getLogger("orchestrator.worker")


def claim(ctx: StepContext, req: StepRequest, _: Release, __: StepResult | None) -> StepOutcome:
    """Lease owner, rollout state and a fresh fencing token in one Lua script."""
    got = Lease(ctx.redis, ctx.keys).claim(req.box_type, req.rollout_id, req.box_id)
    if not got.ok:
        # Not a failure of this box: it never started, and it never leaves its LB; what its
        # preflight staged is for no turn now.
        sweep(ctx, req.box_id, req.box_type, over=req.rollout_id)
        return StepOutcome(Outcome.SKIPPED, f"not started: {got.reason}")
    # On the box's own disk: once claimed, the order's expiry no longer stops this box.
    ctx.record(req.box_id).claim(req.rollout_id)
    return StepOutcome(Outcome.OK, f"token {got.token}", details={"token": str(got.token)})


def box_outcome(entries: dict[str, StepResult]) -> str:
    """ok, failed, cancelled (a box whose claim was refused never started), or deferred (its
    load balancer's budget was spent: it did not leave)."""
    if any(r.failed for r in entries.values()):
        return "failed"
    left = entries.get(f"{TaskName.LEAVE_LB.value}:-")
    if left is not None and left.outcome == Outcome.DEFERRED:
        return "deferred"
    claimed = entries.get(f"{TaskName.CLAIM.value}:-")
    if claimed is None or claimed.outcome != Outcome.OK:
        return "cancelled"
    return "ok"


def finish(ctx: StepContext, req: StepRequest, _: Release, __: StepResult | None) -> StepOutcome:
    """Count this box once, start its successors, and end the rollout if it was the last."""
    if ctx.rollouts is None:
        return StepOutcome(Outcome.FAILED, "this worker has no rollout engine configured")
    entries = ctx.journal.entries(req.rollout_id, req.box_id)
    outcome = box_outcome(entries)
    first = ctx.journal.first_failure(req.rollout_id, req.box_id)
    why = f"{first.step}: {first.reason}" if first else ""
    rollout = ctx.rollouts.get(req.rollout_id)
    if outcome == "deferred":
        return defer(ctx, req, rollout)
    # Whatever its end, the box's chain is over: its places out of a load balancer are free
    # (a box left out, unhealthy, halts its rollout and needs `repair`).
    ctx.rollouts.wake(Budgets(ctx.redis, ctx.keys).release(req.box_id))
    fill = ctx.rollouts.advance(rollout, req.box_id, outcome, why)
    if fill.kind == "dup":
        return StepOutcome(Outcome.NOOP, f"box {outcome}: already counted")
    started = ", ".join(fill.started) or "none"
    # Counted, its successors started: whatever its preflight staged and its turn did not
    # adopt goes now, and the old versions its start-first swaps left running stop.
    after_turn(ctx, req)
    return StepOutcome(
        Outcome.OK,
        f"box {outcome}; started {started}; rollout {ctx.rollouts.state(rollout.id)}",
        details={"box": outcome, "started": ",".join(fill.started)},
    )


def after_turn(ctx: StepContext, req: StepRequest) -> None:
    try:
        retire_soon(ctx, req.box_id, req.box_type,
                    first=lambda: sweep(ctx, req.box_id, req.box_type, over=req.rollout_id))
    except (OrchestratorError, redis.RedisError) as exc:  # the heartbeat tick tries again
        log.warning("box %s: after its turn: %s", req.box_id, exc)


def defer(ctx: StepContext, req: StepRequest, rollout: Rollout) -> StepOutcome:
    """Back to pending, uncounted: its next chain claims (the rollout may have stopped since)
    and leaves again; the rollout's lease is kept while nothing of it is in flight."""
    assert ctx.rollouts is not None
    ctx.journal.reopen(req.rollout_id, req.box_id, [TaskName.CLAIM.value])
    ctx.rollouts.lease.renew(rollout.box_type, rollout.id, ctx.rollouts.lease_ttl)
    fill = ctx.rollouts.advance(rollout, req.box_id, "deferred")
    started = ", ".join(fill.started) or "none until a place is released"
    return StepOutcome(
        Outcome.DEFERRED,
        f"back to pending: its load balancer is full; started {started}",
        details={"box": "deferred", "started": ",".join(fill.started)},
    )
