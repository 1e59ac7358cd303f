"""At rest: a start-first app's HAProxy member back on the port its running version publishes."""

from __future__ import annotations

import logging

import redis

from orchestrator.errors import OrchestratorError
from schemas.contract import Label
from schemas.release import Release
from schemas.strategy import is_start_first
from worker.decide import is_aside
from worker.facts import ContainerFact
from worker.startfirst import align
from worker.steps.protocol import StepContext

log = logging.getLogger("orchestrator.worker")

# HAProxy only: a reload puts its servers back on their configured ports, and its runtime API
# is a local socket. An ELBv2 target stays where it was registered: asking AWS every tick, for
# every box, would spend API calls (and invite throttling) for nothing.
KINDS = ("haproxy",)
MAX_KEPT = 64


def candidates(facts: list[ContainerFact], releases: dict[str, Release]) -> list[tuple[str, str]]:
    """(release id, app) of each start-first HAProxy app whose version runs (not aside)."""
    out = set()
    for fact in facts:
        rid, app = fact.labels.get(Label.RELEASE, ""), fact.labels.get(Label.APP, "")
        release = releases.get(rid)
        if (release is None or fact.state != "running" or is_aside(fact)
                or app not in release.spec.apps):
            continue
        if is_start_first(release.spec.apps[app]) and release.lb_kind(app) in KINDS:
            out.add((rid, app))
    return sorted(out)


class Realigner:
    """Called by the heartbeat tick for each box it serves; keeps the releases it read (they
    never change), so a tick asks Redis nothing for a box whose release it has seen."""

    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx
        self._releases: dict[str, Release] = {}
        self._failed: dict[str, str] = {}  # box -> the last failure logged (said once)

    def __call__(self, box_id: str, box_type: str) -> None:
        if not self.ctx.settings.realign_members:
            return
        with self.ctx.box_if_free(box_id) as free:
            if free:  # else a step, a staging or a retire acts on the box now
                self._logged(box_id, box_type)

    def _logged(self, box_id: str, box_type: str) -> None:
        try:
            for line in self.realign(box_id, box_type):
                log.warning("box %s: %s (its load balancer had it elsewhere: an HAProxy reload "
                            "without a server-state file?)", box_id, line)
            self._failed.pop(box_id, None)
        except (OrchestratorError, redis.RedisError) as exc:  # the next tick looks again
            # Once, not every tick: HAProxy away, or no server for this box in its backend.
            said = f"box {box_id}: load balancer members not checked: {exc}"
            log.log(logging.DEBUG if self._failed.get(box_id) == said else logging.WARNING,
                    "%s", said)
            self._failed[box_id] = said

    def realign(self, box_id: str, box_type: str) -> list[str]:
        """What was moved. Only at rest: not while a step of the box runs, nor while its record
        holds a swap's intent (an interrupted move is the recovery's to settle)."""
        ctx = self.ctx
        if box_id in ctx.busy.snapshot():
            return []
        env = ctx.make_env(box_id, box_type)
        facts = env.runtime.list(labels={Label.BOX: box_id, Label.ROLE: "app"})
        if len(self._releases) > MAX_KEPT:  # releases long gone from every box: read again
            self._releases.clear()
        # Only the serving versions' releases: an old, stopped one's may be gone from Redis.
        serving = {f.labels.get(Label.RELEASE, "") for f in facts
                   if f.state == "running" and not is_aside(f)}
        for rid in serving - set(self._releases) - {""}:
            self._releases[rid] = ctx.releases.get(rid)
        found = candidates(facts, self._releases)
        if not found or ctx.record(box_id).read().intents:
            return []
        said = []
        for rid, app in found:
            if moved := align(ctx, env, self._releases[rid], app):
                said.append(f"{app}: {moved}")
        return said
