"""`plan` as a diff: per box and app, what runs now against what a rollout would run. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from orchestrator.engine.changes import box_changes
from schemas.contract import Heartbeat
from schemas.release import Release
from schemas.rollout import Plan

# Exit code of `plan` when a rollout would change something (README "Exit codes").
CHANGES_PRESENT = 5


@dataclass
class AppChange:
    app: str
    image_from: str | None  # None: the app does not run on the box yet
    image_to: str
    spec: list[str] = field(default_factory=list)  # what else differs, never an env value


@dataclass
class BoxPlan:
    box: str
    wave: int  # 0 is the canary wave
    apps: list[AppChange] = field(default_factory=list)
    leaves: list[str] = field(default_factory=list)  # load balancers the box would leave


@dataclass
class PlanDiff:
    box_type: str
    release: str
    canary: int
    batch: int
    boxes: list[BoxPlan] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # box -> why it is not planned

    @property
    def changes(self) -> bool:
        return any(b.apps for b in self.boxes)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "changes": self.changes}


def _container_fields(spec: Any) -> dict[str, dict[str, Any]]:
    return {name: c.model_dump(mode="json") for name, c in spec.containers.items()}


def _env_change(name: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Env keys added, removed and changed: names only, values are never shown."""
    out = []
    if added := sorted(set(new) - set(old)):
        out.append(f"{name}: env added {', '.join(added)}")
    if gone := sorted(set(old) - set(new)):
        out.append(f"{name}: env removed {', '.join(gone)}")
    if changed := sorted(k for k in set(old) & set(new) if old[k] != new[k]):
        out.append(f"{name}: env changed {', '.join(changed)}")
    return out


def spec_changes(old: Release | None, new: Release, app: str) -> list[str]:
    """What differs in an app's containers between two releases, field by field."""
    if old is None or app not in old.spec.apps:
        return ["new app" if old is not None else "running release unknown"]
    before = _container_fields(old.spec.apps[app])
    after = _container_fields(new.spec.apps[app])
    out = [f"{n}: container added" for n in sorted(set(after) - set(before))]
    out += [f"{n}: container removed" for n in sorted(set(before) - set(after))]
    for name in sorted(set(before) & set(after)):
        a, b = before[name], after[name]
        for key in sorted(set(a) | set(b)):
            if key == "image" or a.get(key) == b.get(key):
                continue
            if key == "env":
                out += _env_change(name, a.get(key) or {}, b.get(key) or {})
            else:
                out.append(f"{name}: {key} {a.get(key)!r} -> {b.get(key)!r}")
    for key in ("elb", "depends"):
        x, y = getattr(old.spec.apps[app], key), getattr(new.spec.apps[app], key)
        if x != y:
            out.append(f"{key} {x!r} -> {y!r}")
    return out


def diff(release: Release, plan: Plan, beats: Mapping[str, Heartbeat],
         running: Mapping[str, Release], skipped: Mapping[str, str]) -> PlanDiff:
    """`running`: the releases the boxes report, by id (those still stored)."""
    out = PlanDiff(release.box_type, release.id, plan.canary, plan.batch, skipped=dict(skipped))
    for i, box in enumerate(plan.boxes):
        wave = 0 if i < plan.canary else 1 + (i - plan.canary) // plan.batch
        beat = beats.get(box)
        now = beat.apps if beat else {}
        swap, leave = box_changes(release, {a: r.spec_hash for a, r in now.items()})
        row = BoxPlan(box, wave)
        for app in swap:
            was = now.get(app)
            row.apps.append(AppChange(
                app, was.image if was else None, release.images[app],
                spec_changes(running.get(was.release) if was else None, release, app)
                if was else [],
            ))
        members = beat.members if beat else {}
        row.leaves = [f"{m.kind} {m.name}" for a, m in sorted(members.items()) if a in leave]
        out.boxes.append(row)
    return out


def render(d: PlanDiff) -> str:
    lines = [f"{d.box_type}: release {d.release}; {len(d.boxes)} boxes, canary {d.canary}, "
             f"then {d.batch} at a time"]
    for b in d.boxes:
        head = f"  wave {b.wave}{' (canary)' if b.wave == 0 and d.canary else ''}  {b.box}"
        if not b.apps:
            lines.append(f"{head}: nothing to do")
            continue
        leaves = f"; leaves {', '.join(b.leaves)}" if b.leaves else ""
        lines.append(f"{head}{leaves}")
        for a in b.apps:
            lines.append(f"      {a.app}: {a.image_from or '(not running)'} -> {a.image_to}")
            lines += [f"        {s}" for s in a.spec]
    lines += [f"  skipped {box}: {why}" for box, why in sorted(d.skipped.items())]
    lines.append("changes present" if d.changes else "nothing to do")
    return "\n".join(lines)
