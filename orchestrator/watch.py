"""Attach to a rollout: render its events, renew its lease while boxes are in flight."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TextIO

import redis

from orchestrator.engine.events import stream_ms
from orchestrator.engine.rollouts import Rollouts
from orchestrator.errors import Detached, NotReplicated, ServiceUnavailable
from schemas.redaction import redact
from schemas.rollout import Rollout


def plain_line(sid: str, e: dict[str, str]) -> str:
    at = datetime.fromtimestamp(stream_ms(sid) / 1000).strftime("%H:%M:%S.%f")[:-3]
    where = e.get("box") or "-"
    what = e.get("step", "")
    if e.get("app"):
        what += f"[{e['app']}]"
    if e.get("phase") == "start":
        return f"{at} {where:<24} {what:<28} started"
    took = f" {float(e['duration']):.2f}s" if e.get("duration") else ""
    reason = f"  {e['reason']}" if e.get("reason") else ""
    return f"{at} {where:<24} {what:<28} {e.get('outcome', ''):<10}{took}{reason}"


class LiveBoard:
    """On a terminal: one line per box, its current step, and how long it has run."""

    def __init__(self, err: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        self.rows: dict[str, tuple[str, str, float, float | None]] = {}
        self.drawn = 0.0
        self.live = Live(console=Console(file=err), refresh_per_second=8, transient=False)
        self.live.start()

    def tick(self) -> None:
        """Elapsed times move at least every second, events or not."""
        if time.monotonic() - self.drawn >= 1.0:
            self.render()

    def update(self, sid: str, e: dict[str, str]) -> None:
        box = e.get("box") or ""
        if not box:
            return
        step = e.get("step", "") + (f"[{e['app']}]" if e.get("app") else "")
        state = "running" if e.get("phase") == "start" else e.get("outcome", "")
        at = stream_ms(sid) / 1000
        since = self.rows.get(box, ("", "", at, None))[2]
        # A finished box's clock stops at its finish.
        ended = at if e.get("step") == "deploy.finish" and e.get("phase") == "end" else None
        self.rows[box] = (step, state, since, ended)
        self.render()

    def render(self) -> None:
        from rich.table import Table

        table = Table(box=None, show_header=True, header_style="bold")
        for col in ("box", "step", "state", "elapsed"):
            table.add_column(col)
        for box, (step, state, since, ended) in sorted(self.rows.items()):
            style = {"failed": "red", "refused": "red", "ok": "green", "noop": "green"}.get(
                state, ""
            )
            table.add_row(
                box,
                step,
                f"[{style}]{state}[/]" if style else state,
                f"{(ended or time.time()) - since:5.1f}s",
            )
        self.live.update(table)
        self.drawn = time.monotonic()

    def stop(self) -> None:
        self.render()
        self.live.stop()


def watch(
    engine: Rollouts,
    rollout: Rollout,
    *,
    json_out: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
    interval: float = 0.2,
    on_tick: Callable[[], None] | None = None,
) -> str:
    """Follow the rollout to its final state and return it (the rollout never needs this)."""
    # The streams of the moment, not of the import: the CLI guards stdout while it runs.
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    started = time.time()
    board = LiveBoard(err) if not json_out and err.isatty() else None
    ticks = [f for f in (on_tick, board.tick if board else None) if f is not None]

    def tick() -> None:
        for f in ticks:
            f()

    def show(sid: str, e: dict[str, str]) -> None:
        if json_out:
            out.write(json.dumps({"id": sid, **e}) + "\n")
            out.flush()
        elif board is not None:
            board.update(sid, e)
        else:
            err.write(plain_line(sid, e) + "\n")
            err.flush()

    try:
        with terminate_as_interrupt():
            st = follow(engine, rollout, show, err, interval, tick)
    except KeyboardInterrupt:
        if board is not None:
            board.stop()
            board = None
        raise Detached(
            f"rollout {rollout.id} goes on without this terminal. Follow it: "
            f"`orchestrator watch {rollout.id}`; stop it: `orchestrator abort {rollout.id}`"
        ) from None
    finally:
        if board is not None:  # the terminal gets its cursor back, however this ends
            board.stop()
    summary = {
        "rollout": rollout.id,
        "box_type": rollout.box_type,
        "release": rollout.release_id,
        "state": st.get("state"),
        "boxes": int(st.get("n_total", 0)),
        "ok": int(st.get("n_ok", 0)),
        "failed": int(st.get("n_failed", 0)),
        "cancelled": int(st.get("n_cancelled", 0)),
        "reason": st.get("halt_reason", ""),
        "seconds": round(float(st.get("ended", time.time())) - rollout.created_at, 1),
        "watched_seconds": round(time.time() - started, 1),
    }
    out.write(summary_text(rollout, summary, json_out) + "\n")
    return str(summary["state"])


class terminate_as_interrupt:  # noqa: N801 (a context manager read as a phrase)
    """SIGTERM is handled as Ctrl-C while a rollout is followed: the board is put away and the
    message says the rollout goes on (only in the main thread, where signals arrive)."""

    def __enter__(self) -> None:
        self.old = None
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGTERM, _interrupt)

    def __exit__(self, *_: object) -> None:
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def follow(
    engine: Rollouts,
    rollout: Rollout,
    show: Callable[[str, dict[str, str]], None],
    err: TextIO,
    interval: float,
    on_tick: Callable[[], None] | None,
) -> dict[str, str]:
    """Show the rollout's events until it ends; its record at the end. Losing Redis only
    pauses this watcher: the rollout goes on without it, and it re-attaches by itself.
    Between ticks (`tick_every`: the record, the lease, dead boxes, the board) it blocks
    on the stream (XREAD BLOCK): an event is shown when written, and the rollout's own end
    event ends the watch at once."""
    feed = Feed(engine, rollout, show)
    lost = ""  # why this watcher pauses ('lost', 'unreplicated'; '' while it follows)
    next_tick = 0.0
    every = tick_every(engine, interval)
    while True:
        try:
            wait = next_tick - time.monotonic()
            if not feed.drain(max(wait, 0.0)) and wait > 0:
                continue
            st = engine.status(rollout.id)
            if wait <= 0 and st and "ended" not in st and (boxes := engine.inflight(rollout.id)):
                # Watchers renew only while something is in flight (protocol rule 6).
                engine.lease.renew(rollout.box_type, rollout.id, engine.lease_ttl)
                engine.reap_dead(rollout.box_type, rollout.id, boxes)
        except (redis.RedisError, ServiceUnavailable) as exc:
            # ServiceUnavailable: a write no replica acknowledged (a failover under way), e.g.
            # revoking a box counted dead; the rollout goes on, the next tick tries again.
            kind = "unreplicated" if isinstance(exc, NotReplicated) else "lost"
            if kind != lost:  # said once, and again only when the cause changes
                err.write(paused_line(rollout.id, exc))
            lost = kind
            time.sleep(max(interval, 1.0))
            next_tick = 0.0
            continue
        if lost:
            err.write("Redis answers again: re-attached\n")
            lost = ""
        if not st:
            return {"state": "lost", "halt_reason": LOST}
        if "ended" in st:
            feed.pause = 0.0  # the last finishes are read as they come: nothing to gather
            feed.drain(0)
            # The last box's finish ends the rollout before it logs its own end: show it.
            deadline = time.monotonic() + 2.0
            counted = {b for b, outcome in engine.done(rollout.id).items() if outcome != "dead"}
            while counted - feed.finished and (left := deadline - time.monotonic()) > 0:
                feed.drain(min(left, interval))
            return st
        if wait <= 0:
            next_tick = time.monotonic() + every
            if on_tick:
                on_tick()


def paused_line(rollout_id: str, exc: Exception) -> str:
    """What a watcher that cannot read or write Redis says (once per kind of cause)."""
    if isinstance(exc, NotReplicated):
        # Redis answers, but no replica takes writes: the master a failover promoted has
        # none until another replica (often the old master, restarted) syncs with it.
        return (f"no Redis replica acknowledges writes ({redact(str(exc))}): rollout "
                f"{rollout_id} goes on without this watcher, which re-attaches once a "
                "replica syncs with the master (after a failover: restart the old master)\n")
    return (f"lost Redis ({redact(str(exc))}): rollout {rollout_id} goes on without this "
            "watcher, which re-attaches when Redis answers again\n")


def tick_every(engine: Rollouts, interval: float) -> float:
    """Seconds between ticks: a tenth of the shorter TTL (a lease renewed, a dead box seen, in
    time), at most a second (the board's clock); never below `interval`. Events are shown as
    they come whatever this is: a tick's cost is per second, so it is kept to few a second
    (at a fixed 0.2 s, a 5,000-box rollout spent more on ticks than on its boxes' events)."""
    return max(interval, min(engine.lease_ttl / 10, engine.slot_ttl / 10, 1.0))


# A blocking read returns at its first event: on a busy stream, a read for every event or two.
# So the next read waits to gather about GATHER_EVENTS events at the pace the last one saw
# (within GATHER_MIN..GATHER_MAX s): a box's events are a fixed number, so the reads, and their
# cost, stay proportional to the boxes however fast they go; none for the last box
# (`still_gathers`), so the end is shown at once.
GATHER_EVENTS = 16
GATHER_MIN, GATHER_MAX = 0.02, 0.25


# Boxes left to finish for which reads still gather: the last box's events (about 18) fit in
# about one gather anyway, so reading them as they come costs a few reads a rollout, and a
# pause can no longer hold back the rollout's end (it held it 0.15-0.25 s: a tenth of a
# three-box start-first rollout, measured).
LAST_FEW = 1


def still_gathers(planned: int, finishing: int) -> bool:
    """Whether the next read still waits to gather events. Pure."""
    return planned - finishing > LAST_FEW


def gather_pause(events: int, seconds: float) -> float:
    """How long the next read waits, after `events` came in `seconds`. Pure."""
    if events <= 0:
        return GATHER_MIN
    return min(max(GATHER_EVENTS * seconds / events, GATHER_MIN), GATHER_MAX)


class Feed:
    """The rollout's events from the type's stream, from its own first event on."""

    def __init__(
        self, engine: Rollouts, rollout: Rollout, show: Callable[[str, dict[str, str]], None]
    ) -> None:
        self.engine, self.rollout, self.show = engine, rollout, show
        # Start at the rollout's own first event: the stream holds every rollout of the type.
        self.after = f"{int(rollout.created_at * 1000) - 1}-0"
        self.finished: set[str] = set()
        self.finishing: set[str] = set()
        self.read_at = time.monotonic()
        self.pause = GATHER_MIN

    def drain(self, block: float) -> bool:
        """Show the events written since the last call (waiting up to `block` seconds for the
        first); whether the rollout's end was among them."""
        box_type, ended = self.rollout.box_type, False
        if block > 0:
            pause = max(0.0, min(self.read_at + self.pause - time.monotonic(), block))
            time.sleep(pause)
            rows = self.engine.events.wait(box_type, self.after, block - pause)
            if rows:
                now = time.monotonic()
                self.pause = gather_pause(len(rows), now - self.read_at)
                self.read_at = now
        else:
            rows = self.engine.events.read(box_type, after=self.after)
        for sid, e in rows:
            self.after = sid
            if e.get("rollout") != self.rollout.id:
                continue
            self.show(sid, e)
            if e.get("step") == "deploy.finish":
                done = self.finished if e.get("phase") == "end" else self.finishing
                done.add(e.get("box", ""))
            ended = ended or (e.get("step") == "rollout" and e.get("phase") == "end")
        if not still_gathers(len(self.rollout.plan.boxes), len(self.finishing)):
            self.pause = 0.0  # the rollout's end is shown, and the CLI exits, when it comes
        return ended


LOST = (
    "its record is gone (Redis lost its data): each box finishes what it started by itself; "
    "see `orchestrator status` for what runs where"
)


def summary_text(rollout: Rollout, summary: Mapping[str, object], json_out: bool) -> str:
    if json_out:
        return json.dumps({"summary": summary})
    verb = "Finished" if summary["state"] == "succeeded" else f"Rollout {summary['state']}:"
    line = (
        f"{verb} {rollout.box_type} release {rollout.release_id} on "
        f"{summary['boxes']} boxes in {summary['seconds']} s "
        f"({summary['ok']} ok, {summary['failed']} failed, "
        f"{summary['cancelled']} not started)"
    )
    if summary["reason"]:
        line += f"; {summary['reason']}"
    return line
