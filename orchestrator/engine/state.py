"""The rollout state machine: the only writer of a rollout's state, `active`, `current` and ids."""

from __future__ import annotations

import secrets
import time
from typing import Any

from orchestrator.engine.redisconn import LuaScript, RedisClient
from orchestrator.errors import IllegalTransition
from schemas.contract import Keys
from schemas.rollout import Rollout, RolloutState
from schemas.trust import SignedCurrent, Warrant

S = RolloutState
NEW = ""  # a rollout not recorded yet

# The allowed moves: each state, and the states it may be reached from. Moving to the state a
# rollout is already in is no move; the end (`ENDS`) may keep a state and only mark it ended.
MOVES: dict[RolloutState, frozenset[str]] = {
    S.PREFLIGHT: frozenset({NEW}),
    S.RUNNING: frozenset({NEW, S.PREFLIGHT, S.PAUSED, S.HALTED, S.BAKING}),  # … bake passed
    S.BAKING: frozenset({S.RUNNING}),  # the canary wave is done (the fill, lua/fill.lua)
    S.PAUSED: frozenset({S.RUNNING}),
    S.HALTED: frozenset({S.RUNNING, S.ROLLBACK_PENDING, S.BAKING}),  # budget spent; gate failed
    S.ROLLBACK_PENDING: frozenset({S.HALTED}),  # the end of a halted rollout to roll back
    S.SUCCEEDED: frozenset({S.RUNNING}),
    S.FAILED: frozenset({S.PREFLIGHT, S.RUNNING}),  # refused at preflight; failed in budget
    S.ABORTED: frozenset(
        {S.PREFLIGHT, S.RUNNING, S.PAUSED, S.HALTED, S.ROLLBACK_PENDING, S.BAKING}
    ),
    S.ABANDONED: frozenset(
        {S.PREFLIGHT, S.RUNNING, S.PAUSED, S.HALTED, S.ROLLBACK_PENDING, S.BAKING}
    ),
}
# Boxes start (fill) and are claimed only in these states.
MOVING = frozenset({S.RUNNING})
# How a rollout ends once nothing is in flight, from each state that can end that way.
# `succeeded` becomes `failed` when boxes failed within the budget; a halted rollout whose
# policy is rollback ends `rollback-pending`. A paused rollout does not end.
ENDS: dict[RolloutState, RolloutState] = {
    S.RUNNING: S.SUCCEEDED,
    S.HALTED: S.HALTED,
    S.ABORTED: S.ABORTED,
}

_TRANSITION = LuaScript.load("transition")
_FINALIZE = LuaScript.load("finalize")


def allowed(to: RolloutState, frm: str) -> bool:
    return frm in MOVES[to]


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def new_id(box_type: str, kind: str = "rollout") -> str:
    """`web-20261201-221500-ab12`, `web-rollback-…`: sortable by time, unique by the suffix."""
    middle = "" if kind == "rollout" else f"{kind}-"
    return f"{box_type}-{middle}{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def boot_id(box_id: str) -> str:
    """The journal id of a box's convergence on boot (not a rollout of the box type)."""
    return f"boot-{box_id}-{int(time.time())}"


class RolloutStates:
    """Moves rollouts through `MOVES` in Redis, atomically; an illegal move raises."""

    def __init__(self, client: RedisClient, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    # --- reads ---------------------------------------------------------------------------
    def state(self, rollout_id: str) -> str:
        return _text(self.client.hget(self.keys.rollout(rollout_id), "state") or b"")

    def active(self, box_type: str) -> str | None:
        raw = self.client.get(self.keys.active(box_type))
        return _text(raw) if raw else None

    def current(self, box_type: str) -> str | None:
        raw = self.client.get(self.keys.current(box_type))
        return _text(raw) if raw else None

    # --- moves ---------------------------------------------------------------------------
    def move(
        self,
        rollout_id: str,
        to: RolloutState,
        *,
        only_from: frozenset[str] | None = None,
        fields: dict[str, Any] | None = None,
        reopen: bool = False,
    ) -> str:
        """Move to `to` from a state the table allows (narrowed by `only_from`); set `fields`
        with it, and with `reopen` clear `ended`. Returns the state before."""
        sources = MOVES[to] if only_from is None else only_from
        if not sources <= MOVES[to]:
            raise ValueError(f"{sorted(sources - MOVES[to])} -> {to} is not in MOVES")
        pairs = [x for kv in (fields or {}).items() for x in (kv[0], str(kv[1]))]
        ok, before = _TRANSITION(
            self.client,
            [self.keys.rollout(rollout_id)],
            [to.value, len(sources), *sorted(sources), "1" if reopen else "0", *pairs],
        )
        if not ok:
            raise IllegalTransition(
                f"rollout {rollout_id} is {_text(before) or 'not recorded'}: it cannot become "
                f"{to.value} (only from {', '.join(sorted(s or 'new' for s in sources))})"
            )
        return _text(before)

    def open(self, rollout_id: str, box_type: str, reason: str, who: str = "") -> None:
        """A new rollout in preflight: who holds the lease, and why, is answerable at once."""
        self.move(
            rollout_id,
            S.PREFLIGHT,
            fields={"box_type": box_type, "reason": reason, "who": who, "created": time.time()},
        )

    def create(self, rollout: Rollout) -> None:
        """Record the planned rollout, running, as its box type's active rollout."""
        k, plan = self.keys, rollout.plan
        self.move(
            rollout.id,
            S.RUNNING,
            only_from=frozenset({NEW, S.PREFLIGHT}),
            fields={
                "box_type": rollout.box_type,
                "canary": plan.canary,
                "batch": plan.batch,
                "max_failed": plan.max_failed,
                "scheduled": 0,
                "n_ok": 0,
                "n_failed": 0,
                "n_cancelled": 0,
                "n_total": len(plan.boxes),
                "created": rollout.created_at,
                "reason": rollout.reason,
                "bake_s": rollout.bake.seconds if rollout.bake else 0,
                "bake_each": int(bool(rollout.bake and rollout.bake.each_wave)),
            },
        )
        pipe = self.client.pipeline()
        pipe.set(k.rollout_part(rollout.id, "spec"), rollout.model_dump_json())
        if plan.boxes:
            pipe.rpush(k.rollout_part(rollout.id, "pending"), *plan.boxes)
        pipe.zadd(k.rollouts(rollout.box_type), {rollout.id: rollout.created_at})
        pipe.set(k.active(rollout.box_type), rollout.id)
        pipe.execute()

    def refuse(self, rollout_id: str, why: str) -> bool:
        """Preflight (or anything before the first box) failed: the rollout ends failed."""
        try:
            self.move(
                rollout_id,
                S.FAILED,
                only_from=frozenset({S.PREFLIGHT}),
                fields={"ended": time.time(), "halt_reason": why[:500]},
            )
        except IllegalTransition:  # it got further than preflight: its own end follows
            return False
        return True

    def resume(self, rollout_id: str, box_type: str) -> str:
        """A paused or halted rollout runs again, as its box type's active rollout."""
        before = self.move(
            rollout_id, S.RUNNING, only_from=frozenset({S.PAUSED, S.HALTED}), reopen=True
        )
        self.client.set(self.keys.active(box_type), rollout_id)
        return before

    def end(self, rollout_id: str, halted_final: RolloutState) -> tuple[bool, str]:
        """Mark the rollout ended in its final state; True for exactly one caller."""
        ends = {**ENDS, S.HALTED: halted_final}
        did, final = _FINALIZE(
            self.client,
            [self.keys.rollout(rollout_id)],
            [time.time(), *[x for kv in ends.items() for x in (kv[0].value, kv[1].value)]],
        )
        return bool(did), _text(final)

    def abandon(self, rollout_id: str, box_type: str, why: str) -> bool:
        """Its lease expired with nothing advancing it: the rollout is abandoned."""
        try:
            self.move(rollout_id, S.ABANDONED, fields={"ended": time.time(), "halt_reason": why})
        except IllegalTransition:
            return False
        self.clear_active(box_type, rollout_id)
        return True

    # --- the box type's pointers -----------------------------------------------------------
    def clear_active(self, box_type: str, rollout_id: str) -> None:
        key = self.keys.active(box_type)
        if _text(self.client.get(key) or b"") == rollout_id:
            self.client.delete(key)

    def set_current(
        self, box_type: str, release_id: str, signed: SignedCurrent | None = None
    ) -> None:
        """The box type's last successful release: what new boxes and repairs converge to;
        with the record the coordinator signed for it (boxes converge only on that)."""
        pipe = self.client.pipeline()
        pipe.set(self.keys.current(box_type), release_id)
        if signed is not None:
            pipe.set(self.keys.signed_current(box_type), signed.model_dump_json())
        else:
            pipe.delete(self.keys.signed_current(box_type))
        pipe.execute()

    def signed_current(self, box_type: str) -> SignedCurrent | None:
        raw = self.client.get(self.keys.signed_current(box_type))
        return SignedCurrent.model_validate_json(raw) if raw else None

    # --- the signed order ------------------------------------------------------------------
    def set_warrant(self, rollout_id: str, warrant: Warrant) -> None:
        """The rollout's signed order (and current-on-success), written by the coordinator."""
        self.client.set(self.keys.rollout_part(rollout_id, "order"), warrant.model_dump_json())

    def warrant(self, rollout_id: str) -> Warrant | None:
        raw = self.client.get(self.keys.rollout_part(rollout_id, "order"))
        return Warrant.model_validate_json(raw) if raw else None
