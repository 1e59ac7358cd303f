"""The plan diff: image and spec changes per box and app, env values never shown."""

from __future__ import annotations

import pytest

from orchestrator.engine.releases import make_release
from orchestrator.plandiff import diff, render, spec_changes
from schemas.boxfile import BoxSpec
from schemas.contract import AppRunning, Heartbeat, Member
from schemas.rollout import Plan

pytestmark = pytest.mark.unit

IMG1 = "reg/web@sha256:" + "1" * 64
IMG2 = "reg/web@sha256:" + "2" * 64


def spec(env: dict[str, str], port: int = 8080) -> BoxSpec:
    return BoxSpec.model_validate({"apps": {"web": {"image": "reg/web", "elb": "web",
                                                    "containers": {"web": {
                                                        "ports": [f"{port}:80"], "env": env}}}}})


def release(env: dict[str, str], image: str, port: int = 8080):  # type: ignore[no-untyped-def]
    return make_release("web", spec(env, port), {"web": image}, None, now=1.0, created_by="t")


def beat(box: str, rel) -> Heartbeat:  # type: ignore[no-untyped-def]
    return Heartbeat(box_id=box, box_type="web", hostname=box, worker_version="t",
                     docker_version="t", at=1.0,
                     apps={"web": AppRunning(image=rel.images["web"],
                                             spec_hash=rel.spec_hash("web"), release=rel.id)},
                     members={"web": Member(kind="haproxy", name="web", member=box)})


def test_env_changes_name_keys_never_values() -> None:
    old = release({"A": "secret-1", "B": "x"}, IMG1)
    new = release({"A": "secret-2", "C": "y"}, IMG1, port=8081)
    changes = spec_changes(old, new, "web")
    assert "web: env added C" in changes and "web: env removed B" in changes
    assert "web: env changed A" in changes
    assert any(c.startswith("web: ports ") for c in changes)
    assert not any("secret-" in c for c in changes)


def test_diff_per_box_with_waves_and_nothing_to_do() -> None:
    v1, v2 = release({"A": "1"}, IMG1), release({"A": "1"}, IMG2)
    beats = {"b1": beat("b1", v1), "b2": beat("b2", v2), "b3": beat("b3", v1)}
    plan = Plan(boxes=["b1", "b2", "b3"], canary=1, batch=2, max_failed=0, on_failure="halt")
    d = diff(v2, plan, beats, {v1.id: v1}, {"b4": "no live worker"})
    assert [(b.box, b.wave) for b in d.boxes] == [("b1", 0), ("b2", 1), ("b3", 1)]
    b1, b2, _ = d.boxes
    assert [(a.image_from, a.image_to) for a in b1.apps] == [(IMG1, IMG2)]
    assert b1.leaves == ["haproxy web"] and not b2.apps and not b2.leaves
    assert d.changes and d.as_json()["skipped"] == {"b4": "no live worker"}
    text = render(d)
    assert "b2: nothing to do" in text and "skipped b4: no live worker" in text
    assert not diff(v2, plan, {k: beat(k, v2) for k in beats}, {}, {}).changes
