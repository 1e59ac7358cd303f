"""Preflight: is this box able to take the release? Nothing leaves a load balancer here."""

from __future__ import annotations

import logging
import os
import shutil
import time
from typing import Any

from orchestrator.errors import OrchestratorError
from schemas.contract import CONTRACT_VERSION, Outcome, StepRequest, StepResult, TaskName
from worker.limits import check_release
from worker.overlap import overlap_problems
from worker.secrethash import secrets_changed
from worker.stage import stage_apps
from worker.steps.apps import pull_image
from worker.steps.protocol import StepContext
from worker.trust import refusal

log = logging.getLogger("orchestrator.worker")

MIN_FREE_BYTES = 1 << 30


def run_preflight(ctx: StepContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Contract version, Docker, disk, and every image pulled by digest; journaled, whatever
    happens: an answer the box never journals costs the coordinator its whole timeout."""
    started = time.time()
    try:
        req = StepRequest.model_validate(payload)
    except ValueError as exc:
        return {"ok": False, "problems": [f"malformed request: {exc}"]}
    ctx.fault.hit(TaskName.PREFLIGHT.value, "start")  # drills: a worker dying on preflight
    problems: list[str] = []
    rotated: list[str] = []
    why = ""
    root = ctx.settings.log_root if os.path.isdir(ctx.settings.log_root) else "/"
    free = shutil.disk_usage(root).free
    try:
        why = check(ctx, req, free, problems, rotated)
    except Exception as exc:  # a bug or a full disk here is this box's answer, not silence
        log.exception("preflight on %s raised", req.box_id)
        problems.append(f"preflight raised {type(exc).__name__}: {exc}")
    # The coordinator waits for this entry: no result backend is needed.
    ctx.journal.record(
        StepResult(
            step=TaskName.PREFLIGHT.value,
            rollout_id=req.rollout_id,
            box_id=req.box_id,
            outcome=(Outcome.REFUSED if why else Outcome.FAILED) if problems else Outcome.OK,
            reason="; ".join(problems),
            details={"free_bytes": str(free), "secret_changed": ",".join(rotated)},
            started=started,
            ended=time.time(),
        )
    )
    announce(ctx, req.rollout_id, req.box_id)
    return {"ok": not problems, "box": req.box_id, "problems": problems, "free_bytes": free}


def check(ctx: StepContext, req: StepRequest, free: int, problems: list[str],
          rotated: list[str]) -> str:
    """The checks, each problem added to `problems` (rotated secrets' names to `rotated`);
    why the box refuses the order ('' when it does not)."""
    if req.contract_version != CONTRACT_VERSION:
        problems.append(f"contract {req.contract_version} != worker's {CONTRACT_VERSION}")
    env = ctx.box_env(req.box_id, req.box_type)
    if free < MIN_FREE_BYTES:
        problems.append(f"only {free >> 20} MiB free on disk")
    why = refusal(ctx, TaskName.PREFLIGHT, req)
    if why:
        log.error("preflight on %s refused: %s", req.box_id, why)
        problems.append(f"refused: {why}")
    try:
        env.runtime.list(names=["orchestrator-preflight-probe"])  # does Docker answer?
        release = ctx.releases.get(req.release_id, req.release_hash)
        check_release(release, ctx.settings)
        apps = req.changed_apps or list(release.spec.apps)
        for app in [] if why else apps:
            ref = release.image_of(app)
            if not env.runtime.has_image(ref):
                pull_image(env, release, ref)
        # Every secret resolves here, before any box leaves; rotated ones are named only.
        rotated += secrets_changed(env, release, req.changed_apps or None)
        problems += overlap_problems(env, release, apps)
        if not problems and not why:
            # start-first: the next versions start now, so a box's turn is only its move.
            problems += stage_apps(ctx, env, release, apps, req.rollout_id, req.token)
    except OrchestratorError as exc:
        problems.append(f"{type(exc).__name__}: {exc}")
    return why


# The coordinator deletes the list once every box answered; this bounds a list it never read.
ANSWERS_TTL = 600


def announce(ctx: StepContext, rollout_id: str, box_id: str) -> None:
    """Wake the coordinator's BLPOP: the box's answer is in the journal (it reads it there)."""
    key = ctx.keys.rollout_part(rollout_id, "answers")
    pipe = ctx.redis.pipeline(transaction=False)
    pipe.rpush(key, box_id)
    pipe.expire(key, ANSWERS_TTL)
    pipe.execute()
