"""Ask boxes which apps' secret values changed: they compare on the box, and answer names."""

from __future__ import annotations

import time
import uuid

from celery import Celery

from orchestrator.engine.celery_app import NO_DECLARE, batched, brief
from orchestrator.engine.journal import Journal
from orchestrator.engine.redisconn import RedisClient
from schemas.contract import Keys, Outcome, StepRequest, TaskName, queue_for
from schemas.release import Release


def ask_secrets(
    app: Celery, client: RedisClient, keys: Keys, release: Release, boxes: list[str],
    timeout: float,
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """(box -> apps whose secrets changed, box -> why it did not answer), in parallel.

    The answers are journaled under a query id of their own and deleted once read: `plan`
    leaves nothing behind (a late answer expires by itself).
    """
    if not boxes:
        return {}, {}
    query = f"query-{uuid.uuid4().hex[:12]}"
    with batched(app) as producer:
        for box in boxes:
            req = StepRequest(
                rollout_id=query, box_id=box, box_type=release.box_type,
                release_id=release.id, release_hash=release.hash,
            )
            payload = req.model_dump(mode="json")
            app.send_task(TaskName.SECRETS.value, args=(payload,), queue=queue_for(box),
                          argsrepr=brief(payload), producer=producer, **NO_DECLARE)
    journal = Journal(client, keys)
    changed: dict[str, list[str]] = {}
    problems: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(changed) + len(problems) < len(boxes):
            for box in boxes:
                if box in changed or box in problems:
                    continue
                got = journal.get(query, box, TaskName.SECRETS.value, None)
                if got is None:
                    continue
                if got.outcome == Outcome.OK:
                    names = got.details.get("secret_changed", "")
                    changed[box] = [a for a in names.split(",") if a]
                else:
                    problems[box] = got.reason
            time.sleep(0.05)
    finally:
        client.delete(*(keys.journal(query, box) for box in boxes))
    for box in boxes:
        if box not in changed and box not in problems:
            problems[box] = f"no answer in {timeout:.0f}s (busy, or its worker is down)"
    return changed, problems
