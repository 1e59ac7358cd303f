"""`orchestrator status`: what runs where, built from what the boxes report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from orchestrator.engine.fleet import heartbeats
from orchestrator.engine.redisconn import RedisClient
from orchestrator.engine.state import RolloutStates
from schemas.contract import Keys


@dataclass
class FleetReport:
    box_type: str
    current: str | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    mixed: list[str] = field(default_factory=list)
    attention: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [
            f"{self.box_type}: {len(self.rows)} live boxes; current release "
            f"{self.current or 'none'}"
        ]
        for row in self.rows:
            apps = (
                "; ".join(
                    f"{a} {v['release'] or '(adopted)'} {v['spec_hash'][:12]} {v['digest']}"
                    f" lb:{v['lb']}"
                    for a, v in sorted(row["apps"].items())
                )
                or "nothing runs"
            )
            flags = f"  !! {', '.join(row['flags'])}" if row["flags"] else ""
            lines.append(f"  {row['box']:<24} {row['state']:<10} {apps}{flags}")
        if self.mixed:
            lines.append(f"mixed fleet: {', '.join(self.mixed)} run more than one release")
        if self.attention:
            lines.append(
                f"needs attention: {', '.join(self.attention)} "
                "(`orchestrator repair <box>` restores and rejoins)"
            )
        return "\n".join(lines)


def fleet_status(client: RedisClient, keys: Keys, box_type: str) -> FleetReport:
    report = FleetReport(box_type, RolloutStates(client, keys).current(box_type))
    releases: dict[str, Counter[str]] = {}
    for box_id, hb in sorted(heartbeats(client, keys, box_type).items()):
        lb = {k.decode(): v.decode() for k, v in client.hgetall(keys.lb_state(box_id)).items()}
        flags = list(hb.flags)
        apps = {}
        for app, run in hb.apps.items():
            releases.setdefault(app, Counter())[run.release] += 1
            apps[app] = {
                "release": run.release,
                "spec_hash": run.spec_hash,
                "digest": run.image.rsplit("@", 1)[-1][:19] if "@" in run.image else run.image,
                "lb": lb.get(app, "-"),
            }
            if lb.get(app) == "out" and not hb.busy:
                flags.append(f"{app} out of its load balancer")
        if hb.state == "error":
            flags.append("docker unavailable")
        if flags:
            report.attention.append(box_id)
        report.rows.append(
            {
                "box": box_id,
                "state": hb.state,
                "busy": hb.busy,
                "apps": apps,
                "flags": flags,
                "docker": hb.docker_version,
            }
        )
    report.mixed = sorted(app for app, seen in releases.items() if len(seen) > 1)
    return report
