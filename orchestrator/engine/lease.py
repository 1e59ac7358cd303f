"""The lease of a box type: owned by a rollout (not a process), with fencing tokens."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.engine.redisconn import LuaScript, RedisClient
from orchestrator.engine.state import MOVING
from schemas.contract import Keys

# Compare-and-act: only the owner renews, persists or releases.
_RENEW = LuaScript.load("lease_renew")
_PERSIST = LuaScript.load("lease_persist")
_RELEASE = LuaScript.load("lease_release")
_HANDOVER = LuaScript.load("lease_hand_over")
# Claim: lease owner, rollout state and a fresh token, in one step (protocol rule 3).
_CLAIM = LuaScript.load("claim")


@dataclass(frozen=True)
class Claim:
    ok: bool
    token: int = 0
    reason: str = ""


class Lease:
    """`lease:<type>` holds the owning rollout's id, with a TTL while boxes are in flight."""

    def __init__(self, client: RedisClient, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def acquire(self, box_type: str, rollout_id: str, ttl: float) -> str | None:
        """None when acquired; else the id of the rollout holding it."""
        if self.client.set(self.keys.lease(box_type), rollout_id, nx=True, px=int(ttl * 1000)):
            return None
        holder = self.client.get(self.keys.lease(box_type))
        return holder.decode() if holder else "(just released: try again)"

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
        return bool(_PERSIST(self.client, [self.keys.lease(box_type)], [rollout_id]))

    def release(self, box_type: str, rollout_id: str) -> bool:
        return bool(_RELEASE(self.client, [self.keys.lease(box_type)], [rollout_id]))

    def force_release(self, box_type: str) -> str | None:
        holder = self.client.getdel(self.keys.lease(box_type))
        return holder.decode() if holder else None

    def hand_over(self, box_type: str, parent: str, child: str, ttl: float) -> bool:
        """Atomically from the parent rollout to its rollback."""
        return bool(
            _HANDOVER(self.client, [self.keys.lease(box_type)], [parent, child, int(ttl * 1000)])
        )

    def fresh_token(self, box_type: str, box_id: str) -> int:
        """A new token for a box acting on its own (boot): any later claim supersedes it."""
        token = int(self.client.incr(self.keys.fence(box_type)))
        self.client.set(self.keys.box_token(box_id), token)
        return token

    def claim(self, box_type: str, rollout_id: str, box_id: str) -> Claim:
        ok, value = _CLAIM(
            self.client,
            [
                self.keys.lease(box_type),
                self.keys.rollout(rollout_id),
                self.keys.fence(box_type),
                self.keys.box_token(box_id),
                self.keys.rollout_part(rollout_id, "tokens"),
            ],
            [rollout_id, box_id, *sorted(MOVING)],
        )
        text = value.decode() if isinstance(value, bytes) else str(value)
        return Claim(True, int(text)) if ok else Claim(False, reason=text)
