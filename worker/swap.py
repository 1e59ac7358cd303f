"""Swap one app's containers: keep the old until the new is healthy; put it back if not."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace

from orchestrator.errors import DeployError, StartFailed
from schemas.boxfile import ContainerSpec
from schemas.contract import Label, Outcome
from schemas.release import Release
from worker.decide import (
    SwapDecision,
    SwapIntent,
    app_facts,
    decide_swap,
    is_managed,
    is_previous,
)
from worker.facts import BoxEnv, ContainerFact, RunRequest
from worker.health import wait_healthy
from worker.runspec import PREVIOUS_SUFFIX, build_run_request, log_dirs
from worker.secrethash import box_key, remember, secret_hash, wanted_hashes
from worker.secrets import resolve_env
from worker.steps.protocol import StepOutcome


def look(env: BoxEnv, release: Release, app: str) -> list[ContainerFact]:
    """One look at the app on the box: ours by labels (staged ones too), and a
    pre-orchestrator deploy's containers, named as box.yml names them, without labels."""
    names = list(release.spec.apps[app].containers)
    ours = env.runtime.list(labels={Label.BOX: env.box_id, Label.APP: app})
    legacy = env.runtime.list(names=names + [n + PREVIOUS_SUFFIX for n in names])
    seen = {f.id for f in ours}
    return ours + [f for f in legacy if f.id not in seen and not is_managed(f)]


def app_containers(
    env: BoxEnv, release: Release, app: str, looked: list[ContainerFact] | None = None
) -> list[ContainerFact]:
    """This app's containers on the box, in any state: what its swap and restore decide on.
    `looked`: the caller's `look` at the app, just taken."""
    facts = look(env, release, app) if looked is None else looked
    names = list(release.spec.apps[app].containers)
    return app_facts(facts, box_id=env.box_id, app=app, container_names=names)


def _requests(
    env: BoxEnv, release: Release, app: str, token: str, ports: dict[int, int] | None = None,
    suffix: str = "",
) -> list[tuple[RunRequest, ContainerSpec]]:
    spec = release.spec.apps[app]
    out = []
    key = box_key(env.state_dir) if env.state_dir else None
    for name, cspec in spec.containers.items():
        values = resolve_env(cspec.env, env.ssm)
        req = build_run_request(
            box_id=env.box_id,
            box_type=env.box_type,
            app=app,
            container=name,
            spec=cspec,
            image=release.image_of(app),
            env=values,
            spec_hash=release.spec_hash(app),
            release=release.id,
            token=token,
            role="app",
            log_root=env.log_root,
            bind_ip=env.bind_ip,
            hostname=env.hostname,
        )
        if env.extra_labels:
            req = replace(req, labels={**req.labels, **env.extra_labels})
        if key is not None and (hashed := secret_hash(key, cspec.env, values)):
            # Which values it started with, as a keyed hash: a rotation shows as a change.
            req = replace(req, labels={**req.labels, Label.SECRET_HASH: hashed})
        if ports:  # start-first: the host ports the running version does not use
            req = replace(req, ports=[b._replace(host_port=ports.get(b.host_port, b.host_port))
                                      for b in req.ports])
        if suffix:  # staged ahead of the box's turn: a name nothing takes for the serving one
            req = replace(req, name=req.name + suffix)
        out.append((req, cspec))
    return out


def start_app(
    env: BoxEnv, release: Release, app: str, token: str, deadline: float,
    ports: dict[int, int] | None = None, suffix: str = "",
) -> list[ContainerFact]:
    """Start every container of the app and prove each healthy; on failure remove them all."""
    started: list[tuple[ContainerFact, RunRequest, ContainerSpec]] = []
    try:
        for req, cspec in _requests(env, release, app, token, ports, suffix):
            for d in log_dirs(req):
                os.makedirs(d, exist_ok=True)
            started.append((env.runtime.run(req), req, cspec))
        for fact, req, cspec in started:
            wait_healthy(
                env.runtime,
                fact,
                cspec,
                host=env.health_host,
                ports=list(req.ports),
                settle=env.settle_time,
                deadline=deadline,
            )
    except DeployError as exc:
        # The failing container's last lines are the first thing a person asks for.
        tail = ""
        for fact, _, _ in started:
            tail = tail or _tail(env, fact)
            env.runtime.remove(fact.id)
        raise StartFailed(f"{type(exc).__name__}: {exc}", tail) from exc
    return [fact for fact, _, _ in started]


def _tail(env: BoxEnv, fact: ContainerFact) -> str:
    try:
        return env.runtime.logs_tail(fact.id, 20)
    except DeployError:
        return ""


def _original_name(fact: ContainerFact) -> str:
    return fact.name.lstrip("/").removesuffix(PREVIOUS_SUFFIX)


def reinstate(env: BoxEnv, keep: list[ContainerFact] | tuple[ContainerFact, ...]) -> str:
    """Put the kept version back under its own name and start it; '' or what went wrong."""
    problems = []
    for fact in keep:
        try:
            if is_previous(fact):
                env.runtime.rename(fact.id, _original_name(fact))
            env.runtime.start(fact.id)
        except DeployError as exc:
            problems.append(f"{_original_name(fact)}: {exc}")
    if not problems and keep:
        time.sleep(min(env.settle_time, 1.0))
        names = [_original_name(f) for f in keep]
        for fact in env.runtime.list(names=names):
            if fact.state != "running":
                problems.append(f"{fact.name} is {fact.state} after restart")
    return "; ".join(problems)


def swap_decision(
    env: BoxEnv, release: Release, app: str, looked: list[ContainerFact] | None = None
) -> SwapDecision:
    """What swapping `app` to `release` takes, from what runs on the box (both strategies)."""
    return decide_swap(
        app_containers(env, release, app, looked),
        container_names=release.spec.apps[app].containers,
        spec_hash=release.spec_hash(app),
        secret_hashes=wanted_hashes(env, release, app),
    )


def swap_app(
    env: BoxEnv,
    release: Release,
    app: str,
    token: str,
    deadline: float,
    note_intent: Callable[[dict[str, str | None]], None],
) -> StepOutcome:
    """Bring one app to `release`: a no-op when its spec hash already runs."""
    spec_hash = release.spec_hash(app)
    decision = swap_decision(env, release, app)
    if not decision.needed:
        for fact in decision.discard:
            env.runtime.remove(fact.id)
        return StepOutcome(Outcome.NOOP, decision.reason, details={"spec_hash": spec_hash})

    # Written before acting: a worker killed mid-swap finds what to put back.
    note_intent(
        SwapIntent(
            new_hash=spec_hash,
            new_release=release.id,
            previous_hash=decision.previous_hash,
            previous_release=decision.previous_release,
            adopted=decision.adopted,
        ).note()
    )
    for fact in decision.discard:
        env.runtime.remove(fact.id)
    kept: list[ContainerFact] = []
    for fact in decision.keep:
        if fact.state == "running":
            env.runtime.stop(fact.id, _stop_timeout(release, app, fact))
        if not is_previous(fact):
            env.runtime.rename(fact.id, _original_name(fact) + PREVIOUS_SUFFIX)
        kept.append(fact)
    try:
        start_app(env, release, app, token, deadline)
    except StartFailed as exc:
        back = reinstate(env, [_renamed(f) for f in kept])
        reason = str(exc)
        if back:
            reason += f"; and the previous version did not come back: {back}"
        return StepOutcome(
            Outcome.FAILED,
            reason,
            log_tail=exc.log_tail,
            details={
                "previous_release": decision.previous_release or "",
                "restored": "" if back else "1",
            },
        )
    for fact in kept:
        # A pre-orchestrator deploy's containers stay (stopped, `.prev`) for a manual clean-up.
        if is_managed(fact):
            env.runtime.remove(fact.id)
    remember(env.box_id, [app], [])  # it runs with the values that resolve now
    return StepOutcome(
        Outcome.OK,
        f"{decision.reason}: now {spec_hash[:12]}",
        details={
            "spec_hash": spec_hash,
            "previous_release": decision.previous_release or "",
            "previous_hash": decision.previous_hash or "",
        },
    )


def _renamed(fact: ContainerFact) -> ContainerFact:
    if is_previous(fact):
        return fact
    return replace(fact, name=_original_name(fact) + PREVIOUS_SUFFIX)


def _stop_timeout(release: Release, app: str, fact: ContainerFact) -> int:
    name = fact.labels.get(Label.CONTAINER) or _original_name(fact)
    spec = release.spec.apps[app].containers.get(name)
    return spec.stop_timeout if spec else 10
