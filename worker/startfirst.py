"""start-first swaps: the new version starts beside the old one on the other port set, the
box's load balancer member moves to it, the old one stops once nothing is in flight on it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import cast

from orchestrator.engine.lb.base import MovableLB
from orchestrator.errors import LoadBalancerError, StartFailed
from schemas.boxfile import AppSpec
from schemas.contract import Label, Outcome
from schemas.release import Release
from schemas.strategy import (
    MOVABLE_KINDS,
    color_map,
    is_start_first,
    lb_host_port,
    other_port,
    port_now,
)
from worker.decide import SwapIntent, is_aside, is_previous
from worker.facts import BoxEnv, ContainerFact
from worker.retire import retire_note
from worker.runspec import PREVIOUS_SUFFIX
from worker.secrethash import remember
from worker.stage import adopt, running_ports, take_staged
from worker.steps.protocol import StepContext, StepOutcome
from worker.swap import (
    _original_name,
    _renamed,
    _stop_timeout,
    app_containers,
    look,
    reinstate,
    start_app,
    swap_app,
    swap_decision,
)

log = logging.getLogger("orchestrator.worker")

Note = Callable[[dict[str, str | None]], None]


def _movable(
    ctx: StepContext, env: BoxEnv, release: Release, app: str
) -> tuple[MovableLB, str] | None:
    kind = release.lb_kind(app)
    lb = ctx.load_balancer(release, app)
    if lb is None or kind not in MOVABLE_KINDS:
        return None
    return cast(MovableLB, lb), ctx.member(env.box_id, kind)


def _check_port(spec: AppSpec, lb: MovableLB, member: str) -> int | None:
    now = lb.check_port(member)
    return other_port(spec, now) if now else None


def align(ctx: StepContext, env: BoxEnv, release: Release, app: str) -> str:
    """Point the member at the port of the version that runs now (after an HAProxy reload
    put back the configured port, or an interrupted move); '' when it already is."""
    spec = release.spec.apps[app]
    if not is_start_first(spec) or (found := _movable(ctx, env, release, app)) is None:
        return ""
    lb, member = found
    serving = [f for f in app_containers(env, release, app) if not is_previous(f)]
    want = port_now(spec, running_ports(serving))
    now = lb.member_port(member)
    if want is None or now is None or now == want:
        return ""
    lb.move(member, want, _check_port(spec, lb, member))
    return f"member moved from port {now} to {want}, where {app} runs"


def move_back(ctx: StepContext, env: BoxEnv, release: Release, app: str,
              old: Iterable[ContainerFact]) -> None:
    """Before a restore removes the new version: traffic back to the old one, still running."""
    old = list(old)
    found = _movable(ctx, env, release, app)
    if found is None or not old or any(f.state != "running" for f in old):
        return
    lb, member = found
    spec = release.spec.apps[app]
    want = port_now(spec, running_ports(old))
    now = lb.member_port(member)
    if want is None or now is None or now == want:
        return
    lb.move(member, want, _check_port(spec, lb, member))
    _wait_moved(ctx, lb, member, now)


def _wait_moved(ctx: StepContext, lb: MovableLB, member: str, old_port: int) -> str:
    try:
        lb.wait_moved(member, old_port, ctx.settings.drain_timeout)
    except LoadBalancerError as exc:
        # The old version stops anyway (with its own stop_timeout's grace): said, not fatal.
        log.warning("%s", exc)
        return f"; in flight at the drain timeout: {exc}"
    return ""


def swap_start_first(
    ctx: StepContext, env: BoxEnv, release: Release, app: str, token: str, note: Note
) -> StepOutcome:
    """Bring one app to `release` without leaving its load balancer."""
    spec = release.spec.apps[app]
    spec_hash = release.spec_hash(app)
    looked = look(env, release, app)  # one look: the decision and the staged ones read it
    decision = swap_decision(env, release, app, looked)
    found = _movable(ctx, env, release, app)
    serving = [f for f in decision.keep if f.state == "running" and not is_previous(f)]
    if not decision.needed or found is None or not serving or len(serving) != len(decision.keep):
        # Nothing serving to overlap with (a fresh box, a stopped version): the plain swap.
        out = swap_app(env, release, app, token, ctx.deadline(), note)
        if out.outcome != Outcome.FAILED and (moved := align(ctx, env, release, app)):
            return replace(out, reason=f"{out.reason}; {moved}")
        return out
    lb, member = found
    lb_port = cast(int, lb_host_port(spec))
    ports = color_map(spec, running_ports(serving))
    new_port = ports.get(lb_port, lb_port)
    # Where new requests go now: the old version's port, unless a reload moved the member.
    old_port = lb.member_port(member) or cast(int, port_now(spec, running_ports(serving)))
    t0 = time.monotonic()
    staged, not_staged = take_staged(env, release, app, ports, looked)  # started in preflight
    # Written before acting: a worker killed before, during or after the move finds the old
    # version and the ports, and puts traffic back on the version it keeps.
    intent = SwapIntent(
        new_hash=spec_hash,
        new_release=release.id,
        previous_hash=decision.previous_hash,
        previous_release=decision.previous_release,
        adopted=decision.adopted,
        strategy="start-first",
    ).note()
    note({**intent, "from_port": str(old_port), "to_port": str(new_port)})
    for fact in decision.discard:
        env.runtime.remove(fact.id)
    for fact in serving:  # renamed while running: the new version takes the name
        env.runtime.rename(fact.id, _original_name(fact) + PREVIOUS_SUFFIX)
    kept = [_renamed(f) for f in serving]
    record = ctx.record(env.box_id)
    try:
        try:
            if staged:
                adopt(env, staged)
            else:
                start_app(env, release, app, token, ctx.deadline(), ports=ports)
        except StartFailed as exc:
            return _not_started(env, kept, exc, decision.previous_release)
        t1 = time.monotonic()
        lb.move(member, new_port, _check_port(spec, lb, member))
        late = _wait_moved(ctx, lb, member, old_port) if old_port != new_port else ""
        # The old version stops after the chain (worker/retire.py): the box's record says so
        # now, and until the chain settles a restore still finds it running, to move back to.
        timeout = max((_stop_timeout(release, app, f) for f in kept), default=10)
        record.retire(app, retire_note(spec_hash, kept, timeout))  # drops the staging note too
    finally:
        record.unstage([app])  # a write only when the retire's did not drop it (a failure)
    t2 = time.monotonic()
    remember(env.box_id, [app], [])
    if staged:
        how = f"adopted the containers staged in preflight, re-checked in {t1 - t0:.2f}s"
    else:  # why staged ones were not taken, when there were some: no parentheses (benchmarks)
        why = "" if not_staged == "nothing staged" else f"; staged not adopted: {not_staged}"
        how = f"started and healthy in {t1 - t0:.2f}s{why}"
    took = (f"{how}, moved and drained in {t2 - t1:.2f}s; "
            "the old version stops after the box's chain")
    return StepOutcome(
        Outcome.OK,
        f"{decision.reason}: now {spec_hash[:12]}, member moved {old_port} -> {new_port}{late} "
        f"({took})",
        details={
            "spec_hash": spec_hash,
            "previous_release": decision.previous_release or "",
            "previous_hash": decision.previous_hash or "",
            "moved": f"{old_port}->{new_port}",
            "staged": "1" if staged else "",
        },
    )


def _not_started(env: BoxEnv, kept: list[ContainerFact], exc: StartFailed,
                 previous_release: str | None) -> StepOutcome:
    back = reinstate(env, kept)
    reason = f"{exc}; traffic never moved"
    if back:
        reason += f"; and the previous version did not come back: {back}"
    return StepOutcome(
        Outcome.FAILED, reason, log_tail=exc.log_tail,
        details={"previous_release": previous_release or "", "restored": "" if back else "1"},
    )


def stays_in(
    release: Release, app: str, env: BoxEnv, facts: list[ContainerFact] | None = None
) -> bool:
    """A start-first app that runs on the box never leaves its load balancer. `facts`: the
    box's app containers, when the caller has just listed them."""
    spec = release.spec.apps[app]
    if not is_start_first(spec) or release.lb_kind(app) not in MOVABLE_KINDS:
        return False
    if facts is None:
        facts = env.runtime.list(labels={Label.BOX: env.box_id, Label.APP: app})
    mine = [f for f in facts if f.labels.get(Label.APP) == app]
    return any(f.state == "running" and not is_aside(f) for f in mine)
