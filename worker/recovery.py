"""Ending what a box left unfinished: its own record after a restart, a lost Redis or a pause
(restore, then rejoin once healthy), and a chain whose step raised (the rescue)."""

from __future__ import annotations

import logging
import time
from typing import Any

import redis

from orchestrator.engine.lease import Lease
from orchestrator.errors import Fenced, OrchestratorError
from schemas.contract import Outcome, StepRequest, StepResult, TaskName
from worker.decide import Owner, SwapIntent, decide_recovery
from worker.record import BoxState
from worker.retire import tidy_retired
from worker.stage import tidy
from worker.steps.apps import restore_apps
from worker.steps.lb import rejoin
from worker.steps.protocol import StepContext, run_step
from worker.steps.registry import STEPS

log = logging.getLogger("orchestrator.worker")


def settle(ctx: StepContext, box_id: str, box_type: str, *, restarted: bool = False) -> str:
    """Finish what the box's own record says, unless a live chain owns the box; what was done.

    Runs on start (`restarted`) and on every heartbeat tick, never beside a step of the box.
    """
    record = ctx.record(box_id)
    if record.read().idle or (not restarted and time.monotonic() < ctx.retry_at(box_id)):
        return ""
    with ctx.box_if_free(box_id) as free:
        if not free:
            return ""  # a step, or boot, acts on the box now
        try:
            state = record.read()
            owner = _owner(ctx, box_id)
            action, why = decide_recovery(state, owner, restarted=restarted)
            if action != "finish":
                return ""
            log.warning("box %s: finishing its own record (%s)", box_id, why)
            said = finish(ctx, box_id, box_type, state)
            ctx.backoff(box_id, done=record.read().idle)
            if restarted and owner is not None and owner.live and owner.token == state.token:
                report(ctx, box_id, owner.rollout, owner.token, why)
            return said
        except redis.RedisError as exc:  # cannot tell who owns the box: next tick
            log.warning("box %s: its record waits for Redis (%s)", box_id, exc)
            return ""


def _owner(ctx: StepContext, box_id: str) -> Owner | None:
    lease = Lease(ctx.redis, ctx.keys)
    found = lease.owner(box_id)
    if found is None:
        return None
    return Owner(token=found[0], rollout=found[1], live=lease.owner_lives(box_id))


def finish(ctx: StepContext, box_id: str, box_type: str, state: BoxState) -> str:
    """Restore every app the record says was being changed, then rejoin what is out."""

    def guard(action: str) -> None:
        # Only while no live newer chain owns the box: that one takes over what is out.
        owner = _owner(ctx, box_id)
        if owner is not None and owner.live and owner.token != state.token:
            raise Fenced(f"{action} not done: rollout {owner.rollout} owns the box now")

    record = ctx.record(box_id)
    intents = {app: SwapIntent.from_note(n) for app, n in reversed(state.intents.items())}
    try:
        with ctx.acting_as(guard, "recover"):
            restored = restore_apps(ctx, box_id, box_type, intents, state.token)
            if restored.outcome != Outcome.FAILED:
                record.settle()
            joined, unhealthy = rejoin(ctx, box_id, box_type, dict(state.out))
    except (Fenced, OrchestratorError) as exc:
        log.warning("box %s: its record stays for later: %s", box_id, exc)
        return f"not finished: {exc}"
    said = f"restore {restored.outcome}: {restored.reason}; rejoined {', '.join(joined) or '-'}"
    if unhealthy:
        said += "; still out, not healthy: " + "; ".join(unhealthy)
    _emit(ctx, box_id, box_type, state, said)
    log.warning("box %s: %s", box_id, said)
    return said


def _emit(ctx: StepContext, box_id: str, box_type: str, state: BoxState, said: str) -> None:
    ctx.events.emit(
        box_type,
        rollout=state.rollout,
        box=box_id,
        step="recover",
        phase="end",
        outcome="ok",
        reason=said,
    )


def report(ctx: StepContext, box_id: str, rollout_id: str, token: str, why: str) -> None:
    """Journal the failure (the chain's redelivered steps then skip) and, for a rollout, let
    it count the box now (failed) instead of when the box's slot runs out."""
    rollout = None
    if ctx.rollouts is not None and ctx.redis.exists(ctx.keys.rollout_part(rollout_id, "spec")):
        rollout = ctx.rollouts.get(rollout_id)
    req = StepRequest(
        rollout_id=rollout_id,
        box_id=box_id,
        box_type=rollout.box_type if rollout else "",
        release_id=rollout.release_id if rollout else "",
        release_hash=rollout.release_hash if rollout else "",
        token=token,
    )
    _journal_failure(ctx, req, "recover", why)
    if rollout is not None:
        run_step(ctx, TaskName.FINISH, req.model_dump(mode="json"), STEPS[TaskName.FINISH])


def recover(ctx: StepContext, box_id: str, box_type: str) -> None:
    """On start: finish the box's own record, whatever chain its worker died in."""
    said = settle(ctx, box_id, box_type, restarted=True)
    if said:
        log.warning("recovery of %s: %s", box_id, said)
    tidy(ctx, box_id, box_type, restarted=True)  # a staging cut short, or staged for nothing
    tidy_retired(ctx, box_id, box_type)  # an old start-first version a killed worker left


def _journal_failure(ctx: StepContext, req: StepRequest, step: str, reason: str) -> None:
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


def end_chain(
    ctx: StepContext, req: StepRequest, step: str, reason: str, *, finish: bool = False
) -> dict[TaskName, dict[str, object]]:
    """Record `step` as failed, then run restore and join_lb (and finish, for a rollout's
    chain) as the box-level steps they are; their results, by step."""
    _journal_failure(ctx, req, step, reason)
    base = req.model_copy(update={"app": None}).model_dump(mode="json")
    ends = [TaskName.RESTORE, TaskName.JOIN_LB] + ([TaskName.FINISH] if finish else [])
    return {end: run_step(ctx, end, base, STEPS[end]) for end in ends}


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
