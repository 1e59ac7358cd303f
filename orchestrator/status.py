"""`orchestrator status`: what runs where as the boxes report it, and what every load balancer
says of each box (one read per load balancer); every mismatch is a flag."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.engine.fleet import GONE_AFTER, Members, heartbeats, last_seen, missing_members
from orchestrator.engine.lb.base import MemberState
from orchestrator.engine.redisconn import RedisClient
from orchestrator.engine.releases import ReleaseStore
from orchestrator.engine.state import RolloutStates
from orchestrator.errors import OrchestratorError
from schemas.contract import Heartbeat, Keys, Member
from schemas.release import Release

# (kind, name, port) -> every member's state, as that load balancer says now.
ReadLB = Callable[[Member], list[MemberState]]


@dataclass
class FleetReport:
    box_type: str
    current: str | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    mixed: list[str] = field(default_factory=list)
    attention: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        live = [r for r in self.rows if r["state"] != "missing"]
        gone = len(self.rows) - len(live)
        lines = [
            f"{self.box_type}: {len(live)} live boxes"
            + (f", {gone} missing" if gone else "")
            + f"; current release {self.current or 'none'}"
        ]
        for row in self.rows:
            apps = (
                "; ".join(
                    f"{a} {v['release'] or '(adopted)'} {v['spec_hash'][:12]} {v['digest']}"
                    f" lb:{v['lb']}{' secret changed' if v.get('secret_changed') else ''}"
                    for a, v in sorted(row["apps"].items())
                )
                or "nothing runs"
            )
            flags = f"  !! {', '.join(row['flags'])}" if row["flags"] else ""
            waits = f"  (catch-up: {row['catch_up']})" if row.get("catch_up") else ""
            lines.append(f"  {row['box']:<24} {row['state']:<10} {apps}{flags}{waits}")
        lines += [f"note: {n}" for n in self.notes]
        if self.mixed:
            lines.append(f"mixed fleet: {', '.join(self.mixed)} run more than one release")
        if self.attention:
            lines.append(
                f"needs attention: {', '.join(self.attention)} "
                "(`orchestrator repair <box>` restores and rejoins)"
            )
        return "\n".join(lines)


class Memberships:
    """Each load balancer read once, whatever the number of boxes in it."""

    def __init__(self, read: ReadLB | None) -> None:
        self.read = read
        self.seen: dict[tuple[str, str, int | None], dict[str, MemberState] | str] = {}

    def of(self, member: Member) -> MemberState | str | None:
        """The member's state, or why it is unknown (str), or None when it is not registered."""
        key = (member.kind, member.name, member.port)
        if key not in self.seen:
            self.seen[key] = self._read(member)
        found = self.seen[key]
        return found if isinstance(found, str) else found.get(member.member)

    def _read(self, member: Member) -> dict[str, MemberState] | str:
        if self.read is None:
            return "not read"
        try:
            return {m.member: m for m in self.read(member)}
        except OrchestratorError as exc:
            return f"not read: {exc}"


def fleet_status(
    client: RedisClient, keys: Keys, box_type: str, read_lb: ReadLB | None = None
) -> FleetReport:
    states = RolloutStates(client, keys)
    report = FleetReport(box_type, states.current(box_type))
    current = ReleaseStore(client, keys).get(report.current) if report.current else None
    active = states.active(box_type)
    inflight = (
        set(b.decode() for b in client.smembers(keys.rollout_part(active, "inflight")))
        if active
        else set()
    )
    lbs = Memberships(read_lb)
    releases: dict[str, Counter[str]] = {}
    beats = heartbeats(client, keys, box_type)
    for box_id, hb in sorted(beats.items()):
        moving = bool(hb.busy) or box_id in inflight
        row = box_row(hb, current, lbs, moving, client, keys)
        for app, v in row["apps"].items():
            releases.setdefault(app, Counter())[v["release"]] += 1
        if row["flags"]:
            report.attention.append(box_id)
        report.rows.append(row)
    for box_id, at in missing_members(Members(client, keys).of(box_type), set(beats)).items():
        if time.time() - at < GONE_AFTER:  # a beat late, not a dead worker: not flagged yet
            continue
        report.rows.append(missing_row(box_id, at))
        report.attention.append(box_id)
    report.mixed = sorted(app for app, seen in releases.items() if len(seen) > 1)
    report.notes = sorted(
        {
            f"{kind} {name}: {why}"
            for (kind, name, _), why in lbs.seen.items()
            if isinstance(why, str)
        }
    )
    return report


def missing_row(box_id: str, at: float) -> dict[str, Any]:
    """A member of the type with no live heartbeat: it misses every rollout until it is back
    (it then catches up by itself) or forgotten (`orchestrator boxes forget`)."""
    return {
        "box": box_id,
        "state": "missing",
        "busy": None,
        "apps": {},
        "flags": [f"missing: no live worker, {last_seen(at)}"],
        "docker": "",
        "last_heartbeat": at,
    }


def box_row(
    hb: Heartbeat,
    current: Release | None,
    lbs: Memberships,
    moving: bool,
    client: RedisClient,
    keys: Keys,
) -> dict[str, Any]:
    """One box: its apps, where each stands in its load balancer, and what is wrong."""
    recorded = {k.decode(): v.decode() for k, v in client.hgetall(keys.lb_state(hb.box_id)).items()}
    flags = list(hb.flags)
    apps = {}
    for app, run in hb.apps.items():
        member = hb.members.get(app)
        lb, flag = lb_truth(member, lbs, recorded.get(app, "-"))
        apps[app] = {
            "release": run.release,
            "spec_hash": run.spec_hash,
            "digest": run.image.rsplit("@", 1)[-1][:19] if "@" in run.image else run.image,
            "lb": lb,
            # The box compared (names only): a rollout swaps this app with the new values.
            "secret_changed": app in hb.secret_changed,
        }
        if not moving:
            flags += [f"{app} {flag}"] if flag else []
            if current and app in current.spec.apps and run.spec_hash != current.spec_hash(app):
                flags.append(f"{app} runs release {run.release}, not current {current.id}")
    if not moving:
        flags += [f"{app}: {why}" for app, why in sorted(hb.problems.items())]
        for app, member in sorted(hb.members.items()):
            if app not in hb.apps and isinstance(lbs.of(member), MemberState):
                flags.append(f"{app} is in {member.kind} {member.name} with nothing running")
    if hb.state == "error":
        flags.append("docker unavailable")
    return {
        "box": hb.box_id,
        "state": hb.state,
        "busy": hb.busy,
        "apps": apps,
        "flags": flags,
        "docker": hb.docker_version,
        "catch_up": hb.catch_up,
    }


def lb_truth(member: Member | None, lbs: Memberships, recorded: str) -> tuple[str, str]:
    """(what to show, the flag or ''): the load balancer's word over the box's record."""
    if member is None:
        return "-", ""
    state = lbs.of(member)
    where = f"{member.kind} {member.name}"
    if isinstance(state, str):  # unread: the steps' record is all there is
        return recorded, f"out of its load balancer ({where})" if recorded == "out" else ""
    if state is None:
        return "missing", f"not registered in {where}"
    if member.port is not None and state.port is not None and state.port != member.port:
        # First: on the wrong port is why it is out (a reload put back the configured port).
        shown = "in" if state.in_service else f"out ({state.raw})"
        return (
            f"{shown} (port {state.port})",
            f"member on port {state.port} in {where}, not {member.port}",
        )
    if not state.in_service:
        return f"out ({state.raw})", f"out of its load balancer ({where}: {state.raw})"
    return "in", ""
