"""The box's deploy steps; each reads the box's outcome so far from the journal, not its input."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import ValidationError

from orchestrator.engine.changes import box_changes
from orchestrator.engine.events import Events
from orchestrator.engine.journal import Journal
from orchestrator.engine.redisconn import RedisClient
from orchestrator.engine.releases import ReleaseStore
from orchestrator.engine.rollouts import Rollouts
from orchestrator.errors import OrchestratorError, RegistryAuthFailed, RuntimeFailure
from schemas.contract import (
    CONTRACT_VERSION,
    Keys,
    Label,
    Outcome,
    StepRequest,
    StepResult,
    TaskName,
)
from schemas.refs import parse_image
from schemas.release import Release
from worker.capacity import refusal
from worker.decide import is_previous
from worker.health import wait_healthy
from worker.lb import LoadBalancer, make_load_balancer
from worker.secrets import SecretUnavailable, registry_auth
from worker.settings import WorkerSettings
from worker.swap import BoxEnv, SwapOutcome, reinstate, swap_app

log = logging.getLogger("orchestrator.worker")

# Steps that still act after a failure: a box that left its load balancer always comes back.
ACT_AFTER_FAILURE = {TaskName.RESTORE, TaskName.JOIN_LB, TaskName.FINISH}
# Steps that run before `claim` hands out the box's token.
BEFORE_CLAIM = {TaskName.PULL, TaskName.CLAIM}
# A message delivered this many times means the worker died running it each time.
MAX_ATTEMPTS = 2

Body = Callable[["StepContext", StepRequest, Release, StepResult | None], SwapOutcome]


@dataclass
class Busy:
    """Steps running now, by box; the heartbeat renews their slots only within deadline."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    running: dict[str, tuple[str, str, float]] = field(default_factory=dict)

    def start(self, req: StepRequest, step: str, deadline: float) -> None:
        with self.lock:
            self.running[req.box_id] = (req.rollout_id, step, deadline)

    def end(self, req: StepRequest) -> None:
        with self.lock:
            self.running.pop(req.box_id, None)

    def snapshot(self) -> dict[str, tuple[str, str, float]]:
        with self.lock:
            return dict(self.running)


@dataclass
class StepContext:
    settings: WorkerSettings
    redis: RedisClient
    keys: Keys
    journal: Journal
    releases: ReleaseStore
    events: Events
    box_env: Callable[[str, str], BoxEnv]
    lb_factory: Callable[[str, str, int | None], LoadBalancer] | None = None
    busy: Busy = field(default_factory=Busy)
    rollouts: Rollouts | None = None
    # The ensure_services step, boot and the reconciler must not start the same service;
    # re-entrant, as boot runs the ensure_services step.
    services_lock: threading.RLock = field(default_factory=threading.RLock)

    def load_balancer(self, release: Release, app: str) -> LoadBalancer | None:
        spec = release.spec.apps[app]
        kind = release.lb_kind(app)
        if spec.elb is None or kind == "none":
            return None
        if self.lb_factory is not None:
            return self.lb_factory(kind, spec.elb, spec.lb_port)
        return make_load_balancer(
            kind,
            spec.elb,
            member_port=spec.lb_port,
            haproxy_socket=self.settings.haproxy_socket,
            boto_session_kwargs={
                "region_name": self.settings.aws_region,
                **(
                    {"endpoint_url": self.settings.aws_endpoint_url}
                    if self.settings.aws_endpoint_url
                    else {}
                ),
            },
        )

    def member(self, box_id: str, kind: str) -> str:
        if kind == "haproxy":
            return self.settings.haproxy_server or box_id
        return box_id


def run_step(ctx: StepContext, step: TaskName, payload: object, body: Body) -> dict[str, object]:
    """Every step's protocol: contract, redelivery, fencing, attempts, failure gating, journal."""
    started = time.time()
    try:
        req = StepRequest.model_validate(payload)
    except ValidationError as exc:
        # Nothing to journal without ids: say so loudly; the chain goes on to its end.
        log.error("%s: malformed request: %s", step, exc)
        return {"step": str(step), "outcome": Outcome.FAILED, "reason": f"malformed: {exc}"}

    def result(outcome: Outcome, reason: str = "", **kw: object) -> StepResult:
        return StepResult(
            step=str(step),
            app=req.app,
            rollout_id=req.rollout_id,
            box_id=req.box_id,
            outcome=outcome,
            reason=reason,
            started=started,
            ended=time.time(),
            **kw,
        )

    done = ctx.journal.get(req.rollout_id, req.box_id, str(step), req.app)
    if done is not None:
        return done.model_dump(mode="json")  # a redelivery: the first run's result stands
    if req.token == 0 and step not in BEFORE_CLAIM:
        # A rollout's chain is enqueued before its claim: the token is the claimed one.
        claimed = ctx.redis.hget(ctx.keys.rollout_part(req.rollout_id, "tokens"), req.box_id)
        if claimed is None and step != TaskName.FINISH:  # finish counts unstarted boxes too
            out = result(Outcome.SKIPPED, "the box was not claimed: it did not start")
            return _finish(ctx, req, ctx.journal.record(out))
        if claimed is not None:
            req = req.model_copy(update={"token": int(claimed)})
    recorded = ctx.redis.get(ctx.keys.box_token(req.box_id))
    if req.token and recorded is not None and int(recorded) > req.token:
        out = result(Outcome.SUPERSEDED, f"token {req.token} < {int(recorded)} on this box")
        return _finish(ctx, req, ctx.journal.record(out))
    if req.contract_version != CONTRACT_VERSION:
        out = result(
            Outcome.FAILED,
            f"contract version {req.contract_version} != this worker's {CONTRACT_VERSION}",
        )
        return _finish(ctx, req, ctx.journal.record(out))

    attempts = ctx.journal.count_attempt(req.rollout_id, req.box_id, str(step), req.app)
    prior = ctx.journal.first_failure(req.rollout_id, req.box_id)
    if attempts > MAX_ATTEMPTS:
        out = result(Outcome.FAILED, f"delivered {attempts} times: the worker died running it")
        return _finish(ctx, req, ctx.journal.record(out))
    if prior is not None and step not in ACT_AFTER_FAILURE:
        out = result(Outcome.SKIPPED, f"after {prior.step} failed on this box")
        return _finish(ctx, req, ctx.journal.record(out))

    ctx.events.emit(
        req.box_type,
        rollout=req.rollout_id,
        box=req.box_id,
        app=req.app,
        step=str(step),
        phase="start",
    )
    ctx.busy.start(req, str(step), time.monotonic() + ctx.settings.step_deadline)
    try:
        release = ctx.releases.get(req.release_id, req.release_hash)
        outcome = body(ctx, req, release, prior)
    except OrchestratorError as exc:
        outcome = SwapOutcome(Outcome.FAILED, f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # an escaped error is a failure like any other: restore acts
        log.exception("%s on %s failed unexpectedly", step, req.box_id)
        outcome = SwapOutcome(Outcome.FAILED, f"internal error: {type(exc).__name__}: {exc}")
    finally:
        ctx.busy.end(req)
    out = result(
        outcome.outcome, outcome.reason, log_tail=outcome.log_tail, details=outcome.details
    )
    return _finish(ctx, req, ctx.journal.record(out))


def _finish(ctx: StepContext, req: StepRequest, res: StepResult) -> dict[str, object]:
    ctx.events.emit(
        req.box_type,
        rollout=req.rollout_id,
        box=req.box_id,
        app=req.app,
        step=res.step,
        phase="end",
        outcome=res.outcome,
        reason=res.reason,
        duration=f"{res.ended - res.started:.3f}",
    )
    return res.model_dump(mode="json")


def _deadline(ctx: StepContext) -> float:
    return time.monotonic() + ctx.settings.step_deadline


# How registries (through the engine) word a refused login or a missing one.
_AUTH_REFUSED = re.compile(
    r"no basic auth credentials|unauthorized|authentication required|access denied|"
    r"denied: requested access|incorrect username or password",
    re.IGNORECASE,
)


def pull_image(env: BoxEnv, release: Release, ref: str) -> None:
    """Pull `ref` with the credentials the release names for its registry, resolved here.

    A refusal by the registry becomes RegistryAuthFailed naming the image, the registry and the
    user; the password is resolved only for the engine and never appears in a message.
    """
    host = parse_image(ref).registry or "docker.io"
    try:
        auth = registry_auth(ref, release.registries, env.ssm)
    except SecretUnavailable as exc:
        raise SecretUnavailable(f"pull {ref}: credentials for registry {host}: {exc}") from None
    try:
        env.runtime.pull(ref, auth)
    except RuntimeFailure as exc:
        detail = str(exc).removeprefix(f"pull {ref}: ")
        if auth and auth["password"]:
            detail = detail.replace(auth["password"], "***")
        if not _AUTH_REFUSED.search(detail):
            if auth:
                raise RuntimeFailure(f"pull {ref}: {detail}") from None
            raise
        who = (
            f"as user {auth['username']!r}"
            if auth
            else "without credentials (the release lists none for this registry)"
        )
        raise RegistryAuthFailed(
            f"pull {ref}: authentication failed at registry {host} {who}: {detail}"
        ) from None


# --- the steps -------------------------------------------------------------------------


def pull(ctx: StepContext, req: StepRequest, release: Release, _: StepResult | None) -> SwapOutcome:
    """Pull every image of the chain by digest, while the box still serves."""
    env = ctx.box_env(req.box_id, req.box_type)
    refs = [release.image_of(a) for a in (req.changed_apps or release.spec.apps)]
    refs += [s.image for s in release.services.values()]
    pulled = [ref for ref in refs if not env.runtime.has_image(ref)]
    for ref in pulled:
        pull_image(env, release, ref)
    reason = f"pulled {len(pulled)} image(s)" if pulled else "all images present"
    return SwapOutcome(Outcome.OK if pulled else Outcome.NOOP, reason)


def live_hashes(env: BoxEnv, release: Release) -> dict[str, str]:
    """app -> the spec hash running now, for apps whose every container runs with one hash."""
    running = [
        f
        for f in env.runtime.list(labels={Label.BOX: env.box_id, Label.ROLE: "app"})
        if f.state == "running" and not is_previous(f)
    ]
    out = {}
    for app, spec in release.spec.apps.items():
        mine = [f for f in running if f.labels.get(Label.APP) == app]
        hashes = {f.labels.get(Label.SPEC_HASH, "") for f in mine}
        names = {f.labels.get(Label.CONTAINER) for f in mine}
        if len(hashes) == 1 and names == set(spec.containers):
            out[app] = hashes.pop()
    return out


def leave_lb(
    ctx: StepContext, req: StepRequest, release: Release, _: StepResult | None
) -> SwapOutcome:
    """Leave, once, the load balancers of the apps that change and of those depending on them.

    Decided from what runs on the box now, not from a heartbeat that may be seconds old.
    """
    # From here on, a restarted worker must bring this box back by itself.
    ctx.redis.set(ctx.keys.active_chain(req.box_id), req.model_dump_json())
    env = ctx.box_env(req.box_id, req.box_type)
    affected = box_changes(release, live_hashes(env, release))[1]
    apps = list(req.lb_apps) if req.leave_all else [a for a in affected if a in req.lb_apps]
    lbs = [(a, lb) for a in apps if (lb := ctx.load_balancer(release, a)) is not None]
    # The capacity guard reads every load balancer first: a refused box never leaves any.
    for app, lb in lbs:
        member = ctx.member(req.box_id, release.lb_kind(app))
        refused = refusal(lb.members(), member, release.spec.min_healthy)
        if refused:
            return SwapOutcome(
                Outcome.FAILED, f"{app} ({lb.name}): {refused}", details={"refused": "1"}
            )
    # Noted before leaving: a worker killed mid-leave still knows what to rejoin.
    ctx.journal.note(req.rollout_id, req.box_id, "intent:leave", {"apps": [a for a, _ in lbs]})
    left = []
    for app, lb in lbs:
        member = ctx.member(req.box_id, release.lb_kind(app))
        ctx.redis.hset(ctx.keys.lb_state(req.box_id), app, "out")
        lb.leave(member)
        left.append(app)
        lb.wait_drained(member, ctx.settings.drain_timeout)
    return SwapOutcome(
        Outcome.OK if left else Outcome.NOOP,
        f"left {', '.join(left)}" if left else "no load balancer to leave: nothing here changes",
        details={"left": ",".join(left)},
    )


def swap(ctx: StepContext, req: StepRequest, release: Release, _: StepResult | None) -> SwapOutcome:
    app = req.app
    if app is None or app not in release.spec.apps:
        return SwapOutcome(Outcome.FAILED, f"swap needs an app of release {release.id}: {app!r}")
    env = ctx.box_env(req.box_id, req.box_type)
    return swap_app(
        env,
        release,
        app,
        req.token,
        _deadline(ctx),
        lambda intent: ctx.journal.note(req.rollout_id, req.box_id, f"intent:swap:{app}", intent),
    )


def restore(
    ctx: StepContext, req: StepRequest, release: Release, prior: StepResult | None
) -> SwapOutcome:
    """After a failure: put back every app this box changed (or began to) in this rollout."""
    if prior is None:
        return SwapOutcome(Outcome.NOOP, "nothing failed")
    env = ctx.box_env(req.box_id, req.box_type)
    done, problems = [], []
    for app in reversed(req.changed_apps):
        intent = ctx.journal.read_note(req.rollout_id, req.box_id, f"intent:swap:{app}")
        if intent is None:
            continue  # never touched
        out = restore_app(ctx, env, app, intent, req.token)
        if out.outcome == Outcome.FAILED:
            problems.append(f"{app}: {out.reason}")
        elif out.outcome == Outcome.OK:
            done.append(app)
    if problems:
        return SwapOutcome(Outcome.FAILED, "; ".join(problems))
    return SwapOutcome(
        Outcome.OK if done else Outcome.NOOP,
        f"restored {', '.join(done)}" if done else "no app needed restoring",
        details={"restored": ",".join(done)},
    )


def restore_app(
    ctx: StepContext, env: BoxEnv, app: str, intent: dict[str, str | None], token: int
) -> SwapOutcome:
    from worker.swap import _facts  # one definition of "this app's containers"

    new_release = ctx.releases.get(str(intent["new_release"]))
    facts = _facts(env, new_release, app)
    previous = [f for f in facts if is_previous(f)]
    new = [
        f
        for f in facts
        if not is_previous(f) and f.labels.get(Label.SPEC_HASH) == intent["new_hash"]
    ]
    # Killed between stopping the old version and renaming it: it is stopped, not `.prev`.
    stopped_old = [f for f in facts if not is_previous(f) and f not in new and f.state != "running"]
    if previous or stopped_old:
        for fact in new:
            env.runtime.remove(fact.id)
        problem = reinstate(env, previous + stopped_old)
        if problem:
            return SwapOutcome(Outcome.FAILED, problem)
        return SwapOutcome(Outcome.OK, "previous containers restarted")
    if new and intent.get("previous_release"):
        old = ctx.releases.get(str(intent["previous_release"]))
        return swap_app(env, old, app, token, _deadline(ctx), lambda _: None)
    if new:
        for fact in new:
            env.runtime.remove(fact.id)
        return SwapOutcome(Outcome.OK, "removed: nothing ran here before")
    return SwapOutcome(Outcome.NOOP, "already on the previous version")


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
) -> SwapOutcome:
    """Rejoin whatever the box left, once what runs there is proven healthy."""
    apps = left_apps(ctx, req)
    if not apps:
        ctx.redis.delete(ctx.keys.active_chain(req.box_id))
        return SwapOutcome(Outcome.NOOP, "the box did not leave a load balancer")
    env = ctx.box_env(req.box_id, req.box_type)
    joined, unhealthy = [], []
    for app in apps:
        lb = ctx.load_balancer(release, app)
        if lb is None:
            continue
        problem = prove_healthy(ctx, env, app, release)
        if problem:
            unhealthy.append(f"{app}: {problem}")
            continue
        member = ctx.member(req.box_id, release.lb_kind(app))
        lb.join(member)
        lb.wait_in_service(member, ctx.settings.drain_timeout)
        ctx.redis.hset(ctx.keys.lb_state(req.box_id), app, "in")
        joined.append(app)
    ctx.redis.delete(ctx.keys.active_chain(req.box_id))
    if unhealthy:
        return SwapOutcome(
            Outcome.FAILED,
            "left out of its load balancer, not healthy (needs attention: "
            f"`orchestrator repair {req.box_id}`): " + "; ".join(unhealthy),
            details={"joined": ",".join(joined)},
        )
    return SwapOutcome(
        Outcome.OK, f"joined {', '.join(joined)}", details={"joined": ",".join(joined)}
    )


def prove_healthy(ctx: StepContext, env: BoxEnv, app: str, release: Release) -> str:
    """'' when every container of the app that runs now passes its own release's check."""
    running = [
        f
        for f in env.runtime.list(labels={Label.BOX: env.box_id, Label.APP: app})
        if not is_previous(f)
    ]
    if not running:
        return "no container runs"
    for fact in running:
        rel = release
        if fact.labels.get(Label.RELEASE) not in (None, release.id):
            rel = ctx.releases.get(fact.labels[Label.RELEASE])
        cspec = rel.spec.apps[app].containers.get(fact.labels.get(Label.CONTAINER, ""))
        if cspec is None:
            return f"{fact.name} is not in release {rel.id}"
        ports = [
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
                deadline=_deadline(ctx),
            )
        except OrchestratorError as exc:
            return str(exc)
    return ""


def ensure_services(
    ctx: StepContext, req: StepRequest, release: Release, _: StepResult | None
) -> SwapOutcome:
    from worker.services import ensure_services as ensure

    env = ctx.box_env(req.box_id, req.box_type)
    with ctx.services_lock:
        # The reconciler thread keeps this release's services running from now on.
        ctx.redis.set(ctx.keys.services(req.box_id), f"{release.id} {req.token}")
        changed = ensure(env, release, req.token)
    return SwapOutcome(
        Outcome.OK if changed else Outcome.NOOP,
        f"started {', '.join(changed)}" if changed else "services as specified",
    )


def rescue_chain(ctx: StepContext, task: str, payload: object, error: str) -> None:
    """After an escaped error: record it as the step's failure, then restore and rejoin."""
    req = StepRequest.model_validate(payload)
    now = time.time()
    ctx.journal.record(
        StepResult(
            step=task,
            app=req.app,
            rollout_id=req.rollout_id,
            box_id=req.box_id,
            outcome=Outcome.FAILED,
            reason=f"escaped error: {error}",
            started=now,
            ended=now,
        )
    )
    base = req.model_copy(update={"app": None}).model_dump(mode="json")
    for step in (TaskName.RESTORE, TaskName.JOIN_LB):
        run_step(ctx, step, base, STEPS[step])


STEPS: dict[TaskName, Body] = {
    TaskName.PULL: pull,
    TaskName.LEAVE_LB: leave_lb,
    TaskName.SWAP: swap,
    TaskName.RESTORE: restore,
    TaskName.JOIN_LB: join_lb,
    TaskName.ENSURE_SERVICES: ensure_services,
}
