"""Every step's protocol: contract, redelivery, fencing, attempts, failure gating, journal."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from pydantic import ValidationError

from orchestrator.engine.events import Events
from orchestrator.engine.journal import Journal
from orchestrator.engine.lb import LoadBalancer, make_load_balancer
from orchestrator.engine.redisconn import RedisClient
from orchestrator.engine.releases import ReleaseStore
from orchestrator.engine.rollouts import Rollouts
from orchestrator.errors import Fenced, OrchestratorError
from schemas.contract import (
    CONTRACT_VERSION,
    Keys,
    Member,
    Outcome,
    StepRequest,
    StepResult,
    TaskName,
)
from schemas.redaction import validation_text
from schemas.release import Release
from schemas.trust import SignedCurrent
from worker.facts import BoxEnv
from worker.fence import ChainFence, Fault, FencedLB, FencedRuntime, Guard
from worker.limits import check_release
from worker.record import BoxRecord
from worker.settings import WorkerSettings
from worker.steps.opening import Opening, read_opening
from worker.trust import refusal

log = logging.getLogger("orchestrator.worker")

# Steps that still act after a failure: a box that left its load balancer always comes back.
ACT_AFTER_FAILURE = {TaskName.RESTORE, TaskName.JOIN_LB, TaskName.FINISH}
# Steps that run before `claim` hands out the box's token.
BEFORE_CLAIM = {TaskName.PULL, TaskName.CLAIM}
# Steps that change nothing on the box: no token is needed (finish only counts the box).
UNFENCED = BEFORE_CLAIM | {TaskName.FINISH}
# Steps after leave_lb: a box whose leave was deferred runs none of them in this chain.
AFTER_LEAVE = {TaskName.SWAP, TaskName.RESTORE, TaskName.JOIN_LB, TaskName.ENSURE_SERVICES}
# A message delivered this many times means the worker died running it each time.
MAX_ATTEMPTS = 2


@dataclass(frozen=True)
class StepOutcome:
    """What a step's body says happened; the protocol journals it as the step's result."""

    outcome: Outcome
    reason: str = ""
    log_tail: str = ""
    details: dict[str, str] = field(default_factory=dict)


Body = Callable[["StepContext", StepRequest, Release, StepResult | None], StepOutcome]


@dataclass
class Busy:
    """Steps running now, by box; the heartbeat renews their slots only within deadline."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    running: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    # Boxes whose chain ended (their finish step) since the heartbeat last looked, and its
    # wake-up: it beats for them at once, so `status` right after a rollout reads what runs
    # now, not a beat of up to an interval before (which still said "busy", the old release).
    settled: set[str] = field(default_factory=set)
    woken: threading.Event = field(default_factory=threading.Event)

    def start(self, req: StepRequest, step: str, deadline: float) -> None:
        with self.lock:
            self.running[req.box_id] = (req.rollout_id, step, deadline)

    def end(self, req: StepRequest) -> None:
        with self.lock:
            was = self.running.pop(req.box_id, None)
            if was is not None and was[1] == TaskName.FINISH.value:
                self.settled.add(req.box_id)
                self.woken.set()

    def take_settled(self) -> set[str]:
        """The boxes settled since the last call (the wake-up cleared with them)."""
        with self.lock:
            settled, self.settled = self.settled, set()
            self.woken.clear()
            return settled

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
    make_env: Callable[[str, str], BoxEnv]
    lb_factory: Callable[[str, str, int | None], LoadBalancer] | None = None
    busy: Busy = field(default_factory=Busy)
    rollouts: Rollouts | None = None
    # The ensure_services step, boot and the reconciler must not start the same service;
    # re-entrant, as boot runs the ensure_services step.
    services_lock: threading.RLock = field(default_factory=threading.RLock)
    # One actor per box at a time: a step, boot, or the recovery of the box's own record.
    box_locks: dict[str, threading.RLock] = field(default_factory=dict)
    acting: threading.local = field(default_factory=threading.local)
    fault: Fault = field(default_factory=lambda: Fault(None))
    # box -> (when its unfinished record may be tried again, the last pause)
    retries: dict[str, tuple[float, float]] = field(default_factory=dict)
    # This worker's box type: an order for another type is refused whatever it says.
    box_type: str | None = None
    # box -> the last reason its convergence was refused (said once, not every tick)
    refusals: dict[str, str] = field(default_factory=dict)

    def box_env(self, box_id: str, box_type: str) -> BoxEnv:
        """The box's environment; inside a step, its runtime asks the step's fence first."""
        env = self.make_env(box_id, box_type)
        guard = getattr(self.acting, "guard", None)
        if guard is None:
            return env
        return replace(env, runtime=FencedRuntime(env.runtime, guard, self._fault_hook()))

    def load_balancer(self, release: Release, app: str) -> LoadBalancer | None:
        spec = release.spec.apps[app]
        kind = release.lb_kind(app)
        if spec.elb is None or kind == "none":
            return None
        lb = self.raw_load_balancer(kind, spec.elb, spec.lb_port)
        guard = getattr(self.acting, "guard", None)
        return lb if guard is None else FencedLB(lb, guard, self._fault_hook())

    def raw_load_balancer(self, kind: str, name: str, port: int | None) -> LoadBalancer:
        if self.lb_factory is not None:
            return self.lb_factory(kind, name, port)
        endpoint = self.settings.aws_endpoint_url
        return make_load_balancer(
            kind,
            name,
            member_port=port,
            haproxy_socket=self.settings.haproxy_socket,
            boto_session_kwargs={
                "region_name": self.settings.aws_region,
                **({"endpoint_url": endpoint} if endpoint else {}),
            },
        )

    def member_lb(self, member: Member) -> LoadBalancer:
        """The load balancer of a recorded membership, fenced like any other inside a step."""
        lb = self.raw_load_balancer(member.kind, member.name, member.port)
        guard = getattr(self.acting, "guard", None)
        return lb if guard is None else FencedLB(lb, guard, self._fault_hook())

    def member(self, box_id: str, kind: str) -> str:
        if kind == "haproxy":
            return self.settings.haproxy_server or box_id
        return box_id

    def record(self, box_id: str) -> BoxRecord:
        return BoxRecord(self.settings.state_dir, box_id)

    def box_lock(self, box_id: str) -> threading.RLock:
        return self.box_locks.setdefault(box_id, threading.RLock())

    @contextmanager
    def box_if_free(self, box_id: str) -> Iterator[bool]:
        """The box's lock if nobody holds it now (True inside), else False at once: the
        background work (tick, start) never waits for, nor runs beside, a step of the box."""
        lock = self.box_lock(box_id)
        if not lock.acquire(blocking=False):
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    @contextmanager
    def acting_as(self, guard: Guard | None, step: str) -> Iterator[None]:
        """Inside: every change this thread makes to the box asks `guard` first."""
        self.acting.guard, self.acting.step = guard, step
        try:
            yield
        finally:
            self.acting.guard = self.acting.step = None

    def _fault_hook(self) -> Callable[[str], None]:
        step = getattr(self.acting, "step", None) or "-"
        return lambda action: self.fault.hit(step, action)

    def retry_at(self, box_id: str) -> float:
        return self.retries.get(box_id, (0.0, 0.0))[0]

    def backoff(self, box_id: str, *, done: bool) -> None:
        """A record left unfinished is tried again later and later (up to 5 minutes)."""
        if done:
            self.retries.pop(box_id, None)
            return
        pause = min(
            300.0,
            max(self.settings.heartbeat_interval, 2 * self.retries.get(box_id, (0.0, 0.0))[1]),
        )
        self.retries[box_id] = (time.monotonic() + pause, pause)

    def deadline(self) -> float:
        """The monotonic time by which a step started now must be done."""
        return time.monotonic() + self.settings.step_deadline


def run_step(
    ctx: StepContext,
    step: TaskName,
    payload: object,
    body: Body,
    current: SignedCurrent | None = None,
) -> dict[str, object]:
    """Run `body` as `step` once the gates let it; journal and return the step's result.

    `current`: the signed current record the box verified itself (boot, catch-up) instead
    of a rollout's signed order; a task from the queue never has one."""
    started = time.time()
    try:
        req = StepRequest.model_validate(payload)
    except ValidationError as exc:
        # Nothing to journal without ids: say so loudly; the chain goes on to its end.
        why = validation_text(exc)  # not str(exc): it quotes the payload's values
        log.error("%s: malformed request: %s", step, why)
        return {"step": str(step), "outcome": Outcome.FAILED, "reason": f"malformed: {why}"}
    opened = read_opening(ctx.redis, ctx.keys, req)
    done = opened.result(str(step), req.app)
    if done is not None and done.outcome != Outcome.DEFERRED:
        return done.model_dump(mode="json")  # a redelivery: the first run's result stands
    claimed = _with_claimed_token(step, req, opened)
    if isinstance(claimed, StepOutcome):
        return _record(ctx, step, req, started, claimed)
    req = claimed
    # Nothing acts before the box has verified who ordered it (worker/trust.py).
    why = refusal(ctx, step, req, current, opened)
    if why:
        log.error("%s on %s refused: %s", step, req.box_id, why)
        return _record(ctx, step, req, started, StepOutcome(Outcome.REFUSED, f"refused: {why}"))
    refused, prior = _gate(ctx, step, req, opened)
    if refused is not None:
        return _record(ctx, step, req, started, refused)
    return _record(ctx, step, req, started, _run_body(ctx, step, req, prior, body, opened))


def _with_claimed_token(
    step: TaskName, req: StepRequest, opened: Opening
) -> StepRequest | StepOutcome:
    """A rollout's chain is enqueued before its claim: the token is the claimed one."""
    if req.token or step in BEFORE_CLAIM:
        return req
    claimed = opened.claimed
    if claimed is None and step != TaskName.FINISH:  # finish counts unstarted boxes too
        return StepOutcome(Outcome.SKIPPED, "the box was not claimed: it did not start")
    if claimed is None:
        return req
    return req.model_copy(update={"token": claimed})


def _gate(
    ctx: StepContext, step: TaskName, req: StepRequest, opened: Opening
) -> tuple[StepOutcome | None, StepResult | None]:
    """Why the step must not run (fenced off, another contract, redelivered too often, after a
    failure), or None; and the box's first failure in this chain, which restore acts on."""
    # A chain that carries a token (all but a rollout's pull and claim) acts only with it.
    if step not in UNFENCED or (req.token and step != TaskName.FINISH):
        owner = opened.owner
        if owner is None or owner[0] != req.token:
            held = (
                "no token (revoked, or lost with Redis's data)"
                if owner is None
                else (f"token {owner[0]} of {owner[1]}")
            )
            reason = f"fenced: this chain's token is {req.token or 'none'}; the box has {held}"
            return StepOutcome(Outcome.SUPERSEDED, reason), None
    if req.contract_version != CONTRACT_VERSION:
        reason = f"contract version {req.contract_version} != this worker's {CONTRACT_VERSION}"
        return StepOutcome(Outcome.FAILED, reason), None
    if step in AFTER_LEAVE:
        left = opened.result(str(TaskName.LEAVE_LB), None)
        if left is not None and left.outcome == Outcome.DEFERRED:
            why = "the box did not leave its load balancer (its budget was spent)"
            return StepOutcome(Outcome.DEFERRED, why), None
    prior = opened.first_failure()
    runs = prior is None or step in ACT_AFTER_FAILURE
    # The step's start is announced in the count's round trip, when it runs.
    start = ctx.events.announcement(req.box_type, rollout=req.rollout_id, box=req.box_id,
                                    app=req.app, step=str(step), phase="start")
    attempts = ctx.journal.count_attempt(req.rollout_id, req.box_id, str(step), req.app,
                                         start, MAX_ATTEMPTS if runs else 0)
    if attempts > MAX_ATTEMPTS:
        reason = f"delivered {attempts} times: the worker died running it"
        return StepOutcome(Outcome.FAILED, reason), prior
    if not runs and prior is not None:
        return StepOutcome(Outcome.SKIPPED, f"after {prior.step} failed on this box"), prior
    return None, prior


def _run_body(
    ctx: StepContext,
    step: TaskName,
    req: StepRequest,
    prior: StepResult | None,
    body: Body,
    opened: Opening,
) -> StepOutcome:
    """The body (its start announced by the gate), marked busy, alone on its box and fenced
    at every action; whatever it raises becomes a failed outcome (a fenced action:
    superseded)."""
    guard = None if step in UNFENCED else ChainFence(ctx.redis, ctx.keys, req.box_id, req.token)
    ctx.busy.start(req, str(step), ctx.deadline())
    try:
        with ctx.box_lock(req.box_id), ctx.acting_as(guard, str(step)):
            release = opened.release(req)
            if step not in ACT_AFTER_FAILURE:
                # Before anything is touched: a release asking for a denied host path fails here.
                check_release(release, ctx.settings)
            return body(ctx, req, release, prior)
    except Fenced as exc:
        log.warning("%s on %s stopped: %s", step, req.box_id, exc)
        return StepOutcome(Outcome.SUPERSEDED, f"fenced: {exc}")
    except OrchestratorError as exc:
        return StepOutcome(Outcome.FAILED, f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # an escaped error is a failure like any other: restore acts
        log.exception("%s on %s failed unexpectedly", step, req.box_id)
        return StepOutcome(Outcome.FAILED, f"internal error: {type(exc).__name__}: {exc}")
    finally:
        ctx.busy.end(req)


def _record(
    ctx: StepContext, step: TaskName, req: StepRequest, started: float, out: StepOutcome
) -> dict[str, object]:
    """Journal the step's result and announce its end, in one round trip."""
    end = ctx.events.announcement(req.box_type, rollout=req.rollout_id, box=req.box_id,
                                  app=req.app, step=str(step), phase="end")
    res = ctx.journal.record(
        StepResult(
            step=str(step),
            app=req.app,
            rollout_id=req.rollout_id,
            box_id=req.box_id,
            outcome=out.outcome,
            reason=out.reason,
            log_tail=out.log_tail,
            details=out.details,
            started=started,
            ended=time.time(),
        ),
        end,
    )
    return res.model_dump(mode="json")
