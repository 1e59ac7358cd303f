"""The box type's event stream: every step's start and end, one clock (Redis stream ids)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.engine.redisconn import RedisClient
from schemas.contract import Keys

# Enough for weeks of history of a busy box type; trimmed approximately, which is cheap.
STREAM_MAXLEN = 100_000


@dataclass(frozen=True)
class Announcement:
    """An event a journal script appends in its own round trip (Journal.count_attempt and
    record): the stream and the event's field/value pairs, flat."""

    key: str
    pairs: tuple[str, ...]

    def args(self) -> list[str | int]:
        return [STREAM_MAXLEN, *self.pairs]


class Events:
    def __init__(self, client: RedisClient, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def announcement(self, box_type: str, **fields: Any) -> Announcement:
        """The event `emit` would append, for a script to append instead."""
        pairs = tuple(x for kv in _clean(fields).items() for x in kv)
        return Announcement(self.keys.events(box_type), pairs)

    def emit(self, box_type: str, **fields: Any) -> str:
        """Append one event; returns its stream id (ms-seq), the time every duration uses."""
        clean = _clean(fields)
        key = self.keys.events(box_type)
        if clean.get("step") == "rollout" and clean.get("phase") == "start":
            # A lifecycle's start names its type where notifiers look (one round trip).
            pipe = self.client.pipeline(transaction=False)
            pipe.xadd(key, clean, maxlen=STREAM_MAXLEN, approximate=True)
            pipe.sadd(self.keys.event_types(), box_type)
            sid = pipe.execute()[0]
        else:
            sid = self.client.xadd(key, clean, maxlen=STREAM_MAXLEN, approximate=True)
        return sid.decode() if isinstance(sid, bytes) else str(sid)

    def read(
        self, box_type: str, after: str = "0", count: int = 1000
    ) -> list[tuple[str, dict[str, str]]]:
        rows = self.client.xrange(
            self.keys.events(box_type), min=f"({after}" if after != "0" else "-", count=count
        )
        return _decoded(rows)

    def wait(
        self, box_type: str, after: str, seconds: float, count: int = 1000
    ) -> list[tuple[str, dict[str, str]]]:
        """The events after `after`, as `read`; with none yet, blocks (XREAD BLOCK) until the
        first arrives or `seconds` pass: a follower sees an event when it is written."""
        key = self.keys.events(box_type)
        got = self.client.xread({key: after}, count=count, block=max(int(seconds * 1000), 1))
        return _decoded(got[0][1]) if got else []


def _clean(fields: dict[str, Any]) -> dict[str, str]:
    return {k: "" if v is None else str(v) for k, v in fields.items()}


def _decoded(rows: Any) -> list[tuple[str, dict[str, str]]]:
    return [
        (
            sid.decode() if isinstance(sid, bytes) else str(sid),
            {
                (k.decode() if isinstance(k, bytes) else str(k)): (
                    v.decode() if isinstance(v, bytes) else str(v)
                )
                for k, v in data.items()
            },
        )
        for sid, data in rows
    ]


def stream_ms(stream_id: str) -> int:
    return int(stream_id.split("-", 1)[0])
