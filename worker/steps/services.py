"""The services step: the release's standard services, started or replaced after the apps."""

from __future__ import annotations

from schemas.contract import Outcome, StepRequest, StepResult
from schemas.release import Release
from worker.services import ensure_services as ensure
from worker.steps.protocol import StepContext, StepOutcome


def ensure_services(
    ctx: StepContext, req: StepRequest, release: Release, _: StepResult | None
) -> StepOutcome:
    """Start what is missing of the release's services, replace what changed."""
    env = ctx.box_env(req.box_id, req.box_type)
    with ctx.services_lock:
        # The reconciler thread keeps this release's services running from now on.
        ctx.redis.set(ctx.keys.services(req.box_id), f"{release.id} {req.token}")
        changed = ensure(env, release, req.token)
    return StepOutcome(
        Outcome.OK if changed else Outcome.NOOP,
        f"started {', '.join(changed)}" if changed else "services as specified",
    )
