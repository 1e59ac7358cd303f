"""Scale-in: before the worker stops (ExecStop), the box leaves its load balancers and members."""

from __future__ import annotations

from orchestrator.engine.fleet import Members
from schemas.contract import Label
from worker.decide import is_aside
from worker.steps.lb import membership
from worker.steps.protocol import StepContext


def leave_all(ctx: StepContext, box_id: str, box_type: str) -> list[str]:
    """Leave, and wait out the draining of, every load balancer of the apps running here."""
    env = ctx.box_env(box_id, box_type)
    running = [
        f
        for f in env.runtime.list(labels={Label.BOX: box_id, Label.ROLE: "app"})
        if f.state == "running" and not is_aside(f)
    ]
    releases = {f.labels.get(Label.RELEASE) for f in running} - {None, ""}
    left = []
    record = ctx.record(box_id)
    record.leaving(True)  # from now on the heartbeat no longer counts the box a member
    for rid in sorted(r for r in releases if r):
        release = ctx.releases.get(rid)
        for app in release.spec.apps:
            lb = ctx.load_balancer(release, app)
            if lb is None or app in left:
                continue
            member = membership(ctx, box_id, release, app)
            # A box stopped but not terminated rejoins, once healthy, when its worker starts.
            record.drained(app, member)
            ctx.redis.hset(ctx.keys.lb_state(box_id), app, "out")
            lb.leave(member.member)
            lb.wait_drained(member.member, ctx.settings.drain_timeout)
            left.append(app)
    # Scale-in: the box is no longer a member of its type, so no rollout waits for it.
    Members(ctx.redis, ctx.keys).forget(box_type, box_id)
    return left
