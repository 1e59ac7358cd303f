"""start-first: the old version, aside (`.prev`) once the member moved, stops after the chain."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping

import redis

from orchestrator.errors import OrchestratorError
from schemas.contract import Label
from worker.decide import is_managed, is_previous
from worker.facts import ContainerFact
from worker.steps.protocol import StepContext

log = logging.getLogger("orchestrator.worker")


def retire_note(new_hash: str, old: Iterable[ContainerFact], stop_timeout: int) -> dict[str, str]:
    """What the box's record keeps until the old version is stopped."""
    old = list(old)
    return {"new_hash": new_hash, "ids": ",".join(f.id for f in old),
            "names": ",".join(f.name.lstrip("/") for f in old), "stop_timeout": str(stop_timeout)}


def decide_retire(facts: Iterable[ContainerFact], note: Mapping[str, str]
                  ) -> tuple[ContainerFact, ...]:
    """The old containers to stop now: those the note names that are still aside (`.prev`),
    while the new version serves. A restore that put the old version back renamed it: it is
    no longer aside, and nothing stops. (Asked only once the record holds no swap intent for
    the app: until the chain settles, a restore may want the old version back.)"""
    facts = list(facts)
    ids = set(filter(None, note.get("ids", "").split(",")))
    serving = [f for f in facts if not is_previous(f) and f.state == "running"
               and f.labels.get(Label.SPEC_HASH) == note.get("new_hash")]
    if not serving:
        return ()
    return tuple(f for f in facts if f.id in ids and is_previous(f))


def retire(ctx: StepContext, box_id: str, box_type: str) -> list[str]:
    """Stop (and remove, when ours) each app's old version the record names, once the box's
    chain is over; the record forgets each app it has settled. What was stopped."""
    record = ctx.record(box_id)
    state = record.read()
    if not state.retiring:
        return []
    env = ctx.make_env(box_id, box_type)  # after the chain: no fence (the note is the box's)
    said, settled = [], []
    for app, note in state.retiring.items():
        if app in state.intents:
            continue  # the chain still runs (or a restore waits): the old version may return
        names = list(filter(None, note.get("names", "").split(",")))
        facts = env.runtime.list(labels={Label.BOX: box_id, Label.APP: app})
        seen = {f.id for f in facts}
        facts += [f for f in env.runtime.list(names=names) if f.id not in seen] if names else []
        for fact in decide_retire(facts, note):
            ctx.fault.hit("retire", "stop")  # drills: killed with the old version running
            env.runtime.stop(fact.id, int(note.get("stop_timeout") or 10))
            if is_managed(fact):  # a pre-orchestrator deploy's stays, stopped, for a person
                env.runtime.remove(fact.id)
            said.append(f"stopped the old {fact.name.lstrip('/')}")
        settled.append(app)
    record.retired(settled)
    return said


def retire_soon(ctx: StepContext, box_id: str, box_type: str,
                first: Callable[[], object] = lambda: None) -> None:
    """At `finish`: `first` (the staged clean-up), then the old versions stop, in a thread of
    their own, so the box's chain (and the rollout's end, which the CLI waits for) does not
    wait on the engine; it takes the box's lock once the step let it go, so the box's next
    step waits for it. The record says what remains, should the worker die."""
    state = ctx.record(box_id).read()
    if not state.retiring and not state.staged:
        return

    def run() -> None:
        with ctx.box_lock(box_id):
            try:
                first()
            except (OrchestratorError, redis.RedisError) as exc:  # the heartbeat tick tries again
                log.warning("box %s: after its turn: %s", box_id, exc)
            _retire_logged(ctx, box_id, box_type)

    threading.Thread(target=run, name=f"retire-{box_id}", daemon=True).start()


def _retire_logged(ctx: StepContext, box_id: str, box_type: str) -> None:
    try:
        for line in retire(ctx, box_id, box_type):
            log.info("box %s: %s", box_id, line)
    except (OrchestratorError, redis.RedisError) as exc:  # the next tick tries again
        log.warning("box %s: old containers not stopped yet: %s", box_id, exc)


def tidy_retired(ctx: StepContext, box_id: str, box_type: str) -> None:
    """The heartbeat tick and the worker's start: retire, unless a step acts on the box now."""
    with ctx.box_if_free(box_id) as free:
        if free:
            _retire_logged(ctx, box_id, box_type)
