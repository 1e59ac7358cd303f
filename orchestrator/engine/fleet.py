"""The fleet of a box type: the boxes with a live heartbeat (AWS groups come later)."""

from __future__ import annotations

from orchestrator.engine.redisconn import RedisClient
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
