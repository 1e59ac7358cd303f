"""Rollout state in Redis and the self-driving fill: who starts next, and who ends it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from celery import Celery

from orchestrator.engine.chains import rollout_chain
from orchestrator.engine.events import Events
from orchestrator.engine.fleet import heartbeats
from orchestrator.engine.lease import Lease
from orchestrator.engine.redisconn import LuaScript, RedisClient
from orchestrator.engine.releases import ReleaseStore
from schemas.contract import Keys, StepRequest
from schemas.depgraph import start_order
from schemas.rollout import Rollout, RolloutState

# One script both sides run: record a finishing box (once), then start boxes up to the window.
# Before the canary wave is done, nothing past it starts (the barrier).
_FILL = LuaScript("""
local h, pending, inflight, done = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local box, outcome, slot_prefix, slot_ms, why = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if box ~= '' then
  if redis.call('HSETNX', done, box, outcome) == 0 then
    return {'dup', redis.call('HGET', h, 'state')}
  end
  redis.call('SREM', inflight, box)
  if outcome == 'ok' then
    redis.call('HINCRBY', h, 'n_ok', 1)
  elseif outcome == 'cancelled' then
    redis.call('HINCRBY', h, 'n_cancelled', 1)
  else
    local failed = redis.call('HINCRBY', h, 'n_failed', 1)
    local budget = tonumber(redis.call('HGET', h, 'max_failed'))
    local state = redis.call('HGET', h, 'state')
    if failed > budget and (state == 'running' or state == 'rolling-back') then
      redis.call('HSET', h, 'state', 'halted', 'halt_reason',
        'box ' .. box .. ' ' .. outcome .. ' (' .. failed .. ' failed, budget ' .. budget .. ')'
        .. (why ~= '' and (': ' .. why) or ''))
    end
  end
end
local state = redis.call('HGET', h, 'state')
local started = {}
if state == 'running' or state == 'rolling-back' then
  local canary = tonumber(redis.call('HGET', h, 'canary'))
  local batch = tonumber(redis.call('HGET', h, 'batch'))
  local scheduled = tonumber(redis.call('HGET', h, 'scheduled'))
  local window, limit = batch, -1
  if redis.call('HLEN', done) < canary then window, limit = canary, canary end
  while redis.call('SCARD', inflight) < window and (limit < 0 or scheduled < limit) do
    local nxt = redis.call('LPOP', pending)
    if not nxt then break end
    redis.call('SADD', inflight, nxt)
    redis.call('SET', slot_prefix .. nxt, 'scheduled', 'PX', slot_ms)
    scheduled = scheduled + 1
    table.insert(started, nxt)
  end
  redis.call('HSET', h, 'scheduled', scheduled)
end
local idle = redis.call('SCARD', inflight) == 0 and #started == 0
local moving = state == 'running' or state == 'rolling-back'
if idle and (redis.call('LLEN', pending) == 0 or not moving) then
  return {'drained', state, unpack(started)}
end
return {'fill', state, unpack(started)}
""")

# Whoever sets the final state runs the end; this makes that one caller, exactly once.
_FINALIZE = LuaScript("""
local state = redis.call('HGET', KEYS[1], 'state')
if redis.call('HEXISTS', KEYS[1], 'ended') == 1 then return {0, state} end
if state == 'paused' then return {0, state} end
local final
if state == 'aborted' then final = 'aborted'
elseif state == 'halted' then final = ARGV[1]
elseif tonumber(redis.call('HGET', KEYS[1], 'n_failed')) > 0 then final = 'failed'
else final = 'succeeded' end
redis.call('HSET', KEYS[1], 'state', final, 'ended', ARGV[2])
return {1, final}
""")

# Set a state only from the states allowed to move to it (pause, resume, abort, rollback).
_TRANSITION = LuaScript("""
local state = redis.call('HGET', KEYS[1], 'state')
for i = 2, #ARGV do
  if state == ARGV[i] then redis.call('HSET', KEYS[1], 'state', ARGV[1]); return {1, state} end
end
return {0, tostring(state)}
""")


@dataclass(frozen=True)
class Fill:
    kind: str  # "fill", "dup" (this box's finish already counted) or "drained"
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
        self.lease_ttl, self.slot_ttl = lease_ttl, slot_ttl
        self.aws = aws  # (region, endpoint) to resume a group's processes at the end

    # --- storage ---------------------------------------------------------------------
    def create(self, rollout: Rollout, state: RolloutState = RolloutState.RUNNING) -> None:
        k = self.keys
        pipe = self.client.pipeline()
        pipe.set(k.rollout_part(rollout.id, "spec"), rollout.model_dump_json())
        pipe.hset(
            k.rollout(rollout.id),
            mapping={
                "state": state.value,
                "box_type": rollout.box_type,
                "canary": rollout.plan.canary,
                "batch": rollout.plan.batch,
                "max_failed": rollout.plan.max_failed,
                "scheduled": 0,
                "n_ok": 0,
                "n_failed": 0,
                "n_cancelled": 0,
                "n_total": len(rollout.plan.boxes),
                "created": rollout.created_at,
                "reason": rollout.reason,
            },
        )
        if rollout.plan.boxes:
            pipe.rpush(k.rollout_part(rollout.id, "pending"), *rollout.plan.boxes)
        pipe.zadd(k.rollouts(rollout.box_type), {rollout.id: rollout.created_at})
        pipe.set(k.active(rollout.box_type), rollout.id)
        pipe.execute()

    def get(self, rollout_id: str) -> Rollout:
        raw = self.client.get(self.keys.rollout_part(rollout_id, "spec"))
        if raw is None:
            from orchestrator.errors import ConfigError

            raise ConfigError(f"no rollout {rollout_id!r} (see `orchestrator history <type>`)")
        return Rollout.model_validate_json(raw)

    def status(self, rollout_id: str) -> dict[str, str]:
        raw = self.client.hgetall(self.keys.rollout(rollout_id))
        return {_text(a): _text(b) for a, b in raw.items()}

    def state(self, rollout_id: str) -> str:
        return _text(self.client.hget(self.keys.rollout(rollout_id), "state") or b"")

    def done(self, rollout_id: str) -> dict[str, str]:
        raw = self.client.hgetall(self.keys.rollout_part(rollout_id, "done"))
        return {_text(a): _text(b) for a, b in raw.items()}

    def inflight(self, rollout_id: str) -> list[str]:
        return sorted(
            _text(b) for b in self.client.smembers(self.keys.rollout_part(rollout_id, "inflight"))
        )

    def transition(self, rollout_id: str, to: str, *allowed_from: str) -> tuple[bool, str]:
        ok, before = _TRANSITION(self.client, [self.keys.rollout(rollout_id)], [to, *allowed_from])
        return bool(ok), _text(before)

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
            [box, outcome, k.slot(rollout.id, ""), int(self.slot_ttl * 1000), why[:500]],
        )
        kind, state, *started = (_text(x) for x in res)
        return Fill(kind, state, started)

    def advance(self, rollout: Rollout, box: str = "", outcome: str = "", why: str = "") -> Fill:
        """Record `box` (if any), start its successors, and run the end once drained."""
        fill = self.fill(rollout, box, outcome, why)
        if fill.kind == "dup":
            return fill
        for started in fill.started:
            self.launch(rollout, started)
        if fill.kind == "drained":
            if fill.state in ("running", "rolling-back"):
                # Boxes that joined the fleet meanwhile get chains before the rollout ends.
                planned = set(rollout.plan.boxes) | set(self.done(rollout.id))
                newcomers = sorted(set(self.fleet(rollout)) - planned)
                if newcomers:
                    self.client.rpush(self.keys.rollout_part(rollout.id, "pending"), *newcomers)
                    self.client.hincrby(self.keys.rollout(rollout.id), "n_total", len(newcomers))
                    return self.advance(rollout)
            self.end(rollout)
        return fill

    def fleet(self, rollout: Rollout) -> list[str]:
        """The same one rule as at the start: the group's InService boxes with a worker,
        or, without a group, every box with a live heartbeat."""
        beats = heartbeats(self.client, self.keys, rollout.box_type)
        group = self.status(rollout.id).get("asg")
        if not group or self.aws is None:
            return sorted(beats)
        from orchestrator.engine.asg import AsgFleet, find_group, group_instances
        from orchestrator.engine.aws import aws_client

        found = find_group(aws_client("autoscaling", *self.aws), rollout.box_type)
        if found is None:
            return []
        return AsgFleet(group, group_instances(found, aws_client("ec2", *self.aws)), beats).boxes

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
            token=0,  # taken by `claim`; later steps read it from the rollout's tokens
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
        rid = self.client.get(self.keys.active(box_type))
        if rid is None:
            return None
        rollout_id = _text(rid)
        holder, _ = self.lease.holder(box_type)
        st = self.status(rollout_id)
        if holder == rollout_id or "ended" in st or not st:
            return None
        self.client.hset(
            self.keys.rollout(rollout_id),
            mapping={
                "state": "abandoned",
                "ended": time.time(),
                "halt_reason": "its lease expired: nothing advanced it",
            },
        )
        self.client.delete(self.keys.active(box_type))
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
        """`resume` tries failed boxes again: back in front of the queue, with a new journal
        (an old one would replay the failure) and no claimed token."""
        failed = sorted(b for b, o in self.done(rollout.id).items() if o == "failed")
        if not failed:
            return []
        k = self.keys
        pipe = self.client.pipeline()
        pipe.hdel(k.rollout_part(rollout.id, "done"), *failed)
        pipe.hdel(k.rollout_part(rollout.id, "tokens"), *failed)
        for box in failed:
            pipe.delete(k.journal(rollout.id, box))
        pipe.lpush(k.rollout_part(rollout.id, "pending"), *reversed(failed))
        pipe.hincrby(k.rollout(rollout.id), "n_failed", -len(failed))
        pipe.hincrby(k.rollout(rollout.id), "scheduled", -len(failed))
        pipe.hdel(k.rollout(rollout.id), "halt_reason")
        pipe.execute()
        return failed

    def reap_dead(self, box_type: str) -> list[str]:
        """Boxes in flight whose slot expired: each counts as failed (the rollout halts)."""
        rid = self.client.get(self.keys.active(box_type))
        if rid is None:
            return []
        rollout_id = _text(rid)
        boxes = self.inflight(rollout_id)
        if not boxes:
            return []
        pipe = self.client.pipeline()
        for box in boxes:
            pipe.exists(self.keys.slot(rollout_id, box))
        dead = [box for box, alive in zip(boxes, pipe.execute(), strict=True) if not alive]
        if dead:
            rollout = self.get(rollout_id)
            for box in dead:
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
        return dead

    def end(self, rollout: Rollout) -> str | None:
        """Set the final state (exactly one caller gets to) and run the end of the rollout."""
        halted_final = "rollback-pending" if rollout.plan.on_failure == "rollback" else "halted"
        did, final = _FINALIZE(
            self.client, [self.keys.rollout(rollout.id)], [halted_final, time.time()]
        )
        final = _text(final)
        if not did:
            return None
        if final == "succeeded":
            self.client.set(self.keys.current(rollout.box_type), rollout.release_id)
        if final == "rollback-pending":
            self.lease.persist(rollout.box_type, rollout.id)  # held until a rollback attaches
        else:
            self.lease.release(rollout.box_type, rollout.id)
            active = self.keys.active(rollout.box_type)
            if _text(self.client.get(active) or b"") == rollout.id:
                self.client.delete(active)
        st = self.status(rollout.id)
        self.resume_group(rollout, st)
        self.events.emit(
            rollout.box_type,
            rollout=rollout.id,
            step="rollout",
            phase="end",
            outcome=final,
            reason=st.get("halt_reason", ""),
        )
        return final

    def resume_group(self, rollout: Rollout, st: dict[str, str] | None = None) -> None:
        """Resume what the rollout suspended on its auto scaling group, however it ended."""
        group = (st or self.status(rollout.id)).get("asg")
        if not group or self.aws is None:
            return
        from orchestrator.engine.asg import resume
        from orchestrator.engine.aws import aws_client

        resume(aws_client("autoscaling", *self.aws), group)
        self.client.hdel(self.keys.rollout(rollout.id), "asg")
