"""Catch-up: a box behind its type's current release, or fresh, starts its own one-box rollout."""

from __future__ import annotations

import logging
import time

from orchestrator.engine.freeze import Freezes
from orchestrator.engine.state import RolloutStates, new_id
from orchestrator.errors import OrchestratorError
from schemas.contract import Label
from schemas.release import Release
from schemas.rollout import Plan, Rollout
from worker.decide import CatchUpFacts, decide_catch_up, is_aside
from worker.steps.protocol import StepContext
from worker.trust import authorise_current

log = logging.getLogger("orchestrator.worker.catchup")
HISTORY = 50  # how far back to look for the rollout that made current


def authorise(ctx: StepContext, box_id: str, release: Release, box_type: str) -> str:
    """'' when the box may deploy `release` without a person asking; else why not.

    The one place a box decides to trust a release by itself: the type's current record,
    signed by a trusted key, for this type, not older than any this box has seen, and naming
    this very release (worker/trust.py)."""
    if release.box_type != box_type:
        return f"release {release.id} is for box type {release.box_type}, not {box_type}"
    if not release.verify():
        return f"release {release.id} does not match its content hash"
    verdict = authorise_current(ctx, box_id, box_type)
    if verdict.refused:
        return verdict.refused
    if verdict.release is None or verdict.release.id != release.id:
        return f"the signed current record does not name {release.id}"
    return ""


def facts(ctx: StepContext, box_id: str, box_type: str) -> tuple[CatchUpFacts, Release | None]:
    """What the decision needs, read from Docker, the box's record and Redis, now."""
    states = RolloutStates(ctx.redis, ctx.keys)
    current_id = states.current(box_type)
    current = ctx.releases.get(current_id) if current_id else None
    env = ctx.box_env(box_id, box_type)
    containers = env.runtime.list(labels={Label.BOX: box_id, Label.ROLE: "app"})
    running = {
        f.labels.get(Label.APP, ""): f
        for f in containers
        if f.state == "running" and not is_aside(f)
    }
    behind: tuple[str, ...] = ()
    newer = None
    if current is not None:
        behind = tuple(
            a
            for a in current.spec.apps
            if a not in running or running[a].labels.get(Label.SPEC_HASH) != current.spec_hash(a)
        )
        if behind:
            labels = {f.labels.get(Label.RELEASE, "") for f in running.values()}
            newer = _newer(ctx, labels, current)
    made, took_part, latest, latest_state = None, False, None, ""
    if current is not None and (behind or not containers):  # up to date: no history to read
        made, took_part, latest, latest_state = _history(ctx, box_id, box_type, current.id)
    at_rest = ctx.record(box_id).read().idle and box_id not in ctx.busy.snapshot()
    return (
        CatchUpFacts(
            current=current_id,
            behind=behind,
            fresh=not containers,
            newer=newer,
            made_current=made,
            took_part=took_part,
            latest=latest,
            latest_state=latest_state,
            active=states.active(box_type),
            at_rest=at_rest,
            refused=authorise(ctx, box_id, current, box_type) if current is not None else "",
            frozen=str(Freezes(ctx.redis, ctx.keys).get(box_type) or ""),
        ),
        current,
    )


def _history(
    ctx: StepContext, box_id: str, box_type: str, current_id: str
) -> tuple[str | None, bool, str | None, str]:
    """(the rollout that made current, whether the box took part, the latest rollout, its
    state), newest first, as far back as HISTORY."""
    assert ctx.rollouts is not None, "catch-up runs in a worker with its rollout engine"
    latest, latest_state = None, ""
    for i, rid in enumerate(ctx.rollouts.history(box_type, HISTORY)):
        st = ctx.rollouts.status(rid)
        if i == 0:
            latest, latest_state = rid, st.get("state", "")
        if st.get("state") == "succeeded" and _release_of(ctx, rid) == current_id:
            took_part = bool(ctx.redis.hexists(ctx.keys.rollout_part(rid, "done"), box_id))
            return rid, took_part, latest, latest_state
    return None, False, latest, latest_state


def _release_of(ctx: StepContext, rollout_id: str) -> str | None:
    assert ctx.rollouts is not None
    try:
        return ctx.rollouts.get(rollout_id).release_id
    except OrchestratorError:
        return None


def _newer(ctx: StepContext, running: set[str], current: Release) -> str | None:
    for rid in sorted(r for r in running if r and r != current.id):
        try:
            if ctx.releases.get(rid).created_at > current.created_at:
                return rid
        except OrchestratorError:  # a release nobody knows any more cannot be newer here
            continue
    return None


def catch_up(ctx: StepContext, box_id: str, box_type: str) -> str | None:
    """Start the box's one-box rollout if it should catch up now; why it does or does not
    (None: not looked at now, a step or a rollout is under way; cheap, as it runs often)."""
    if box_id in ctx.busy.snapshot() or RolloutStates(ctx.redis, ctx.keys).active(box_type):
        return None
    with ctx.box_if_free(box_id) as free:
        if not free:
            return "waiting: a step or the box's own record acts on it now"
        found, current = facts(ctx, box_id, box_type)
        go, why = decide_catch_up(found)
        if found.refused and why.startswith("not authorised"):
            refused(ctx, box_id, box_type, found.refused)
        if not go or current is None:
            return why
        return start(ctx, box_id, box_type, current, why)


def start(ctx: StepContext, box_id: str, box_type: str, release: Release, why: str) -> str:
    """The one-box rollout: lease, record, decide again under the lease, first fill."""
    engine = ctx.rollouts
    assert engine is not None
    rollout_id = new_id(box_type, "catchup")
    holder = engine.lease.acquire(box_type, rollout_id, engine.lease_ttl)
    if holder is not None:
        return f"waiting: rollout {holder} holds the box type's lease"
    # Under the lease nothing else starts on the type: the facts now are the ones that count.
    go, why_now = decide_catch_up(facts(ctx, box_id, box_type)[0])
    if not go:
        engine.lease.release(box_type, rollout_id)
        return why_now
    engine.states.open(rollout_id, box_type, why)
    try:
        rollout = Rollout(
            id=rollout_id,
            box_type=box_type,
            release_id=release.id,
            release_hash=release.hash,
            previous_release=release.id,
            plan=Plan(boxes=[box_id], canary=1, batch=1, max_failed=0, on_failure="halt"),
            reason=f"catch-up of {box_id}: {why}",
            created_by=f"worker@{box_id}",
            created_at=time.time(),
            kind="catchup",
        )
        engine.create(rollout)
    except Exception as exc:  # nothing started: the record says why, the lease goes back
        engine.states.refuse(rollout_id, f"{type(exc).__name__}: {exc}")
        engine.lease.release(box_type, rollout_id)
        raise
    engine.events.emit(
        box_type,
        rollout=rollout_id,
        box=box_id,
        step="rollout",
        phase="start",
        reason=f"catch-up: release {release.id} on 1 box ({why})",
    )
    engine.advance(rollout)
    log.warning("box %s: %s: rollout %s started", box_id, why, rollout_id)
    return f"catching up: rollout {rollout_id}"


def refused(ctx: StepContext, box_id: str, box_type: str, why: str) -> None:
    """A refusal to converge is an event (once per reason; the worker asks again every
    few ticks) and an error in the worker's log."""
    if ctx.refusals.get(box_id) == why:
        return
    ctx.refusals[box_id] = why
    log.error("catch-up of %s refused: %s", box_id, why)
    ctx.events.emit(box_type, box=box_id, step="catch-up", phase="end", outcome="refused",
                    reason=why)
