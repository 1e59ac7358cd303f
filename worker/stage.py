"""start-first staging: the next version started in preflight, its box's turn adopts it."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import redis

from orchestrator.errors import DeployError, OrchestratorError, StartFailed
from schemas.contract import Label, TaskName
from schemas.release import Release
from schemas.strategy import MOVABLE_KINDS, color_map, is_start_first
from worker.decide import _same_secrets, is_managed, is_previous, is_staged
from worker.facts import BoxEnv, ContainerFact
from worker.health import wait_healthy
from worker.runspec import STAGED_SUFFIX
from worker.secrethash import wanted_hashes
from worker.steps.protocol import StepContext
from worker.swap import start_app, swap_decision

log = logging.getLogger("orchestrator.worker")

# Rollout states in which the box's turn may still come: what is staged for it stays.
WAITING = ("preflight", "running", "baking", "paused")
# The box's turn re-checks staged containers once, briefly: a doubt means the usual start.
QUICK_CHECK = 2.0


def running_ports(facts: Iterable[ContainerFact]) -> set[int]:
    """The host ports the running containers among `facts` publish."""
    return {b.host_port for f in facts if f.state == "running" for b in f.ports}


# --- pure decisions ------------------------------------------------------------------------
@dataclass(frozen=True)
class Unstage:
    """Staged containers to remove (each with why) and the record's notes that go with them."""

    remove: tuple[tuple[ContainerFact, str], ...] = ()
    drop: tuple[str, ...] = ()


def _stale(note: Mapping[str, str], states: Mapping[str, str], over: set[str], *,
           restarted: bool, preparing: str | None) -> str:
    rollout = note.get("rollout", "")
    if preparing is not None and rollout != preparing:
        return f"rollout {preparing} prepares the box now"
    state = states.get(rollout, "")
    if state not in WAITING:
        return f"rollout {rollout} is {state or 'gone'}"
    if rollout in over:
        return f"the box's turn in rollout {rollout} is over"
    if note.get("state") != "ready" and restarted:  # else: a staging under way, left alone
        return "its staging was cut short by a worker restart"
    return ""


def decide_unstage(
    found: Iterable[ContainerFact],
    noted: Mapping[str, Mapping[str, str]],
    states: Mapping[str, str],
    over: set[str],
    *,
    restarted: bool = False,
    preparing: str | None = None,
) -> Unstage:
    """What goes of what is staged on the box. `noted`: the box record's staging notes (app ->
    rollout, release, spec_hash, state); `states`: rollout -> its state ('' when gone);
    `over`: rollouts in which the box's turn is over (done, claim refused); `preparing`: the
    rollout whose preflight runs now. A staged container stays only while the record says it
    was staged, healthy, for a rollout that may still give the box its turn."""
    drop = {app: why for app, note in noted.items()
            if (why := _stale(note, states, over, restarted=restarted, preparing=preparing))}
    found = list(found)
    remove = []
    for fact in found:
        app = fact.labels.get(Label.APP, "")
        note = noted.get(app)
        if note is None:
            remove.append((fact, "no staging of it is recorded"))
        elif app in drop:
            remove.append((fact, drop[app]))
        elif (fact.labels.get(Label.RELEASE), fact.labels.get(Label.SPEC_HASH)) != (
                note.get("release"), note.get("spec_hash")):
            remove.append((fact, f"staged for another release than {note.get('release')}"))
    # A ready note whose containers are all gone (removed by hand, the engine restarted).
    apps_found = {f.labels.get(Label.APP, "") for f in found}
    gone = [a for a, n in noted.items() if n.get("state") == "ready" and a not in apps_found]
    return Unstage(remove=tuple(remove), drop=tuple(sorted(set(drop) | set(gone))))


def decide_adopt(
    found: Iterable[ContainerFact],
    *,
    release_id: str,
    spec_hash: str,
    containers: Iterable[str],
    ports: set[int],
    secret_hashes: Mapping[str, str] | None = None,
) -> tuple[tuple[ContainerFact, ...], str]:
    """The staged containers a box's turn takes as its new version, or () and why not: every
    container of the app, of this release and spec, running, on the ports it would start on."""
    found = list(found)
    if not found:
        return (), "nothing staged"
    wanted = set(containers)
    mine = [f for f in found if f.labels.get(Label.RELEASE) == release_id
            and f.labels.get(Label.SPEC_HASH) == spec_hash
            and _same_secrets(f, secret_hashes or {})]
    if not mine:
        return (), "staged for another release or secret values"
    if {f.labels.get(Label.CONTAINER) for f in mine} != wanted or len(mine) != len(wanted):
        return (), "the staged set is not the app's containers"
    if any(f.state != "running" for f in mine):
        return (), "a staged container no longer runs"
    if not {b.host_port for f in mine for b in f.ports} <= ports:
        return (), "staged on ports the serving version uses"
    return tuple(mine), ""


# --- Docker actions --------------------------------------------------------------------------
def staged_facts(env: BoxEnv, app: str | None = None) -> list[ContainerFact]:
    labels = {Label.BOX: env.box_id, **({Label.APP: app} if app else {})}
    return [f for f in env.runtime.list(labels=labels) if is_staged(f) and is_managed(f)]


def overlap_ports(ctx: StepContext, env: BoxEnv, release: Release, app: str
                  ) -> dict[int, int] | None:
    """The port map the app's start-first swap would start its next version on; None when
    that swap would not overlap (not start-first, no movable LB, nothing serving)."""
    spec = release.spec.apps[app]
    if not is_start_first(spec) or release.lb_kind(app) not in MOVABLE_KINDS:
        return None
    if ctx.load_balancer(release, app) is None:
        return None
    decision = swap_decision(env, release, app)
    serving = [f for f in decision.keep if f.state == "running" and not is_previous(f)]
    if not decision.needed or not serving or len(serving) != len(decision.keep):
        return None
    return color_map(spec, running_ports(serving))


def stage_apps(ctx: StepContext, env: BoxEnv, release: Release, apps: list[str],
               rollout_id: str, token: str) -> list[str]:
    """Preflight: start each start-first app's next version beside the serving one; the
    problems (then nothing of this rollout stays staged). Touches no load balancer."""
    if ctx.rollouts is None:
        return []
    record = ctx.record(env.box_id)
    if not record.read().staged and not any(is_start_first(release.spec.apps[a]) for a in apps):
        return []  # nothing to stage, nothing staged: a stop-first preflight never waits on the box
    with ctx.box_lock(env.box_id):
        sweep(ctx, env.box_id, env.box_type, preparing=rollout_id)
        for app in apps:
            ports = overlap_ports(ctx, env, release, app)
            if ports is None:
                continue
            for fact in staged_facts(env, app):
                env.runtime.remove(fact.id)
            note = {"rollout": rollout_id, "release": release.id,
                    "spec_hash": release.spec_hash(app), "state": "starting"}
            record.stage(app, note)  # before starting: a worker killed now removes them
            try:
                start_app(env, release, app, token, ctx.deadline(), ports=ports,
                          suffix=STAGED_SUFFIX)
            except OrchestratorError as exc:
                unstage_all(ctx, env)
                return [f"{app}: staging its next version failed: {exc}"]
            ctx.fault.hit(TaskName.PREFLIGHT.value, "staged")  # drills: killed mid-staging
            record.stage(app, {**note, "state": "ready"})
    return []


def unstage_all(ctx: StepContext, env: BoxEnv) -> None:
    """Remove every staged container of the box, and its notes."""
    for fact in staged_facts(env):
        env.runtime.remove(fact.id)
    record = ctx.record(env.box_id)
    record.unstage(list(record.read().staged))


def sweep(ctx: StepContext, box_id: str, box_type: str, *, restarted: bool = False,
          preparing: str | None = None, over: str | None = None) -> list[str]:
    """Remove what is staged on the box and not for its next turn; what was removed, and why."""
    record = ctx.record(box_id)
    noted = record.read().staged
    if not noted and not restarted and preparing is None:
        return []  # nothing was staged since the worker started
    env = ctx.make_env(box_id, box_type)  # staging is no chain's: no fence
    found = staged_facts(env)
    if not noted and not found:
        return []
    rollouts = {n.get("rollout", "") for n in noted.values()}
    states = {r: ctx.rollouts.state(r) if ctx.rollouts else "" for r in rollouts}
    done = {r for r in rollouts if ctx.rollouts and r and box_id in ctx.rollouts.done(r)}
    decision = decide_unstage(found, noted, states, done | ({over} if over else set()),
                              restarted=restarted, preparing=preparing)
    said = []
    for fact, why in decision.remove:
        env.runtime.remove(fact.id)
        said.append(f"removed staged {fact.name.lstrip('/')}: {why}")
        log.warning("box %s: %s", box_id, said[-1])
    record.unstage(list(decision.drop))
    return said


def take_staged(env: BoxEnv, release: Release, app: str, ports: dict[int, int],
                looked: Iterable[ContainerFact]) -> tuple[tuple[ContainerFact, ...], str]:
    """The box's turn: the staged containers it adopts (re-checked healthy once), or () and
    why not; whatever it does not adopt is removed. `looked`: the swap's look at the app."""
    found = [f for f in looked if is_staged(f) and is_managed(f)]
    spec = release.spec.apps[app]
    picked, why = decide_adopt(
        found, release_id=release.id, spec_hash=release.spec_hash(app),
        containers=spec.containers, ports=set(ports.values()),
        secret_hashes=wanted_hashes(env, release, app),
    )
    until = time.monotonic() + QUICK_CHECK
    try:
        for fact in picked:
            cspec = spec.containers[fact.labels[Label.CONTAINER]]
            wait_healthy(env.runtime, fact, cspec, host=env.health_host, ports=list(fact.ports),
                         settle=0.0, deadline=until)
    except OrchestratorError as exc:
        picked, why = (), f"a staged container is not healthy: {exc}"
    for fact in found:
        if fact not in picked:
            env.runtime.remove(fact.id)
    return picked, why


def adopt(env: BoxEnv, staged: Iterable[ContainerFact]) -> None:
    """Staged containers take their serving names (the serving ones were renamed `.prev`)."""
    staged = list(staged)
    try:
        for fact in staged:
            env.runtime.rename(fact.id, fact.name.lstrip("/").removesuffix(STAGED_SUFFIX))
    except DeployError as exc:
        for fact in staged:
            env.runtime.remove(fact.id)
        raise StartFailed(f"adopting the staged containers: {exc}", "") from exc



def tidy(ctx: StepContext, box_id: str, box_type: str, *, restarted: bool = False) -> None:
    """The heartbeat tick and the worker's start: sweep, unless a step acts on the box now."""
    with ctx.box_if_free(box_id) as free:
        if not free:
            return
        try:
            sweep(ctx, box_id, box_type, restarted=restarted)
        except (OrchestratorError, redis.RedisError) as exc:  # the next tick tries again
            log.warning("box %s: staged containers not swept: %s", box_id, exc)
