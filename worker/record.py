"""The box's own record on its disk: what it left and what it is changing, written before it acts.

Redis is a record of intent that may be lost; this file is not. After a restart, a Redis
restart without persistence or a pause past its slot, the worker finishes what this record
says (restore, then rejoin once healthy) unless a newer chain owns the box.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.contract import Member
from worker.atomicfile import replace_file


class BoxState(BaseModel):
    """Everything the box must still finish; empty when it is in service and at rest."""

    model_config = ConfigDict(extra="forbid")

    rollout: str = Field("", description="The chain that wrote last: rollout (or boot) id")
    token: str = Field("", description="That chain's fencing token")
    out: dict[str, Member] = Field(
        default_factory=dict, description="app -> the membership it left; rejoined once healthy"
    )
    intents: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="app -> the swap under way (restore reads it)"
    )
    draining: bool = Field(
        False, description="Left for a stop (scale-in): rejoined only when the worker starts"
    )
    claimed: str = Field(
        "", description="The rollout whose claim this box accepted (its order not expired)"
    )
    current_seq: int = Field(
        0, description="The highest seq of a signed current this box has seen: never older"
    )
    retiring: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="app -> the old version a start-first swap left running aside (`.prev`): "
        "new_hash, ids, names, stop_timeout; stopped once the chain settled",
    )
    staged: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="app -> a next version started ahead of the box's turn (start-first "
        "staging): rollout, release, spec_hash, state (starting, then ready)",
    )

    @property
    def idle(self) -> bool:
        return not self.out and not self.intents


# The record's per-app note fields: staged next versions, old versions left to stop.
Noted = Literal["staged", "retiring"]


def _notes(state: BoxState, field: Noted) -> dict[str, dict[str, str]]:
    return state.staged if field == "staged" else state.retiring


_LOCKS: dict[Path, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


def _atomic(change: Callable[..., None]) -> Callable[..., None]:
    """The record's read, edit and write as one, under the file's lock."""

    @functools.wraps(change)
    def locked(self: BoxRecord, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            change(self, *args, **kwargs)

    return locked


class BoxRecord:
    """`<state_dir>/<box>.json`, replaced atomically (write, fsync, rename, fsync the folder)."""

    def __init__(self, state_dir: str | Path, box_id: str) -> None:
        self.path = Path(state_dir) / f"{box_id}.json"
        # One lock per file, not per object: every thread (a step, the catch-up, a retire)
        # makes its own BoxRecord of the same box. Each change reads, edits and writes under
        # it: a retire's write made from an older read would drop a step's intent.
        with _LOCKS_GUARD:
            self._lock = _LOCKS.setdefault(self.path, threading.RLock())

    def read(self) -> BoxState:
        try:
            return BoxState.model_validate_json(self.path.read_bytes())
        except FileNotFoundError:
            return BoxState()

    def write(self, state: BoxState) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            replace_file(self.path, state.model_dump_json().encode(), durable=True)

    def owned_by(self, rollout: str, token: str) -> BoxState:
        """The record, now written by this chain (a newer chain takes over what is out)."""
        state = self.read()
        if (state.rollout, state.token) != (rollout, token):
            state.rollout, state.token = rollout, token
        return state

    @_atomic
    def left(self, rollout: str, token: str, app: str, member: Member) -> None:
        state = self.owned_by(rollout, token)
        state.out[app] = member
        self.write(state)

    @_atomic
    def drained(self, app: str, member: Member) -> None:
        state = self.read()
        state.out[app] = member
        state.draining = True
        self.write(state)

    @_atomic
    def leaving(self, on: bool) -> None:
        """Left for a stop (scale-in), or started again: the heartbeat reads it."""
        state = self.read()
        if state.draining != on:
            state.draining = on
            self.write(state)

    @_atomic
    def joined(self, app: str) -> None:
        state = self.read()
        if state.out.pop(app, None) is not None:
            self.write(state)

    @_atomic
    def intend(self, rollout: str, token: str, app: str, intent: dict[str, Any]) -> None:
        state = self.owned_by(rollout, token)
        state.intents[app] = intent
        self.write(state)

    @_atomic
    def settle(self) -> None:
        """The chain is done with the box's containers: intents are history now."""
        state = self.read()
        if state.intents:
            state.intents = {}
            self.write(state)

    @_atomic
    def claim(self, rollout: str) -> None:
        state = self.read()
        if state.claimed != rollout:
            state.claimed = rollout
            self.write(state)

    def stage(self, app: str, note: dict[str, str]) -> None:
        """Written before a staged container starts, and again once it is healthy."""
        self._note("staged", app, note)

    def unstage(self, apps: list[str]) -> None:
        self._drop("staged", apps)

    @_atomic
    def retire(self, app: str, note: dict[str, str]) -> None:
        """Written before the old version is left to stop after the chain. The next version
        serves now: its staging note goes in the same write (one fsync pair a swap, not two)."""
        state = self.read()
        state.retiring[app] = note
        state.staged.pop(app, None)
        self.write(state)

    def retired(self, apps: list[str]) -> None:
        self._drop("retiring", apps)

    @_atomic
    def _note(self, field: Noted, app: str, note: dict[str, str]) -> None:
        state = self.read()
        _notes(state, field)[app] = note
        self.write(state)

    @_atomic
    def _drop(self, field: Noted, apps: list[str]) -> None:
        """Forget the apps' notes in `field`; the record is written only if one was there."""
        state = self.read()
        notes = _notes(state, field)
        if [notes.pop(app) for app in apps if app in notes]:
            self.write(state)

    @_atomic
    def saw_current(self, seq: int) -> None:
        state = self.read()
        if seq > state.current_seq:
            state.current_seq = seq
            self.write(state)

    @_atomic
    def clear(self) -> None:
        """Nothing left to finish; what the box has seen and claimed stays."""
        old = self.read()
        self.write(BoxState(claimed=old.claimed, current_seq=old.current_seq, staged=old.staged,
                            retiring=old.retiring))

