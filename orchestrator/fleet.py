"""The fleet of a box type: the boxes with a live heartbeat (AWS groups come later)."""

from __future__ import annotations

from orchestrator.redisconn import RedisClient
from schemas.contract import Heartbeat, Keys


def heartbeats(client: RedisClient, keys: Keys, box_type: str) -> dict[str, Heartbeat]:
    """Live heartbeats of `box_type`, by box id (expired ones are simply gone)."""
    out: dict[str, Heartbeat] = {}
    found = list(client.scan_iter(match=keys.heartbeat_pattern(), count=1000))
    if not found:
        return out
    for raw in client.mget(found):
        if raw is None:
            continue
        hb = Heartbeat.model_validate_json(raw)
        if hb.box_type == box_type:
            out[hb.box_id] = hb
    return out


def heartbeat(client: RedisClient, keys: Keys, box_id: str, box_type: str) -> Heartbeat | None:
    """One box's live heartbeat, if it is of `box_type`: one GET, whatever the fleet's size."""
    raw = client.get(keys.heartbeat(box_id))
    if raw is None:
        return None
    hb = Heartbeat.model_validate_json(raw)
    return hb if hb.box_type == box_type else None
