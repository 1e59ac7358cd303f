"""Lifecycle events of rollouts, each handled once: post-rollout/on-halt hooks, notifications."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from orchestrator.engine.events import Events
from orchestrator.engine.redisconn import LuaScript, RedisClient
from schemas.contract import Keys
from schemas.fleet import FleetSettings, Notification
from schemas.redaction import redact
from schemas.rollout import Rollout

CLAIM = LuaScript.load("notify_claim")
CLAIM_TTL = 300.0  # a claim older than this: its notifier died mid-work, another takes over
BEAT_TTL = 15.0  # a notifier silent this long is not running
ATTEMPTS = (0.0, 1.0, 3.0)  # delivery tries and the pause before each


@dataclass(frozen=True)
class Lifecycle:
    rollout: str
    box_type: str
    event: str  # started, halted, succeeded, failed, rolled-back, aborted, abandoned
    reason: str


def lifecycle(e: dict[str, str], kind_of: Callable[[str], str]) -> Lifecycle | None:
    """The lifecycle event a stream entry is, if any (a rollback's success is `rolled-back`)."""
    if e.get("step") != "rollout" or not e.get("rollout"):
        return None
    rid, box_type = e["rollout"], e.get("box_type", "")
    if e.get("phase") == "start":
        return Lifecycle(rid, box_type, "started", e.get("reason", ""))
    outcome = {"rollback-pending": "halted"}.get(e.get("outcome", ""), e.get("outcome", ""))
    if outcome == "succeeded" and kind_of(rid) == "rollback":
        outcome = "rolled-back"
    if outcome in ("halted", "succeeded", "failed", "rolled-back", "aborted", "abandoned"):
        return Lifecycle(rid, box_type, outcome, e.get("reason", ""))
    return None


def text_of(ev: Lifecycle, r: Rollout | None) -> str:
    who = f" by {r.performer or r.created_by}@{r.host}" if r and r.host else ""
    why = f" ({r.reason})" if r and r.reason else ""
    release = f" release {r.release_id}" if r else ""
    tail = f": {ev.reason}" if ev.reason and ev.event != "started" else ""
    return f"{ev.box_type}: rollout {ev.rollout}{release} {ev.event}{who}{why}{tail}"


class Deliver:
    """Sends one message to one target, a few tries; returns what went wrong, or ''."""

    def __init__(self, resolve: Callable[[Notification], str], sns: Callable[[], object]):
        self.resolve, self.sns = resolve, sns

    def __call__(self, target: Notification, body: dict[str, str]) -> str:
        error = ""
        for pause in ATTEMPTS:
            time.sleep(pause)
            try:
                self._send(target, body)
                return ""
            except Exception as exc:  # any failure is retried, then reported as an event
                error = redact(f"{type(exc).__name__}: {exc}")
        return error

    def _send(self, target: Notification, body: dict[str, str]) -> None:
        if target.sns is not None:
            client = self.sns()
            client.publish(TopicArn=target.sns, Message=json.dumps(body),  # type: ignore[attr-defined]
                           Subject=body["text"][:100])
            return
        request = urllib.request.Request(
            self.resolve(target), data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 (ours, https)
            answer.read()


def beats(client: RedisClient, keys: Keys) -> Iterator[tuple[str, float]]:
    for k, v in client.hgetall(keys.notifiers()).items():
        yield (k.decode() if isinstance(k, bytes) else str(k)), float(v)


def live_notifier(client: RedisClient, keys: Keys) -> bool:
    now = time.time()
    return any(now - at < BEAT_TTL for _, at in beats(client, keys))


def new_id() -> str:
    return f"notifier-{uuid.uuid4().hex[:8]}"


READ_COUNT = 1000  # stream entries a read: a poll reads on until it has them all


class Notifier:
    """Follows every box type's event stream; each (rollout, lifecycle event) is claimed in
    `notified:<rollout>` before its hooks run and its messages go, and marked done after: two
    notifiers (or a notifier and an attached `rollout`) never both do it."""

    def __init__(self, client: RedisClient, keys: Keys, fleet: FleetSettings,
                 deliver: Deliver, hooks: Callable[[Lifecycle, Rollout | None], None],
                 ident: str | None = None, lookback: float = 86400.0) -> None:
        self.client, self.keys, self.fleet = client, keys, fleet
        self.events = Events(client, keys)
        self.deliver, self.hooks = deliver, hooks
        self.ident = ident or new_id()
        self.lookback = lookback
        self.after: dict[str, str] = {}
        self.types: list[str] = []
        self.scanned = 0.0

    def beat(self) -> None:
        self.client.hset(self.keys.notifiers(), self.ident, str(time.time()))

    def leave(self) -> None:
        self.client.hdel(self.keys.notifiers(), self.ident)

    def box_types(self) -> list[str]:
        """The streams there are: the types a lifecycle started in (one read a poll), and
        every stream's, scanned for again every 30 s (a scan walks every key; it finds the
        streams written before the set was kept)."""
        if time.monotonic() - self.scanned > 30:
            head = self.keys.events("")
            self.types = sorted(
                (k.decode() if isinstance(k, bytes) else str(k)).removeprefix(head)
                for k in self.client.scan_iter(match=f"{head}*", count=1000))
            self.scanned = time.monotonic()
        started = {(t.decode() if isinstance(t, bytes) else str(t))
                   for t in self.client.smembers(self.keys.event_types())}
        if not started <= set(self.types):
            self.types = sorted(set(self.types) | started)
        return self.types

    def poll(self) -> int:
        """Handle every lifecycle entry not seen yet, each stream read to its end."""
        handled = 0
        for box_type in self.box_types():
            start = f"{int((time.time() - self.lookback) * 1000)}-0"
            while rows := self.events.read(box_type, after=self.after.get(box_type, start),
                                           count=READ_COUNT):
                for sid, e in rows:
                    self.after[box_type] = sid
                    ev = lifecycle({**e, "box_type": box_type}, self.kind_of)
                    if ev:
                        handled += self.handle(ev)
                if len(rows) < READ_COUNT:
                    break
        return handled

    def own(self, rollouts: list[tuple[Rollout, dict[str, str]]]) -> int:
        """An attached `rollout`'s own lifecycle events, from each rollout and its record now:
        its stream holds every box's steps (85,000 entries at 5,000 boxes), not read again."""
        handled = 0
        for r, st in rollouts:
            found = [Lifecycle(r.id, r.box_type, "started", "")]
            if "ended" in st:
                end = {"step": "rollout", "phase": "end", "rollout": r.id, "box_type": r.box_type,
                       "outcome": st.get("state", ""), "reason": st.get("halt_reason", "")}
                ev = lifecycle(end, self.kind_of)
                found += [ev] if ev else []
            handled += sum(self.handle(ev) for ev in found)
        return handled

    def kind_of(self, rollout_id: str) -> str:
        r = self.rollout(rollout_id)
        return r.kind if r else "rollout"

    def rollout(self, rollout_id: str) -> Rollout | None:
        raw = self.client.get(self.keys.rollout_part(rollout_id, "spec"))
        return Rollout.model_validate_json(raw) if raw else None

    def handle(self, ev: Lifecycle) -> bool:
        key = self.keys.notified(ev.rollout)
        if not CLAIM(self.client, [key], [ev.event, self.ident, time.time(), CLAIM_TTL]):
            return False
        r = self.rollout(ev.rollout)
        self.hooks(ev, r)
        body = {"text": text_of(ev, r), "event": ev.event, "rollout": ev.rollout,
                "box_type": ev.box_type, "release": r.release_id if r else "",
                "performer": (r.performer or r.created_by) if r else "",
                "reason": r.reason if r else ""}
        for target in self.fleet.notifications:
            if ev.event not in target.events:
                continue
            error = self.deliver(target, body)
            self.events.emit(ev.box_type, rollout=ev.rollout, step="notify", phase="end",
                             outcome="failed" if error else "ok",
                             reason=error or f"{ev.event} sent to {where(target)}")
        self.client.hset(key, ev.event, "done")
        self.client.expire(key, 30 * 86400)
        return True

    def run(self, stop: Callable[[], bool], interval: float = 1.0) -> None:
        try:
            while not stop():
                self.beat()
                self.poll()
                time.sleep(interval)
        finally:
            self.leave()


def where(target: Notification) -> str:
    return f"sns {target.sns}" if target.sns else "webhook"
