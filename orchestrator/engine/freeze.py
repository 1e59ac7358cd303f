"""Deploy freezes: a box type no rollout, catch-up or boot convergence may change until lifted."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from orchestrator.engine.redisconn import RedisClient
from schemas.contract import Keys


@dataclass(frozen=True)
class Freeze:
    message: str
    who: str
    at: float

    def __str__(self) -> str:
        age = time.time() - self.at
        return f"frozen by {self.who} {age:.0f}s ago: {self.message}"


class Freezes:
    """One key per box type (`freeze:<type>`), written only by `lock acquire|release`."""

    def __init__(self, client: RedisClient, keys: Keys) -> None:
        self.client, self.keys = client, keys

    def get(self, box_type: str) -> Freeze | None:
        raw = self.client.get(self.keys.freeze(box_type))
        if raw is None:
            return None
        try:
            return Freeze(**json.loads(raw))
        except (ValueError, TypeError):  # unreadable: still a freeze, never silently lifted
            return Freeze(message="(unreadable freeze record)", who="?", at=time.time())

    def acquire(self, box_type: str, message: str, who: str) -> Freeze | None:
        """Freeze the type; None if it is frozen already (the existing freeze stays)."""
        record = Freeze(message, who, time.time())
        if self.client.set(self.keys.freeze(box_type), json.dumps(asdict(record)), nx=True):
            return record
        return None

    def lift(self, box_type: str) -> Freeze | None:
        """Lift the freeze; what it was, or None if the type was not frozen."""
        found = self.get(box_type)
        if found is not None:
            self.client.delete(self.keys.freeze(box_type))
        return found
