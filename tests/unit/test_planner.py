"""The planner is pure: counts, canary, batch, budget, and which apps a box changes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from orchestrator.engine.changes import box_changes
from orchestrator.engine.releases import make_release
from orchestrator.errors import ConfigError
from orchestrator.planner import make_plan, resolve_count
from schemas.boxfile import BoxSpec
from schemas.rollout import Policy


@pytest.mark.parametrize(
    ("text", "total", "expected"),
    [("3", 10, 3), ("25%", 10, 3), ("10%", 5, 1), ("100%", 7, 7), ("50", 7, 7), ("1", 1, 1),
     ("0", 5, 1), ("1%", 1000, 10), (" 2 ", 4, 2)],
)
def test_resolve_count(text: str, total: int, expected: int) -> None:
    assert resolve_count(text, total, what="batch") == expected


@pytest.mark.parametrize("bad", ["", "x", "-1", "3.5", "150%", "%"])
def test_resolve_count_refuses_nonsense(bad: str) -> None:
    with pytest.raises(ConfigError, match="--batch"):
        resolve_count(bad, 10, what="batch")


def test_plan_orders_boxes_and_resolves_policy() -> None:
    plan = make_plan(["b3", "b1", "b2", "b4"], Policy(canary="1", batch="50%", max_failed="25%"))
    assert plan.boxes == ["b1", "b2", "b3", "b4"]
    assert (plan.canary, plan.batch, plan.max_failed) == (1, 2, 1)
    assert plan.canary_boxes == ["b1"]


def test_max_failed_zero_by_default() -> None:
    assert make_plan(["a", "b"], Policy()).max_failed == 0


def test_empty_fleet_plans_nothing() -> None:
    plan = make_plan([], Policy())
    assert plan.boxes == [] and plan.canary == 0


SPEC = BoxSpec.model_validate({
    "apps": {
        "mongos": {"image": "r/mongos:1", "containers": {"mongos": {}}},
        "gcweb": {"image": "r/gcweb:1", "depends": ["mongos"], "elb": "web",
                  "containers": {"gcweb": {}}},
        "cron": {"image": "r/cron:1", "containers": {"cron": {}}},
    }
})


def test_changing_mongos_takes_gcweb_out_of_its_lb_too() -> None:
    release = make_release("web", SPEC, {})
    running = {a: release.spec_hash(a) for a in SPEC.apps}
    running["mongos"] = "old"
    assert box_changes(release, running) == (["mongos"], ["gcweb"])


def test_unchanged_box_changes_nothing() -> None:
    release = make_release("web", SPEC, {})
    assert box_changes(release, {a: release.spec_hash(a) for a in SPEC.apps}) == ([], [])


def test_new_box_changes_everything_in_start_order() -> None:
    release = make_release("web", SPEC, {})
    assert box_changes(release, {}) == (["cron", "mongos", "gcweb"], ["gcweb"])


def test_planner_imports_nothing_that_does_io() -> None:
    tree = ast.parse((Path(__file__).resolve().parents[2] / "orchestrator/planner.py").read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
             for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree)
              if isinstance(n, ast.ImportFrom) and n.module}
    assert not names & {"redis", "celery", "docker", "boto3", "requests", "socket", "kombu"}
