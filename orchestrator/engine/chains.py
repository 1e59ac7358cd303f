"""Build one box's chain of step signatures, every one routed to the box's own queue."""

from __future__ import annotations

from celery import Celery
from celery.canvas import Signature, chain

from orchestrator.engine.celery_app import NO_DECLARE, brief
from schemas.contract import StepRequest, TaskName, queue_for


def step(app: Celery, name: TaskName, req: StepRequest, app_name: str | None = None) -> Signature:
    """An immutable signature: a step gets its own request, never the previous return value."""
    payload = req.model_copy(update={"app": app_name}).model_dump(mode="json")
    # A chain's apply_async(queue=...) routes only its first task: set it on every one.
    sig = app.signature(name.value, args=(payload,), immutable=True, queue=queue_for(req.box_id),
                        argsrepr=brief(payload), **NO_DECLARE)
    if name not in (TaskName.RESTORE, TaskName.JOIN_LB, TaskName.FINISH):
        # An error that escapes a step stops the chain: the rescue still restores and rejoins.
        sig.link_error(app.signature(TaskName.RESCUE.value, queue=queue_for(req.box_id),
                                     **NO_DECLARE))
    return sig


def box_chain(app: Celery, req: StepRequest) -> Signature:
    """pull -> leave_lb -> swap per changed app (start order) -> restore -> join_lb -> services."""
    sigs = [step(app, TaskName.PULL, req), step(app, TaskName.LEAVE_LB, req)]
    sigs += [step(app, TaskName.SWAP, req, a) for a in req.changed_apps]
    sigs += [
        step(app, TaskName.RESTORE, req),
        step(app, TaskName.JOIN_LB, req),
        step(app, TaskName.ENSURE_SERVICES, req),
    ]
    return chain(*sigs)


def rollout_chain(app: Celery, req: StepRequest) -> Signature:
    """A rollout's chain: claim after pull (the only halt point), finish at the end."""
    sigs = [step(app, TaskName.PULL, req), step(app, TaskName.CLAIM, req)]
    sigs.append(step(app, TaskName.LEAVE_LB, req))
    sigs += [step(app, TaskName.SWAP, req, a) for a in req.changed_apps]
    sigs += [
        step(app, TaskName.RESTORE, req),
        step(app, TaskName.JOIN_LB, req),
        step(app, TaskName.ENSURE_SERVICES, req),
        step(app, TaskName.FINISH, req),
    ]
    return chain(*sigs)
