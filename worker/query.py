"""`plan`'s question to a box: which apps' secret values changed? Answered with names only."""

from __future__ import annotations

import logging
import time
from typing import Any

from orchestrator.errors import OrchestratorError
from schemas.contract import CONTRACT_VERSION, Label, Outcome, StepRequest, StepResult, TaskName
from worker.decide import is_aside
from worker.secrethash import secrets_changed
from worker.steps.protocol import StepContext

log = logging.getLogger("orchestrator.worker")

# The answer is read once by the asking `plan`, which then deletes it; an answer that comes
# after the plan gave up goes away by itself.
ANSWER_TTL = 120


def running_secrets_changed(ctx: StepContext, box_id: str, box_type: str) -> list[str]:
    """Each running app against the release it runs. `plan`'s release is stored nowhere, and
    needs none: where its spec of an app differs from what runs, the app changes anyway;
    where it is the same, so are its secret references."""
    env = ctx.box_env(box_id, box_type)
    by_release: dict[str, set[str]] = {}
    for fact in env.runtime.list(labels={Label.BOX: box_id, Label.ROLE: "app"}):
        rid, app = fact.labels.get(Label.RELEASE), fact.labels.get(Label.APP)
        if rid and app and fact.state == "running" and not is_aside(fact):
            by_release.setdefault(rid, set()).add(app)
    changed: list[str] = []
    for rid, apps in sorted(by_release.items()):
        changed += secrets_changed(env, ctx.releases.get(rid), sorted(apps))
    return sorted(set(changed))


def run_secrets_query(ctx: StepContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Compare, on this box, each app's secret values now with those it started with; the
    request's release is only the plan's label (it is stored nowhere)."""
    started = time.time()
    req = StepRequest.model_validate(payload)
    outcome, reason, changed = Outcome.OK, "", []
    if req.contract_version != CONTRACT_VERSION:
        outcome, reason = Outcome.FAILED, f"contract {req.contract_version} != {CONTRACT_VERSION}"
    else:
        try:
            changed = running_secrets_changed(ctx, req.box_id, req.box_type)
        except OrchestratorError as exc:
            outcome, reason = Outcome.FAILED, f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # answered: `plan` would wait for it until its timeout
            log.exception("the secrets query on %s raised", req.box_id)
            outcome, reason = Outcome.FAILED, f"secrets query raised {type(exc).__name__}: {exc}"
    ctx.journal.record(
        StepResult(
            step=TaskName.SECRETS.value,
            rollout_id=req.rollout_id,
            box_id=req.box_id,
            outcome=outcome,
            reason=reason,
            details={"secret_changed": ",".join(changed)},
            started=started,
            ended=time.time(),
        )
    )
    ctx.redis.expire(ctx.keys.journal(req.rollout_id, req.box_id), ANSWER_TTL)
    return {"box": req.box_id, "secret_changed": changed, "problem": reason}
