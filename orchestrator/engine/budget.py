"""One budget per load balancer, across box types: places out reserved before a box leaves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.engine.events import STREAM_MAXLEN
from orchestrator.engine.redisconn import LuaScript, RedisClient
from schemas.contract import Keys

_RESERVE = LuaScript.load("lb_reserve")
_RELEASE = LuaScript.load("lb_release")


@dataclass(frozen=True)
class Reservation:
    ok: bool
    reason: str = ""


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class Budgets:
    """`lbbudget` (published from fleet.yml), `lbout:<lb key>` (who is out), `lbwait`."""

    def __init__(self, client: RedisClient, keys: Keys) -> None:
        self.client, self.keys = client, keys

    def publish(self, budgets: dict[str, int]) -> None:
        """fleet.yml's budgets replace the published ones (none: no limit anywhere)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.keys.lb_budget())
        if budgets:
            pipe.hset(self.keys.lb_budget(), mapping={k: str(v) for k, v in budgets.items()})
        pipe.execute()

    def limits(self) -> dict[str, int]:
        raw = self.client.hgetall(self.keys.lb_budget())
        return {_text(k): int(v) for k, v in raw.items()}

    def holders(self, lb_key: str) -> dict[str, str]:
        """box -> `rollout token box_type` of the places reserved out of `lb_key`."""
        raw = self.client.hgetall(self.keys.lb_out(lb_key))
        return {_text(k): _text(v) for k, v in raw.items() if not _text(k).startswith("~")}

    def reserve(
        self, box: str, box_type: str, rollout: str, token: str, lb_keys: list[str]
    ) -> Reservation:
        """Places for `box` out of every budgeted one of `lb_keys`, all or none; a full load
        balancer records the rollout as waiting (a later release wakes it)."""
        k = self.keys
        lbs = sorted(set(lb_keys))
        res = _RESERVE(
            self.client,
            [k.lb_budget(), k.lb_wait(), *(k.lb_out(lb) for lb in lbs)],
            [
                box,
                rollout,
                token,
                box_type,
                k.slot("", "")[:-1],
                k.box_token(""),
                k.events(""),
                STREAM_MAXLEN,
                *lbs,
            ],
        )
        kind, *rest = (_text(x) for x in res)
        return Reservation(kind != "full", rest[0] if rest else "")

    def release(self, box: str) -> list[str]:
        """Give back every place `box` holds ('' only wakes); the rollouts to fill again."""
        k = self.keys
        woken = _RELEASE(
            self.client,
            [k.lb_budget(), k.lb_wait()],
            [box, k.lb_out(""), k.events(""), k.rollout(""), STREAM_MAXLEN],
        )
        return sorted(_text(r) for r in woken)
