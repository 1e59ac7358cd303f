"""Preflight from the coordinator's side: ask every box, then wait on the answers (BLPOP)."""

from __future__ import annotations

import time
from collections.abc import Callable

from celery import Celery

from orchestrator.engine.celery_app import NO_DECLARE, batched, brief
from orchestrator.engine.fleet import GONE_AFTER, Members, last_seen
from orchestrator.engine.journal import Journal
from orchestrator.engine.redisconn import RedisClient
from orchestrator.errors import PreflightFailed
from schemas.contract import Keys, Outcome, StepRequest, TaskName, queue_for
from schemas.release import Release

# How often every unanswered box's journal and heartbeat are read as well, once no answer has
# come for this long: a worker that died, or an answer whose wake-up was lost (a reply cut by a
# reconnect), costs at most this long after the answers stop; with many boxes waiting, less
# often, so that this reading costs at most LOOK_RATE boxes a second. While answers come, no
# look: the wake-ups work, and a dead box cannot end preflight before the others have answered
# (a look every GONE_AFTER while they came read each of 5,000 boxes 3.5 times: 7 of the
# coordinator's 10.6 commands a box). A dead box costs GONE_AFTER after the answers stop.
LOOK_EVERY = 0.5
LOOK_RATE = 1000.0
# The lease is renewed this often while preflight sends and waits, whatever the look's pace.
RENEW_EVERY = 1.0


def ask_preflight(
    app: Celery,
    client: RedisClient,
    keys: Keys,
    timeout: float,
    rollout_id: str,
    box_type: str,
    release: Release,
    boxes: list[str],
    renew: Callable[[], object] = lambda: None,
) -> None:
    """Send every box its preflight, then wait for all answers (PreflightFailed if any is no).
    `renew` keeps the lease while the boxes answer (5,000 boxes took longer than its TTL)."""
    keep = Renewer(renew)
    with batched(app) as producer:
        for box in boxes:
            keep()  # 5,000 sends take seconds on a busy machine
            req = StepRequest(
                rollout_id=rollout_id,
                box_id=box,
                box_type=box_type,
                release_id=release.id,
                release_hash=release.hash,
                token="",
            )
            payload = req.model_dump(mode="json")
            app.send_task(TaskName.PREFLIGHT.value, args=(payload,), queue=queue_for(box),
                          argsrepr=brief(payload), producer=producer, **NO_DECLARE)
    try:
        answers = Answers(client, keys, rollout_id, box_type, boxes).wait(timeout, keep)
    finally:
        client.delete(keys.rollout_part(rollout_id, "answers"))
    problems = [f"{b}: {answers[b]}" for b in boxes if answers.get(b)]
    problems += [f"{b}: no answer in {timeout:.0f}s" for b in boxes if b not in answers]
    if problems:
        raise PreflightFailed(
            f"preflight failed on {len(problems)} of {len(boxes)} boxes; nothing was "
            "changed:\n  " + "\n  ".join(problems)
        )


def next_look(looked: float, heard: float, every: float) -> float:
    """When the unanswered boxes are read next, after a look at `looked` and the last answer
    at `heard`: once LOOK_EVERY has passed without an answer, and `every` after the last
    look. Pure."""
    return max(looked + every, heard + LOOK_EVERY)


class Renewer:
    """`renew` (the lease) called at most once every RENEW_EVERY seconds, however often this
    is called: one clock for preflight's sends and its wait."""

    def __init__(self, renew: Callable[[], object]) -> None:
        self.renew, self.at = renew, time.monotonic()

    def __call__(self) -> None:
        if time.monotonic() - self.at >= RENEW_EVERY:
            self.renew()
            self.at = time.monotonic()


class Answers:
    """Each box's preflight answer ("" when ok, else why), as the boxes journal them. A box
    pushes its id to `rollout:<id>:answers` after journaling: one BLPOP wakes this at once."""

    def __init__(
        self, client: RedisClient, keys: Keys, rollout_id: str, box_type: str, boxes: list[str]
    ) -> None:
        self.client, self.keys = client, keys
        self.rollout_id, self.box_type, self.boxes = rollout_id, box_type, boxes
        self.asked = set(boxes)  # `in` a list of 5,000 for each answer: O(N^2) CPU
        self.journal = Journal(client, keys)
        self.got: dict[str, str] = {}
        self.absent: dict[str, float] = {}  # box -> since when its heartbeat is gone, seen here

    def wait(self, timeout: float, renew: Callable[[], object] = lambda: None) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        key = self.keys.rollout_part(self.rollout_id, "answers")
        looked = heard = time.monotonic()
        every = LOOK_EVERY
        keep = renew if isinstance(renew, Renewer) else Renewer(renew)
        while len(self.got) < len(self.boxes) and (left := deadline - time.monotonic()) > 0:
            keep()
            due = next_look(looked, heard, every) - time.monotonic()
            block = min(left, max(due, 0.01), RENEW_EVERY)
            popped = self.client.blpop([key], timeout=block)
            if popped is not None:
                # Every other answer already there, in the same round trip's wake.
                rest = self.client.lpop(key, len(self.boxes)) or []
                self.read([_text(popped[1]), *(_text(b) for b in rest)])
                heard = time.monotonic()
            if time.monotonic() >= next_look(looked, heard, every):
                looked = time.monotonic()
                self.read(self.waiting())  # an answer whose wake-up was lost
                self.got.update(self.gone(self.waiting()))
                every = max(LOOK_EVERY, len(self.waiting()) / LOOK_RATE)
        if waiting := self.waiting():  # the deadline: the lost wake-ups, and who is dead
            self.read(waiting)
            self.got.update(self.gone(self.waiting(), grace=0.0))
        return self.got

    def waiting(self) -> list[str]:
        return [b for b in self.boxes if b not in self.got]

    def read(self, boxes: list[str]) -> None:
        """The journal's answer of each box (one pipelined round trip)."""
        boxes = [b for b in dict.fromkeys(boxes) if b in self.asked and b not in self.got]
        if not boxes:
            return
        pipe = self.client.pipeline(transaction=False)
        for box in boxes:
            self.journal.queue_get(pipe, self.rollout_id, box, TaskName.PREFLIGHT.value, None)
        for box, raw in zip(boxes, pipe.execute(), strict=True):
            got = Journal.parse(raw)
            if got is not None:
                self.got[box] = "" if got.outcome == Outcome.OK else got.reason

    def gone(self, boxes: list[str], grace: float = GONE_AFTER) -> dict[str, str]:
        """Boxes whose heartbeat expired since the fleet was read and stayed away `grace`
        seconds (a worker merely slow to beat is not dead), each with why."""
        if not boxes:
            return {}
        pipe = self.client.pipeline()
        for box in boxes:
            pipe.exists(self.keys.heartbeat(box))
        now = time.monotonic()
        for box, live in zip(boxes, pipe.execute(), strict=True):
            if live:
                self.absent.pop(box, None)
            else:
                self.absent.setdefault(box, now)
        dead = [b for b in boxes if b in self.absent and now - self.absent[b] >= grace]
        seen = Members(self.client, self.keys).of(self.box_type) if dead else {}
        return {b: f"no live worker: {last_seen(seen.get(b, 0.0))}" for b in dead}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
