"""A rollout's one-off task (box.yml `migrate:`): run once, in a container of the new image."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from orchestrator.errors import OrchestratorError
from schemas.contract import Label, Outcome, StepRequest, StepResult, TaskName
from schemas.release import Release
from worker.facts import BoxEnv, ContainerFact
from worker.limits import check_release
from worker.runspec import build_run_request
from worker.secrets import resolve_env
from worker.steps.protocol import StepContext
from worker.trust import refusal

log = logging.getLogger("orchestrator.worker.migrate")

POLL = 0.5  # seconds between looks at the running task
TAIL = 10  # log lines kept in the journal and the event


def run_migration(ctx: StepContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Run (or, redelivered, find) the task's container and journal how it ended."""
    started = time.time()
    try:
        req = StepRequest.model_validate(payload)
    except ValueError as exc:
        return {"ok": False, "reason": f"malformed request: {exc}"}
    env = ctx.box_env(req.box_id, req.box_type)
    try:
        # It runs a container: nothing starts before the box verified who ordered it.
        why = refusal(ctx, TaskName.MIGRATE, req)
        if why:
            log.error("migrate on %s refused: %s", req.box_id, why)
            outcome, reason = Outcome.REFUSED, f"refused: {why}"
        else:
            release = ctx.releases.get(req.release_id, req.release_hash)
            check_release(release, ctx.settings)
            outcome, reason = migrate(env, req.rollout_id, release)
    except OrchestratorError as exc:
        outcome, reason = Outcome.FAILED, f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # journaled: the coordinator would wait out the task's deadline
        log.exception("migrate on %s raised", req.box_id)
        outcome, reason = Outcome.FAILED, f"migrate raised {type(exc).__name__}: {exc}"
    ctx.journal.record(StepResult(step=TaskName.MIGRATE.value, rollout_id=req.rollout_id,
                                  box_id=req.box_id, outcome=outcome, reason=reason,
                                  started=started, ended=time.time()))
    ctx.events.emit(req.box_type, rollout=req.rollout_id, box=req.box_id,
                    step=TaskName.MIGRATE.value, phase="end", outcome=outcome.value,
                    reason=reason, duration=f"{time.time() - started:.3f}")
    return {"ok": outcome == Outcome.OK, "reason": reason}


def migrate(env: BoxEnv, rollout_id: str, release: Release) -> tuple[Outcome, str]:
    task = release.spec.migrate
    if task is None:
        return Outcome.NOOP, "the release has no migrate task"
    mine = {Label.BOX: env.box_id, Label.MIGRATE: rollout_id}
    found = env.runtime.list(labels=mine)
    # A redelivered task (its worker died) finds the container the first delivery started
    # and reports its real state; it never starts the task a second time.
    fact = found[0] if found else start(env, rollout_id, release)
    for old in env.runtime.list(labels={Label.BOX: env.box_id, Label.ROLE: "migrate"}):
        if old.labels.get(Label.MIGRATE) != rollout_id and old.state != "running":
            env.runtime.remove(old.id)  # an earlier rollout's task, kept until now to read
    deadline = time.monotonic() + task.deadline
    while fact.state == "running" and time.monotonic() < deadline:
        time.sleep(POLL)
        fact = current(env, fact)
    tail = " | ".join(env.runtime.logs_tail(fact.id, TAIL).strip().splitlines()[-TAIL:])
    if fact.state == "running":
        env.runtime.stop(fact.id, 10)
        return Outcome.FAILED, f"ran past its deadline of {task.deadline:.0f}s; last lines: {tail}"
    code = fact.exit_code
    return (Outcome.OK if code == 0 else Outcome.FAILED), f"exit {code}; last lines: {tail}"


def current(env: BoxEnv, fact: ContainerFact) -> ContainerFact:
    found = env.runtime.list(names=[fact.name])
    return found[0] if found else replace(fact, state="removed")


def start(env: BoxEnv, rollout_id: str, release: Release) -> ContainerFact:
    """The task's container: the app's first container's env and volumes, no ports."""
    task = release.spec.migrate
    assert task is not None
    name, spec = next(iter(release.spec.apps[task.app].containers.items()))
    req = build_run_request(
        box_id=env.box_id, box_type=env.box_type, app=task.app, container=name,
        spec=spec.model_copy(update={"ports": [], "restart_on_failure": False}),
        image=release.image_of(task.app), env=resolve_env(spec.env, env.ssm),
        spec_hash="migrate", release=release.id, token="", role="app",
        log_root=env.log_root, bind_ip=env.bind_ip, hostname=env.hostname)
    # Not an app container: without the app and container labels no step, health check or
    # status report takes it for one of the app's.
    labels = {k: v for k, v in req.labels.items() if k not in (Label.APP, Label.CONTAINER)}
    labels |= {**env.extra_labels, Label.ROLE: "migrate", Label.MIGRATE: rollout_id,
               Label.GENERATION: "migrate"}
    run = replace(req, name=f"{env.box_id}.{task.app}.migrate-{rollout_id.rsplit('-', 1)[-1]}",
                  command=list(task.command), labels=labels)
    return env.runtime.run(run)
