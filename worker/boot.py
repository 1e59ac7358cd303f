"""Convergence on boot: a box with nothing running takes its type's current release."""

from __future__ import annotations

import logging

from orchestrator.engine.lease import Lease
from orchestrator.engine.state import RolloutStates, boot_id
from schemas.checks import app_order
from schemas.contract import Label, StepRequest, TaskName
from schemas.release import Release
from schemas.trust import SignedCurrent
from worker.steps.lb import membership
from worker.steps.protocol import StepContext, run_step
from worker.steps.registry import STEPS
from worker.trust import authorise_current

log = logging.getLogger("orchestrator.worker.boot")


def converge_on_boot(ctx: StepContext, box_id: str, box_type: str) -> str:
    """Deploy the current release on an empty box, then join its load balancers once healthy.

    A new box starts out of service, so there is no load balancer to leave first; an
    unhealthy one never joins. Returns what happened, for the log.
    """
    with ctx.box_lock(box_id):  # nothing else acts on the box meanwhile (recovery waits)
        waiting = why_not(ctx, box_id, box_type)
        if waiting:
            return waiting
        verdict = authorise_current(ctx, box_id, box_type)
        if verdict.refused:
            refused(ctx, box_id, box_type, verdict.refused)
            return f"refused: {verdict.refused}"
        if verdict.release is None:
            return f"waiting: box type {box_type} has no successful release yet"
        return converge(ctx, box_id, box_type, verdict.release, verdict.signed)


def refused(ctx: StepContext, box_id: str, box_type: str, why: str) -> None:
    """Said once per reason in the event stream (the reconciler asks again every tick)."""
    if ctx.refusals.get(box_id) == why:
        return
    ctx.refusals[box_id] = why
    log.error("boot of %s refused: %s", box_id, why)
    ctx.events.emit(
        box_type, box=box_id, step="boot", phase="end", outcome="refused", reason=why
    )


def why_not(ctx: StepContext, box_id: str, box_type: str) -> str:
    """Why the box must not converge by itself now; '' when it should."""
    env = ctx.box_env(box_id, box_type)
    # Only a box that never got anything converges by itself; a box in a rollout's hands
    # (even between steps, even with every container briefly gone mid-swap) is left alone.
    if env.runtime.list(labels={Label.BOX: box_id, Label.ROLE: "app"}):
        return "apps already run here"
    if RolloutStates(ctx.redis, ctx.keys).active(box_type):
        return "waiting: a rollout of this box type is running; it deploys this box"
    if ctx.record(box_id).read().intents:
        return "waiting: the box's own record of a swap is not finished yet"
    if box_id in ctx.busy.snapshot():
        return "apps already run here"
    return ""


def converge(
    ctx: StepContext,
    box_id: str,
    box_type: str,
    current: Release,
    signed: SignedCurrent | None = None,
) -> str:
    """Deploy `current`, authorised by its `signed` record (verified by the caller)."""
    # A fresh token: a rollout that claims this box later supersedes this convergence.
    rollout_id = boot_id(box_id)
    token = Lease(ctx.redis, ctx.keys).fresh_token(box_type, box_id, rollout_id)
    apps = app_order(current.spec)
    req = StepRequest(
        rollout_id=rollout_id,
        box_id=box_id,
        box_type=box_type,
        release_id=current.id,
        release_hash=current.hash,
        token=token,
        changed_apps=apps,
        lb_apps=[a for a in apps if current.spec.apps[a].elb],
    )
    # The box was never in service: its record says it is out, so join_lb proves and joins.
    record = ctx.record(box_id)
    for app in req.lb_apps:
        record.left(rollout_id, token, app, membership(ctx, box_id, current, app))
    payload = req.model_dump(mode="json")
    run_step(ctx, TaskName.PULL, payload, STEPS[TaskName.PULL], signed)
    for app in apps:
        run_step(ctx, TaskName.SWAP, {**payload, "app": app}, STEPS[TaskName.SWAP], signed)
    run_step(ctx, TaskName.ENSURE_SERVICES, payload, STEPS[TaskName.ENSURE_SERVICES], signed)
    failure = ctx.journal.first_failure(req.rollout_id, box_id)
    if failure is not None:
        run_step(ctx, TaskName.RESTORE, payload, STEPS[TaskName.RESTORE], signed)
        return f"not joining any load balancer: {failure.step} failed: {failure.reason}"
    joined = run_step(ctx, TaskName.JOIN_LB, payload, STEPS[TaskName.JOIN_LB], signed)
    return f"converged to {current.id}; join_lb {joined.get('outcome')}: {joined.get('reason')}"
