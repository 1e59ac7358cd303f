"""The rollout's own steps on a box: `claim` (the only halt point) and `finish` (the fill)."""

from __future__ import annotations

from orchestrator.engine.lease import Lease
from schemas.contract import Outcome, StepRequest, StepResult, TaskName
from schemas.release import Release
from worker.steps.protocol import StepContext, StepOutcome


def claim(ctx: StepContext, req: StepRequest, _: Release, __: StepResult | None) -> StepOutcome:
    """Lease owner, rollout state and a fresh fencing token in one Lua script."""
    got = Lease(ctx.redis, ctx.keys).claim(req.box_type, req.rollout_id, req.box_id)
    if not got.ok:
        # Not a failure of this box: it never started, and it never leaves its LB.
        return StepOutcome(Outcome.SKIPPED, f"not started: {got.reason}")
    # On the box's own disk: once claimed, the order's expiry no longer stops this box.
    ctx.record(req.box_id).claim(req.rollout_id)
    return StepOutcome(Outcome.OK, f"token {got.token}", details={"token": str(got.token)})


def box_outcome(entries: dict[str, StepResult]) -> str:
    """ok, failed, or cancelled (a box whose claim was refused never started)."""
    if any(r.failed for r in entries.values()):
        return "failed"
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
    fill = ctx.rollouts.advance(rollout, req.box_id, outcome, why)
    if fill.kind == "dup":
        return StepOutcome(Outcome.NOOP, f"box {outcome}: already counted")
    started = ", ".join(fill.started) or "none"
    return StepOutcome(
        Outcome.OK,
        f"box {outcome}; started {started}; rollout {ctx.rollouts.state(rollout.id)}",
        details={"box": outcome, "started": ",".join(fill.started)},
    )
