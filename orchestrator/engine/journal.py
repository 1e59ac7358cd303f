"""The journal: one result per (rollout, box, step, app); a redelivered step returns it."""

from __future__ import annotations

import json
from typing import Any

from orchestrator.engine.events import Announcement
from orchestrator.engine.redisconn import LuaScript, RedisClient
from schemas.contract import Keys, Outcome, StepResult

_RECORD = LuaScript.load("journal_record")
_BEGIN = LuaScript.load("step_begin")

# Journals outlive their rollout for post-mortems, but not forever.
JOURNAL_TTL = 7 * 24 * 3600


def field(step: str, app: str | None) -> str:
    return f"{step}:{app or '-'}"


class Journal:
    """Redis hash `journal:<rollout>:<box>`: fields `<step>:<app>` -> StepResult JSON."""

    def __init__(self, client: RedisClient, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def get(self, rollout_id: str, box_id: str, step: str, app: str | None) -> StepResult | None:
        return self.parse(self.client.hget(self.keys.journal(rollout_id, box_id), field(step, app)))

    def queue_get(
        self, pipe: Any, rollout_id: str, box_id: str, step: str, app: str | None
    ) -> None:
        """`get` queued on a pipeline: its answer is `parse`d from the pipeline's results."""
        pipe.hget(self.keys.journal(rollout_id, box_id), field(step, app))

    @staticmethod
    def parse(raw: bytes | str | None) -> StepResult | None:
        return StepResult.model_validate_json(raw) if raw else None

    def record(self, result: StepResult, end: Announcement | None = None) -> StepResult:
        """First write wins: a step that ran twice keeps the first recorded outcome; only a
        `deferred` one is replaced (the box's next chain in the rollout runs that step).
        `end`: the step's end event, appended in the same round trip with the recorded
        result's outcome, reason and duration."""
        keys = [self.keys.journal(result.rollout_id, result.box_id)]
        args: list[str | int] = [
            field(result.step, result.app),
            result.model_dump_json(),
            "1" if result.outcome == Outcome.DEFERRED else "0",
            JOURNAL_TTL,
        ]
        if end is not None:
            keys.append(end.key)
            args += end.args()
        return StepResult.model_validate_json(_RECORD(self.client, keys, args))

    def reopen(self, rollout_id: str, box_id: str, steps: list[str]) -> None:
        """A deferred box goes back to pending: `steps` run again in its next chain, and no
        step counts the attempts of this one."""
        key = self.keys.journal(rollout_id, box_id)
        names = [k.decode() if isinstance(k, bytes) else str(k) for k in self.client.hkeys(key)]
        drop = [field(s, None) for s in steps] + [n for n in names if n.startswith("~attempts:")]
        self.client.hdel(key, *drop)

    def entries(self, rollout_id: str, box_id: str) -> dict[str, StepResult]:
        raw = self.client.hgetall(self.keys.journal(rollout_id, box_id))
        out: dict[str, StepResult] = {}
        for k, v in raw.items():
            name = k.decode() if isinstance(k, bytes) else str(k)
            if not name.startswith("~"):
                out[name] = StepResult.model_validate_json(v)
        return out

    def first_failure(self, rollout_id: str, box_id: str) -> StepResult | None:
        failed = [r for r in self.entries(rollout_id, box_id).values() if r.failed]
        return min(failed, key=lambda r: r.ended) if failed else None

    def note(self, rollout_id: str, box_id: str, name: str, data: dict[str, Any]) -> None:
        """Side records (`~intent:swap:web`), written before acting so recovery can undo."""
        key = self.keys.journal(rollout_id, box_id)
        pipe = self.client.pipeline(transaction=False)  # one round trip
        pipe.hset(key, f"~{name}", json.dumps(data))
        pipe.expire(key, JOURNAL_TTL)
        pipe.execute()

    def read_note(self, rollout_id: str, box_id: str, name: str) -> dict[str, Any] | None:
        raw = self.client.hget(self.keys.journal(rollout_id, box_id), f"~{name}")
        return dict(json.loads(raw)) if raw else None

    def count_attempt(
        self, rollout_id: str, box_id: str, step: str, app: str | None,
        start: Announcement | None = None, most: int = 0,
    ) -> int:
        """One more attempt at the step; how many. `start`: its start event, appended in the
        same round trip when the count is at most `most` (the step runs)."""
        key = self.keys.journal(rollout_id, box_id)
        name = f"~attempts:{field(step, app)}"
        if start is None:
            return int(self.client.hincrby(key, name, 1))
        return int(_BEGIN(self.client, [key, start.key], [name, most, *start.args()]))


def is_failure(result: StepResult | None) -> bool:
    return result is not None and result.failed
