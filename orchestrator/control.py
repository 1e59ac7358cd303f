"""Acting on a rollout that exists: pause, resume, abort, and releasing a box type's lock."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from orchestrator.errors import ConfigError, IllegalTransition, LeaseHeld
from schemas.rollout import Policy, Rollout, RolloutState

if TYPE_CHECKING:
    from orchestrator.coordinator import Coordinator


def pause(c: Coordinator, rollout_id: str) -> None:
    """No new box starts; boxes in flight finish; the lease is held without expiry."""
    r = c.rollouts.get(rollout_id)
    c.rollouts.states.move(rollout_id, RolloutState.PAUSED)
    c.rollouts.lease.persist(r.box_type, rollout_id)


def resume(c: Coordinator, rollout_id: str) -> list[str]:
    """A paused or halted rollout runs again; its failed boxes are tried again (returned)."""
    r = c.rollouts.get(rollout_id)
    lease = c.rollouts.lease
    holder, _ = lease.holder(r.box_type)
    if holder not in (None, rollout_id):
        raise LeaseHeld(c.describe_holder(r.box_type, holder))
    if holder is None and lease.acquire(r.box_type, rollout_id, c.settings.lease_ttl):
        raise ConfigError(f"could not take the lease of {r.box_type} back; try again")
    # A fresh order: the first may have expired; the current-on-success record stays.
    release = c.rollouts.releases.get(r.release_id, r.release_hash)
    c.sign_order("resume", rollout_id, release, _policy(r), with_current=False)
    try:
        c.rollouts.states.resume(rollout_id, r.box_type)
    except IllegalTransition:
        if holder is None:  # taken back above for nothing: give it back
            lease.release(r.box_type, rollout_id)
        raise
    retried = c.rollouts.retry_failed(r)
    lease.renew(r.box_type, rollout_id, c.settings.lease_ttl)
    c.rollouts.advance(r)
    return retried


def _policy(r: Rollout) -> Policy:
    p = r.plan
    return Policy(
        canary=str(p.canary), batch=str(p.batch), max_failed=str(p.max_failed),
        on_failure=p.on_failure,
    )


def abort(c: Coordinator, rollout_id: str) -> None:
    """Halt now: no new box starts; boxes in flight finish and rejoin."""
    r = c.rollouts.get(rollout_id)
    c.rollouts.states.move(rollout_id, RolloutState.ABORTED)
    c.rollouts.advance(r)  # ends it now if nothing is in flight


def release_lock(c: Coordinator, box_type: str) -> tuple[str | None, str | None]:
    """Release the lease and end its holder (aborted): (holder, its final state or None)."""
    holder, _ = c.rollouts.lease.holder(box_type)
    if holder is None:
        return None, None
    with contextlib.suppress(IllegalTransition):  # it had already ended
        c.rollouts.states.move(holder, RolloutState.ABORTED)
    final = c.rollouts.stop(holder)
    c.rollouts.lease.force_release(box_type)
    return holder, final
