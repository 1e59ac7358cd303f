"""Ending a bake: every worker's heartbeat tick reads the gates; one move ends the bake."""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from orchestrator.engine.gates import Counts, alarm_verdict, counts_from_stat, error_rate_verdict
from orchestrator.engine.rollouts import Rollouts
from orchestrator.errors import IllegalTransition
from schemas.release import Release
from schemas.rollout import Rollout, RolloutState

log = logging.getLogger("orchestrator.bake")
S = RolloutState


@dataclass(frozen=True)
class GateSources:
    """Where the gates read: HAProxy's runtime API, CloudWatch (region, endpoint)."""

    haproxy_socket: str | None = None
    aws: tuple[str, str | None] | None = None

    def lb_counts(self, release: Release) -> dict[str, Counts]:
        """`backend/server` -> counters of every HAProxy backend the release's apps are in.
        ELB and ALB have no per-target error metric: only HAProxy backends are read."""
        from orchestrator.engine.lb.haproxy import HAProxyLB

        out: dict[str, Counts] = {}
        if not self.haproxy_socket:
            return out
        for app in release.spec.apps.values():
            if app.elb and (app.lb_kind or release.lb_default) == "haproxy":
                rows = HAProxyLB(self.haproxy_socket, app.elb).server_stats()
                out.update(counts_from_stat(app.elb, rows))
        return out

    def alarm_states(self, names: list[str]) -> dict[str, str]:
        region, endpoint = self.aws or ("us-east-1", None)
        found = _cloudwatch(region, endpoint).describe_alarms(AlarmNames=names)["MetricAlarms"]
        return {a["AlarmName"]: a["StateValue"] for a in found}


@functools.lru_cache(maxsize=4)
def _cloudwatch(region: str, endpoint: str | None) -> Any:
    """One client per process: a tick every few seconds must not build one each time."""
    from orchestrator.engine.aws import aws_client

    return aws_client("cloudwatch", region, endpoint)


def judge(rollouts: Rollouts, rollout: Rollout, release: Release, src: GateSources,
          st: dict[str, str]) -> tuple[bool | None, str]:
    """(False, why) a gate failed; (True, why) every gate passed so far; None: no verdict."""
    bake = rollout.bake
    assert bake is not None
    if bake.alarms:
        ok, why = alarm_verdict(src.alarm_states(bake.alarms), bake.alarms)
        if not ok:
            return False, why
    now = src.lb_counts(release)
    if not now:
        return True, "no HAProxy backend to read an error rate from"
    raw = st.get("bake_base")
    if raw is None:  # the first tick of the bake: the counters it is judged from
        base_json = json.dumps({k: [c.responses, c.errors] for k, c in now.items()})
        rollouts.client.hsetnx(rollouts.keys.rollout(rollout.id), "bake_base", base_json)
        raw = base_json
    base = {k: Counts(*v) for k, v in json.loads(raw).items()}
    verdict, why = error_rate_verdict(base, now, wave_boxes(rollout, st),
                                      bake.error_margin, bake.min_requests)
    return verdict, "error rate: " + why


def wave_boxes(rollout: Rollout, st: dict[str, str]) -> list[str]:
    """The boxes of the wave that bakes (`bake_wave`, from:to in the plan's order)."""
    start, _, end = st.get("bake_wave", "").partition(":")
    if not (start.isdigit() and end.isdigit()):
        return rollout.plan.canary_boxes
    return rollout.plan.boxes[int(start):int(end)]


def tick(rollouts: Rollouts, box_type: str, src: GateSources) -> str | None:
    """The box type's baking rollout, if any: judge its gates; halt it on a failed gate,
    let it go on once its time is up. Returns what happened, for the log."""
    rollout_id = rollouts.states.active(box_type)
    if rollout_id is None:
        return None
    st = rollouts.status(rollout_id)
    if st.get("state") != S.BAKING or "ended" in st:
        return None
    rollout = rollouts.get(rollout_id)
    if rollout.bake is None:
        return None
    # Nothing is in flight: the bake itself keeps the lease.
    rollouts.lease.renew(box_type, rollout_id, rollouts.lease_ttl)
    try:
        verdict, why = judge(rollouts, rollout, rollouts.releases.get(rollout.release_id),
                             src, st)
    except Exception as exc:  # a gate that cannot be read (HAProxy, AWS) is not a pass
        verdict, why = None, f"gate unreadable: {exc}"
        log.warning("bake of %s: %s", rollout_id, why)
    if verdict is False:
        return _end(rollouts, rollout, S.HALTED, "failed", f"bake gate failed: {why}")
    if time.time() >= float(st.get("bake_until", "0")):
        if verdict is None and "unreadable" in why:
            return _end(rollouts, rollout, S.HALTED, "failed", f"bake gate failed: {why}")
        return _end(rollouts, rollout, S.RUNNING, "ok", f"bake passed: {why}")
    return None


def _end(rollouts: Rollouts, rollout: Rollout, to: RolloutState, outcome: str,
         why: str) -> str | None:
    fields = {"halt_reason": why[:500]} if to == S.HALTED else {}
    try:
        rollouts.states.move(rollout.id, to, only_from=frozenset({S.BAKING}), fields=fields)
    except IllegalTransition:  # another worker's tick (or an abort) ended it first
        return None
    rollouts.events.emit(rollout.box_type, rollout=rollout.id, step="bake", phase="end",
                         outcome=outcome, reason=why[:500])
    rollouts.advance(rollout)  # halted: nothing in flight, it ends; running: the next wave
    return why
