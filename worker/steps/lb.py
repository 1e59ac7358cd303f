"""The load balancer steps: leave before a swap, rejoin once what runs is proven healthy."""

from __future__ import annotations

from orchestrator.engine.budget import Budgets
from orchestrator.engine.changes import box_changes
from orchestrator.errors import OrchestratorError
from schemas.contract import Label, Member, Outcome, StepRequest, StepResult, TaskName
from schemas.fleet import lb_key
from schemas.release import Release
from worker.capacity import refusal
from worker.decide import is_aside
from worker.facts import BoxEnv
from worker.health import wait_healthy
from worker.secrethash import secrets_changed
from worker.startfirst import align, stays_in
from worker.steps.apps import live_hashes
from worker.steps.protocol import StepContext, StepOutcome


def leave_lb(
    ctx: StepContext, req: StepRequest, release: Release, _: StepResult | None
) -> StepOutcome:
    """Leave, once, the load balancers of the apps that change and of those depending on them.

    Decided from what runs on the box now, not from a heartbeat that may be seconds old.
    """
    env = ctx.box_env(req.box_id, req.box_type)
    # One look at the box's app containers; every decision below reads it (each look is a
    # listing and an inspect per container: it was four looks, ~30 ms of a step's ~45).
    facts = env.runtime.list(labels={Label.BOX: req.box_id, Label.ROLE: "app"})
    rotated = secrets_changed(env, release, facts=facts)  # compared here, on the box
    affected = box_changes(release, live_hashes(env, release, facts), rotated)[1]
    apps = list(req.lb_apps) if req.leave_all else [a for a in affected if a in req.lb_apps]
    lbs = [(a, lb) for a in apps if (lb := ctx.load_balancer(release, a)) is not None]
    if lbs and not facts:
        return record_out(ctx, req, release, [a for a, _ in lbs])
    # start-first: the box stays in service (its member moves in the swap), so it takes no
    # place from a budget and the capacity guard counts it in.
    lbs = [(a, lb) for a, lb in lbs if not stays_in(release, a, env, facts)]
    # The capacity guard reads every load balancer first: a refused box never leaves any.
    for app, lb in lbs:
        name = ctx.member(req.box_id, release.lb_kind(app))
        refused = refusal(lb.members(), name, release.spec.min_healthy)
        if refused:
            return StepOutcome(
                Outcome.FAILED, f"{app} ({lb.name}): {refused}", details={"refused": "1"}
            )
    # One budget per load balancer across box types: a full one sends the box back to
    # pending, untouched; a later release of a place fills its rollout again.
    if lbs:
        places = Budgets(ctx.redis, ctx.keys).reserve(
            req.box_id, req.box_type, req.rollout_id, req.token,
            [lb_key(release.lb_kind(a), release.spec.apps[a].elb or "",
                    ctx.settings.haproxy_socket) for a, _ in lbs],
        )
        if not places.ok:
            return StepOutcome(Outcome.DEFERRED, f"not leaving: {places.reason}")
    # Noted before leaving: a worker killed mid-leave still knows what to rejoin.
    ctx.journal.note(req.rollout_id, req.box_id, "intent:leave", {"apps": [a for a, _ in lbs]})
    record = ctx.record(req.box_id)
    left = []
    for app, lb in lbs:
        member = membership(ctx, req.box_id, release, app)
        # On the box's own disk first: whatever happens to Redis, the box knows to come back.
        record.left(req.rollout_id, req.token, app, member)
        ctx.redis.hset(ctx.keys.lb_state(req.box_id), app, "out")
        lb.leave(member.member)
        left.append(app)
        lb.wait_drained(member.member, ctx.settings.drain_timeout)
    return StepOutcome(
        Outcome.OK if left else Outcome.NOOP,
        f"left {', '.join(left)}" if left else "no load balancer to leave: nothing here changes",
        details={"left": ",".join(left)},
    )


def record_out(
    ctx: StepContext, req: StepRequest, release: Release, apps: list[str]
) -> StepOutcome:
    """A fresh box (no app container at all) was never in service: it is recorded out, not
    taken out, so join_lb proves it healthy and joins it."""
    record = ctx.record(req.box_id)
    for app in apps:
        record.left(req.rollout_id, req.token, app, membership(ctx, req.box_id, release, app))
        ctx.redis.hset(ctx.keys.lb_state(req.box_id), app, "out")
    return StepOutcome(
        Outcome.OK,
        f"recorded out, never in service: {', '.join(apps)}",
        details={"left": ",".join(apps)},
    )


def membership(ctx: StepContext, box_id: str, release: Release, app: str) -> Member:
    """This box's membership at the load balancer of `app` in `release`."""
    spec = release.spec.apps[app]
    kind = release.lb_kind(app)
    name = ctx.member(box_id, kind)
    return Member(kind=kind, name=spec.elb or "", member=name, port=spec.lb_port)


def left_apps(ctx: StepContext, req: StepRequest) -> list[str]:
    """What this box left in this chain: the leave_lb record, or, when its worker died
    mid-leave (no record), the intent leave_lb noted before leaving."""
    left = ctx.journal.get(req.rollout_id, req.box_id, str(TaskName.LEAVE_LB), None)
    if left is not None and (
        left.details.get("refused") == "1"
        or left.outcome in (Outcome.SKIPPED, Outcome.SUPERSEDED, Outcome.NOOP)
    ):
        return []
    if left is not None and left.outcome == Outcome.OK:
        return [a for a in left.details.get("left", "").split(",") if a]
    intent = ctx.journal.read_note(req.rollout_id, req.box_id, "intent:leave")
    return list(intent["apps"]) if intent else []


def join_lb(
    ctx: StepContext, req: StepRequest, release: Release, _: StepResult | None
) -> StepOutcome:
    """Rejoin whatever the box left (in this chain, or by the box's own record in an earlier
    one that did not come back), once what runs there is proven healthy."""
    record = ctx.record(req.box_id)
    out = dict(record.read().out)
    for app in left_apps(ctx, req):
        if app in release.spec.apps and release.spec.apps[app].elb:
            out.setdefault(app, membership(ctx, req.box_id, release, app))
    env = ctx.box_env(req.box_id, req.box_type)
    # A start-first member on another port than what runs (an HAProxy reload puts back the
    # configured one, a move was interrupted): every chain, a repair's too, puts it right.
    moved = [m for a in release.spec.apps if a not in out and (m := align(ctx, env, release, a))]
    if not out:
        record.settle()
        if moved:
            return StepOutcome(Outcome.OK, "; ".join(moved))
        return StepOutcome(Outcome.NOOP, "the box did not leave a load balancer")
    joined, unhealthy = rejoin(ctx, req.box_id, req.box_type, out, release)
    if unhealthy:
        return StepOutcome(
            Outcome.FAILED,
            "left out of its load balancer, not healthy (needs attention: "
            f"`orchestrator repair {req.box_id}`): " + "; ".join(unhealthy),
            details={"joined": ",".join(joined)},
        )
    record.settle()
    return StepOutcome(
        Outcome.OK, f"joined {', '.join(joined)}", details={"joined": ",".join(joined)}
    )


def rejoin(
    ctx: StepContext,
    box_id: str,
    box_type: str,
    out: dict[str, Member],
    release: Release | None = None,
) -> tuple[list[str], list[str]]:
    """Join each membership whose app proves healthy; (joined apps, `app: why not` lines)."""
    env = ctx.box_env(box_id, box_type)
    record = ctx.record(box_id)
    joined, unhealthy = [], []
    for app, member in out.items():
        problem = prove_healthy(ctx, env, app, release)
        if problem:
            unhealthy.append(f"{app}: {problem}")
            continue
        lb = ctx.member_lb(member)
        lb.join(member.member)
        lb.wait_in_service(member.member, ctx.settings.drain_timeout)
        record.joined(app)
        ctx.redis.hset(ctx.keys.lb_state(box_id), app, "in")
        joined.append(app)
    if joined and not unhealthy:
        give_back(ctx, box_id)
    return joined, unhealthy


def give_back(ctx: StepContext, box_id: str) -> None:
    """The box's places out of its load balancers are free: every rollout (of any box type)
    with a box waiting for one fills again."""
    woken = Budgets(ctx.redis, ctx.keys).release(box_id)
    if woken and ctx.rollouts is not None:
        ctx.rollouts.wake(woken)


def prove_healthy(ctx: StepContext, env: BoxEnv, app: str, release: Release | None) -> str:
    """'' when every container of the app that runs now passes its own release's check."""
    running = [
        f
        for f in env.runtime.list(labels={Label.BOX: env.box_id, Label.APP: app})
        if not is_aside(f)
    ]
    if not running:
        return "no container runs"
    for fact in running:
        rel = release
        if rel is None or fact.labels.get(Label.RELEASE) not in (None, rel.id):
            if not fact.labels.get(Label.RELEASE):
                return f"{fact.name} names no release: nothing to check it against"
            rel = ctx.releases.get(fact.labels[Label.RELEASE])
        if app not in rel.spec.apps:
            return f"{fact.name} is not in release {rel.id}"
        cspec = rel.spec.apps[app].containers.get(fact.labels.get(Label.CONTAINER, ""))
        if cspec is None:
            return f"{fact.name} is not in release {rel.id}"
        # What it publishes (a start-first version may run on the alternate ports).
        ports: list[tuple[str, int, int, str]] = list(fact.ports) or [
            (p.host_ip or env.bind_ip or "", p.host_port, p.container_port, p.protocol)
            for p in cspec.ports
        ]
        try:
            wait_healthy(
                env.runtime,
                fact,
                cspec,
                host=env.health_host,
                ports=ports,
                settle=0.0,
                deadline=ctx.deadline(),
            )
        except OrchestratorError as exc:
            return str(exc)
    return ""
