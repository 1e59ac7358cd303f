"""Rollback is a rollout: its own id, a parent link, the lease handed over, obeying --batch."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from orchestrator.audit import who
from orchestrator.engine.state import new_id
from schemas.rollout import Plan, Policy, Rollout, RolloutState

if TYPE_CHECKING:
    from orchestrator.coordinator import Coordinator

PENDING = frozenset({RolloutState.ROLLBACK_PENDING})


def maybe_roll_back(c: Coordinator, parent: Rollout) -> Rollout | None:
    """A rollback-pending rollout, with this coordinator attached: start its rollback."""
    states = c.rollouts.states
    if states.state(parent.id) != RolloutState.ROLLBACK_PENDING:
        return None
    changed = sorted(
        b
        for b, outcome in c.rollouts.done(parent.id).items()
        if outcome in ("ok", "failed", "dead")
    )
    if parent.previous_release is None or not changed:
        why = (
            "no previous release to return to"
            if parent.previous_release is None
            else ("no box was changed")
        )
        states.move(
            parent.id,
            RolloutState.HALTED,
            only_from=PENDING,
            fields={"halt_reason": f"no rollback: {why}"},
        )
        c.rollouts.lease.release(parent.box_type, parent.id)
        return None
    by = who(c.settings.performer)
    child = Rollout(
        id=new_id(parent.box_type, "rollback"),
        box_type=parent.box_type,
        release_id=parent.previous_release,
        release_hash=c.rollouts.releases.get(parent.previous_release).hash,
        previous_release=parent.previous_release,
        plan=Plan(
            boxes=changed,
            canary=0,
            batch=parent.plan.batch,
            max_failed=len(changed),
            on_failure="continue",
        ),
        reason=f"rollback of {parent.id}",
        created_by=by.user,
        host=by.host,
        performer=by.performer,
        command=by.command,
        created_at=time.time(),
        parent=parent.id,
        kind="rollback",
    )
    release = c.rollouts.releases.get(parent.previous_release)
    c.sign_order("rollback", child.id, release, Policy(batch=str(parent.plan.batch)))
    # The lease moves atomically from the parent (which has nothing in flight) to the child.
    if not c.rollouts.lease.hand_over(parent.box_type, parent.id, child.id, c.settings.lease_ttl):
        return None
    c.rollouts.create(child)
    states.move(parent.id, RolloutState.HALTED, only_from=PENDING, fields={"rollback": child.id})
    c.rollouts.events.emit(
        parent.box_type,
        rollout=child.id,
        step="rollout",
        phase="start",
        reason=f"rollback of {parent.id} on {len(changed)} boxes",
    )
    c.rollouts.advance(child)
    return child
