"""The rollout engine: the self-driving fill, who starts next, dead boxes, and the end."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery import Celery

from orchestrator.engine.budget import Budgets
from orchestrator.engine.chains import rollout_chain
from orchestrator.engine.events import Events
from orchestrator.engine.fleet import Fleet, FleetView, Source
from orchestrator.engine.lease import Lease
from orchestrator.engine.redisconn import LuaScript, RedisClient
from orchestrator.engine.releases import ReleaseStore
from orchestrator.engine.state import MOVING, RolloutStates
from orchestrator.errors import ConfigError
from schemas.contract import Keys, StepRequest
from schemas.depgraph import start_order
from schemas.rollout import Rollout, RolloutState

_FILL = LuaScript.load("fill")


@dataclass(frozen=True)
class Fill:
    kind: str  # "fill", "dup" (this box's finish already counted), "bake" or "drained"
    state: str
    started: list[str]


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class Rollouts:
    """The rollout engine shared by the coordinator and every box's `finish`."""

    def __init__(
        self,
        client: RedisClient,
        keys: Keys,
        app: Celery,
        *,
        lease_ttl: float = 60.0,
        slot_ttl: float = 30.0,
        aws: tuple[str, str | None] | None = None,
    ) -> None:
        self.client, self.keys, self.app = client, keys, app
        self.lease = Lease(client, keys)
        self.releases = ReleaseStore(client, keys)
        self.events = Events(client, keys)
        self.states = RolloutStates(client, keys)
        self.budgets = Budgets(client, keys)
        self.lease_ttl, self.slot_ttl = lease_ttl, slot_ttl
        self.aws = aws  # (region, endpoint) to resume a group's processes at the end

    # --- storage ---------------------------------------------------------------------
    def create(self, rollout: Rollout) -> None:
        self.states.create(rollout)

    def get(self, rollout_id: str) -> Rollout:
        raw = self.client.get(self.keys.rollout_part(rollout_id, "spec"))
        if raw is None:
            raise ConfigError(f"no rollout {rollout_id!r} (see `orchestrator history <type>`)")
        return Rollout.model_validate_json(raw)

    def status(self, rollout_id: str) -> dict[str, str]:
        raw = self.client.hgetall(self.keys.rollout(rollout_id))
        return {_text(a): _text(b) for a, b in raw.items()}

    def state(self, rollout_id: str) -> str:
        return self.states.state(rollout_id)

    def done(self, rollout_id: str) -> dict[str, str]:
        raw = self.client.hgetall(self.keys.rollout_part(rollout_id, "done"))
        return {_text(a): _text(b) for a, b in raw.items()}

    def history(self, box_type: str, limit: int) -> list[str]:
        """The box type's rollout ids, newest first."""
        ids = self.client.zrevrange(self.keys.rollouts(box_type), 0, limit - 1)
        return [_text(i) for i in ids]

    def inflight(self, rollout_id: str) -> list[str]:
        return sorted(
            _text(b) for b in self.client.smembers(self.keys.rollout_part(rollout_id, "inflight"))
        )

    # --- the fill ----------------------------------------------------------------------
    def fill(self, rollout: Rollout, box: str = "", outcome: str = "", why: str = "") -> Fill:
        k = self.keys
        res = _FILL(
            self.client,
            [
                k.rollout(rollout.id),
                k.rollout_part(rollout.id, "pending"),
                k.rollout_part(rollout.id, "inflight"),
                k.rollout_part(rollout.id, "done"),
            ],
            [
                box,
                outcome,
                k.slot(rollout.id, ""),
                int(self.slot_ttl * 1000),
                why[:500],
                RolloutState.HALTED.value,
                RolloutState.BAKING.value,
                *sorted(MOVING),
            ],
        )
        kind, state, *started = (_text(x) for x in res)
        return Fill(kind, state, started)

    def advance(self, rollout: Rollout, box: str = "", outcome: str = "", why: str = "") -> Fill:
        """Record `box` (if any), start its successors, and run the end once drained."""
        fill = self.fill(rollout, box, outcome, why)
        if fill.kind == "dup":
            return fill
        if fill.kind == "bake" and rollout.bake is not None:
            self.events.emit(
                rollout.box_type,
                rollout=rollout.id,
                step="bake",
                phase="start",
                reason=f"{rollout.bake.seconds:g}s after boxes "
                + self.status(rollout.id).get("bake_wave", "")
                + "; gates: "
                + ", ".join(["error rate", *(f"alarm {a}" for a in rollout.bake.alarms)]),
            )
            return fill
        for started in fill.started:
            self.launch(rollout, started)
        if fill.kind == "drained":
            if fill.state in MOVING and rollout.kind == "rollout":
                # Boxes that joined the fleet meanwhile get chains before the rollout ends.
                # A rollback or a repair runs on exactly the boxes it announced.
                planned = set(rollout.plan.boxes) | set(self.done(rollout.id))
                newcomers = sorted(set(self.fleet(rollout)) - planned)
                if newcomers:
                    self.client.rpush(self.keys.rollout_part(rollout.id, "pending"), *newcomers)
                    self.client.hincrby(self.keys.rollout(rollout.id), "n_total", len(newcomers))
                    return self.advance(rollout)
            self.end(rollout)
        return fill

    def fleet(self, rollout: Rollout) -> list[str]:
        """The same one rule as at the start: the group's InService boxes with a worker if the
        rollout started from a group, else every box with a live heartbeat."""
        grouped = bool(self.status(rollout.id).get("asg"))
        fleet = Fleet(self.client, self.keys, aws=self.aws)
        try:
            return fleet.read(rollout.box_type, "asg" if grouped else "heartbeats").boxes
        except ConfigError:  # the group is gone: nothing more to deploy
            return []

    def launch(self, rollout: Rollout, box_id: str) -> None:
        release = self.releases.get(rollout.release_id)
        # Every app, in start order: the box itself decides, from what runs on it at that
        # moment, which apps change (a swap of an unchanged app is a no-op) and which load
        # balancers to leave. A heartbeat can be seconds old: planning from it once let a
        # rollout started right after another swap nothing and report success.
        changed = start_order({a: s.depends for a, s in release.spec.apps.items()})
        lb = [a for a in changed if release.spec.apps[a].elb]
        req = StepRequest(
            rollout_id=rollout.id,
            box_id=box_id,
            box_type=rollout.box_type,
            release_id=release.id,
            release_hash=release.hash,
            token="",  # taken by `claim`; later steps read it from the rollout's tokens
            changed_apps=changed,
            lb_apps=lb,
            leave_all=rollout.kind == "repair",  # a repair proves health and rejoins anyway
        )
        self.events.emit(
            rollout.box_type,
            rollout=rollout.id,
            box=box_id,
            step="scheduled",
            phase="end",
            outcome="ok",
            reason=f"apps {','.join(changed) or 'none'}",
        )
        rollout_chain(self.app, req).apply_async()

    def abandon_if_stale(self, box_type: str) -> str | None:
        """The active rollout lost its lease (nothing advanced it): mark it abandoned."""
        rollout_id = self.states.active(box_type)
        if rollout_id is None:
            return None
        holder, _ = self.lease.holder(box_type)
        st = self.status(rollout_id)
        if holder == rollout_id or "ended" in st or not st:
            return None
        if not self.states.abandon(rollout_id, box_type, "its lease expired: nothing advanced it"):
            return None
        self.events.emit(
            box_type,
            rollout=rollout_id,
            step="rollout",
            phase="end",
            outcome="abandoned",
            reason="lease expired",
        )
        return rollout_id

    def retry_failed(self, rollout: Rollout) -> list[str]:
        """`resume` tries failed boxes again, those counted dead (their slot expired: a worker
        killed, or its chain message lost in a Redis failover) and those that never started
        (a refused claim): back in front of the queue, with a new journal (an old one would
        replay the failure) and no claimed token."""
        done = self.done(rollout.id)
        # A dead box counts as failed (fill.lua): it was left out, and the resumed rollout
        # then ended failed on a box it never tried again.
        failed = sorted(b for b, o in done.items() if o in ("failed", "dead"))
        cancelled = sorted(b for b, o in done.items() if o == "cancelled")
        if not failed and not cancelled:
            return []
        k = self.keys
        pipe = self.client.pipeline()
        again = failed + cancelled
        pipe.hdel(k.rollout_part(rollout.id, "done"), *again)
        pipe.hdel(k.rollout_part(rollout.id, "tokens"), *again)
        for box in again:
            pipe.delete(k.journal(rollout.id, box))
        pipe.lpush(k.rollout_part(rollout.id, "pending"), *reversed(again))
        pipe.hincrby(k.rollout(rollout.id), "n_failed", -len(failed))
        pipe.hincrby(k.rollout(rollout.id), "n_cancelled", -len(cancelled))
        pipe.hincrby(k.rollout(rollout.id), "scheduled", -len(again))
        pipe.hdel(k.rollout(rollout.id), "halt_reason")
        pipe.execute()
        return again

    def reap_dead(
        self, box_type: str, rollout_id: str | None = None, boxes: list[str] | None = None
    ) -> list[str]:
        """Boxes in flight whose slot expired: each counts as failed (the rollout halts).
        A watcher passes the rollout and its boxes in flight, which it has just read."""
        rollout_id = rollout_id or self.states.active(box_type)
        if rollout_id is None:
            return []
        boxes = self.inflight(rollout_id) if boxes is None else boxes
        if not boxes:
            return []
        slots = [self.keys.slot(rollout_id, box) for box in boxes]
        # One command while every box lives (the usual case); each box's only when one died.
        if self.client.exists(*slots) == len(slots):
            return []
        pipe = self.client.pipeline(transaction=False)
        for slot in slots:
            pipe.exists(slot)
        dead = [box for box, alive in zip(boxes, pipe.execute(), strict=True) if not alive]
        if dead:
            rollout = self.get(rollout_id)
            for box in dead:
                # Counted dead now: a worker that wakes later finds no token and stops.
                self.lease.revoke(box, rollout_id)
                self.events.emit(
                    box_type,
                    rollout=rollout_id,
                    box=box,
                    step="slot",
                    phase="end",
                    outcome="failed",
                    reason="no sign of life: slot expired",
                )
                self.advance(rollout, box, "dead", "no sign of life: its slot expired")
                # Its places out of a load balancer go with its token; waiting rollouts retry.
                self.wake(self.budgets.release(box))
        return dead

    def reap_turn(self, box_type: str, every: float) -> bool:
        """Whether this caller is the type's one reaper for the next `every` seconds: every
        worker beats, but one look at the boxes in flight per interval is enough (each worker
        looking would cost the fleet N x its boxes in flight, every beat)."""
        return bool(self.client.set(self.keys.reaper(box_type), "1", nx=True,
                                    px=max(int(every * 1000), 1)))

    def keep_waiting(self, box_type: str) -> None:
        """The type's rollout waits for a load balancer place with nothing in flight: its
        lease lives on while its workers beat (as a box's slot does while it works)."""
        rollout_id = self.states.active(box_type)
        if rollout_id and self.client.sismember(self.keys.lb_wait(), rollout_id):
            self.lease.renew(box_type, rollout_id, self.lease_ttl)

    def wake(self, rollout_ids: list[str]) -> None:
        """Fill again each rollout a released load balancer place woke (any box type): its
        lease renewed first, as a box that held it waited with nothing in flight."""
        for rollout_id in rollout_ids:
            try:
                rollout = self.get(rollout_id)
            except ConfigError:  # recorded before its plan: nothing waits in it
                continue
            if self.state(rollout_id) in MOVING:
                self.lease.renew(rollout.box_type, rollout_id, self.lease_ttl)
            self.advance(rollout)

    def stop(self, rollout_id: str) -> str | None:
        """No box of the rollout starts any more; end it now (boxes in flight still finish)."""
        self.client.delete(self.keys.rollout_part(rollout_id, "pending"))
        try:
            rollout = self.get(rollout_id)
        except ConfigError:  # never planned (preflight): nothing but its record to end
            did, final = self.states.end(rollout_id, RolloutState.HALTED)
            return final if did else None
        return self.end(rollout)

    def end(self, rollout: Rollout) -> str | None:
        """Set the final state (exactly one caller gets to) and run the end of the rollout."""
        halted_final = (
            RolloutState.ROLLBACK_PENDING
            if rollout.plan.on_failure == "rollback"
            else RolloutState.HALTED
        )
        did, final = self.states.end(rollout.id, halted_final)
        if not did:
            return None
        if final == RolloutState.SUCCEEDED and rollout.kind != "catchup":
            # Only the record signed with the rollout is promoted: the end holds no key. (A
            # catch-up deploys the current release: current and its signed record stay.)
            warrant = self.states.warrant(rollout.id)
            signed = warrant.current if warrant is not None else None
            self.states.set_current(rollout.box_type, rollout.release_id, signed)
        if final == RolloutState.ROLLBACK_PENDING:
            self.lease.persist(rollout.box_type, rollout.id)  # held until a rollback attaches
        else:
            self.lease.release(rollout.box_type, rollout.id)
            self.states.clear_active(rollout.box_type, rollout.id)
        st = self.status(rollout.id)
        self.resume_group(rollout.id, st)
        self.events.emit(
            rollout.box_type,
            rollout=rollout.id,
            step="rollout",
            phase="end",
            outcome=final,
            reason=st.get("halt_reason", ""),
        )
        return final

    def fleet_of(self, box_type: str, source: Source = "auto") -> FleetView:
        """The box type's fleet as a rollout would plan it now (engine/fleet.py)."""
        return Fleet(self.client, self.keys, source=source, aws=self.aws).read(box_type)

    def suspend_group(self, rollout_id: str, group: str) -> None:
        """Suspend what would replace a box out for its swap; the end resumes it."""
        from orchestrator.engine import asg
        from orchestrator.engine.aws import aws_client

        assert self.aws is not None, "a group came from AWS"
        self.client.hset(self.keys.rollout(rollout_id), "asg", group)
        asg.suspend(aws_client("autoscaling", *self.aws), group)

    def resume_group(self, rollout_id: str, st: dict[str, str] | None = None) -> None:
        """Resume what the rollout suspended on its auto scaling group, however it ended."""
        group = (st or self.status(rollout_id)).get("asg")
        if not group or self.aws is None:
            return
        from orchestrator.engine import asg
        from orchestrator.engine.aws import aws_client

        asg.resume(aws_client("autoscaling", *self.aws), group)
        self.client.hdel(self.keys.rollout(rollout_id), "asg")
