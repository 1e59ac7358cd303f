"""The lease of a box type: owned by a rollout (not a process), with fencing tokens."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from orchestrator.engine.redisconn import LuaScript, RedisClient, durably
from orchestrator.engine.state import MOVING
from orchestrator.errors import NotReplicated
from schemas.contract import Keys

# Compare-and-act: only the owner renews, persists or releases.
_RENEW = LuaScript.load("lease_renew")
_PERSIST = LuaScript.load("lease_persist")
_RELEASE = LuaScript.load("lease_release")
_HANDOVER = LuaScript.load("lease_hand_over")
# Claim: lease owner, rollout state and a fresh token, in one step (protocol rule 3).
_CLAIM = LuaScript.load("claim")
_MINT = LuaScript.load("mint")
_REVOKE = LuaScript.load("revoke")
_FENCE = LuaScript.load("fence")


@dataclass(frozen=True)
class Claim:
    ok: bool
    token: str = ""
    reason: str = ""


class Lease:
    """`lease:<type>` holds the owning rollout's id, with a TTL while boxes are in flight.

    Who holds what survives a failover: every write that grants (acquire, hand-over, claim,
    a fresh token, a revocation) waits for a replica (`durably`, strict: NotReplicated when
    none acknowledges, and the grant is not used); a release or persist waits but goes on
    (lost, the lease comes back until its TTL). A renewal does not wait: a lost one costs
    seconds of TTL, never the holder."""

    def __init__(self, client: RedisClient, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def acquire(self, box_type: str, rollout_id: str, ttl: float) -> str | None:
        """None when acquired; else the id of the rollout holding it."""
        key = self.keys.lease(box_type)
        try:
            taken, holder = durably(
                self.client, lambda p: p.set(key, rollout_id, nx=True, px=int(ttl * 1000)).get(key)
            )
        except NotReplicated:
            self.release(box_type, rollout_id)  # not used: given back
            raise
        # A SET retried after a failover finds its own first write: acquired all the same.
        if taken or (holder and _text(holder) == rollout_id):
            return None
        return _text(holder) if holder else "(just released: try again)"

    def holder(self, box_type: str) -> tuple[str | None, float | None]:
        """(rollout id, seconds left or None without expiry)."""
        key = self.keys.lease(box_type)
        pipe = self.client.pipeline()
        pipe.get(key)
        pipe.pttl(key)
        raw, pttl = pipe.execute()
        if raw is None:
            return None, None
        return raw.decode(), (pttl / 1000 if pttl and pttl > 0 else None)

    def renew(self, box_type: str, rollout_id: str, ttl: float) -> bool:
        return bool(_RENEW(self.client, [self.keys.lease(box_type)], [rollout_id, int(ttl * 1000)]))

    def persist(self, box_type: str, rollout_id: str) -> bool:
        """Paused and rollback-pending rollouts hold the lease without expiry."""
        return bool(self._script(_PERSIST, [self.keys.lease(box_type)], [rollout_id], False))

    def release(self, box_type: str, rollout_id: str) -> bool:
        return bool(self._script(_RELEASE, [self.keys.lease(box_type)], [rollout_id], False))

    def force_release(self, box_type: str) -> str | None:
        key = self.keys.lease(box_type)
        (holder,) = durably(self.client, lambda p: p.getdel(key), strict=False)
        return _text(holder) if holder else None

    def hand_over(self, box_type: str, parent: str, child: str, ttl: float) -> bool:
        """Atomically from the parent rollout to its rollback."""
        args = [parent, child, int(ttl * 1000)]
        return bool(self._script(_HANDOVER, [self.keys.lease(box_type)], args))

    def _script(self, script: LuaScript, keys: list[str], args: list[Any], strict: bool = True
                ) -> Any:
        """`script`, then wait for a replica (`durably`)."""
        return durably(self.client, lambda p: script(self.client, keys, args, pipe=p),
                       strict=strict)[0]

    def fresh_token(self, box_type: str, box_id: str, owner: str, kind: str = "box") -> str:
        """A new token for a box acting on its own (boot: kind `box`, valid while its token
        is the box's): any later claim supersedes it. Kind `rollout` ties it to the life of
        rollout `owner`'s record, as a claim does."""
        keys = [self.keys.fence(box_type), self.keys.box_token(box_id)]
        return _text(self._script(_MINT, keys, [new_epoch(), owner, kind]))

    def owner(self, box_id: str) -> tuple[str, str] | None:
        """(token, rollout) of the one chain that may act on the box now; None: nobody."""
        token, rollout = self.client.hmget(self.keys.box_token(box_id), ["token", "rollout"])
        return (_text(token), _text(rollout)) if token is not None else None

    def owner_lives(self, box_id: str) -> bool:
        """The box's token was claimed by a rollout that is recorded and has not ended."""
        _, kind, rollout = self.client.hmget(
            self.keys.box_token(box_id), ["token", "kind", "rollout"]
        )
        if kind != b"rollout" or rollout is None:
            return False
        pipe = self.client.pipeline()
        pipe.exists(self.keys.rollout(_text(rollout)))
        pipe.hexists(self.keys.rollout(_text(rollout)), "ended")
        exists, ended = pipe.execute()
        return bool(exists) and not ended

    def may_act(self, box_id: str, token: str) -> str:
        """'' while `token` is the box's and its rollout (if a rollout claimed it) lives; else
        why not."""
        keys = [self.keys.box_token(box_id)]
        return _text(_FENCE(self.client, keys, [token, self.keys.rollout("")]))

    def revoke(self, box_id: str, rollout_id: str) -> bool:
        """The rollout counted the box dead: its token stops being valid at this moment."""
        return bool(self._script(_REVOKE, [self.keys.box_token(box_id)], [rollout_id]))

    def claim(self, box_type: str, rollout_id: str, box_id: str) -> Claim:
        ok, value = self._script(
            _CLAIM,
            [
                self.keys.lease(box_type),
                self.keys.rollout(rollout_id),
                self.keys.fence(box_type),
                self.keys.box_token(box_id),
                self.keys.rollout_part(rollout_id, "tokens"),
            ],
            [rollout_id, box_id, new_epoch(), *sorted(MOVING)],
        )
        text = _text(value)
        return Claim(True, text) if ok else Claim(False, reason=text)


def new_epoch() -> str:
    """Used only when the fencing hash is gone: unique, and never seen before."""
    return f"{int(time.time()):x}{secrets.token_hex(3)}"


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
