"""Lifecycle events of rollouts, each handled once: post-rollout/on-halt hooks, notifications."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from orchestrator.engine.events import Events
from orchestrator.engine.redisconn import LuaScript, RedisClient, redact
from schemas.contract import Keys
from schemas.fleet import FleetSettings, Notification
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
