"""`orchestrator plan` is a diff of what runs against what a rollout would run; it changes
nothing, and its exit code says whether there is anything to do."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.harness.redis_fx import ProductRedis
from tests.harness.rollout_fx import Fleet


def written(product: ProductRedis) -> set[str]:
    """What a rollout's start writes (releases, lease, rollouts, tokens); not what the boxes
    write by themselves meanwhile (heartbeats, their services and load balancer records)."""
    kinds = ("release:", "lease:", "rollout:", "boxtype:", "fencing:", "boxowner:", "journal:")
    return {k for k in product.client.scan_iter(match=f"{product.prefix}*")
            if k.removeprefix(product.prefix).startswith(kinds)}


def test_plan_shows_the_digest_change_then_nothing_to_do(
    fleet_factory: Callable[..., Fleet], product_redis: ProductRedis,
) -> None:
    fleet = fleet_factory(2)
    fleet.write(f"{fleet.images.repo}:v1")
    assert fleet.cli("rollout", fleet.box_type).returncode == 0
    fleet.wait_all_in_service()
    v2 = f"web={fleet.images.repo}:v2"
    keys_before = written(product_redis)

    planned = fleet.cli("plan", fleet.box_type, "--image", v2, "--json")
    assert planned.returncode == 5, planned.stdout + planned.stderr  # changes present
    doc = json.loads(planned.stdout)
    assert doc["changes"] is True and len(doc["boxes"]) == 2
    for box in doc["boxes"]:
        (web,) = box["apps"]
        assert web["app"] == "web" and web["image_from"] != web["image_to"]
        assert web["image_to"].split("@")[1].startswith("sha256:")
        assert box["leaves"] == ["haproxy web"]
    assert [b["wave"] for b in doc["boxes"]] == [0, 1]
    # It changed nothing: no key written (no release stored, no lease, no rollout).
    assert written(product_redis) == keys_before
    text = fleet.cli("plan", fleet.box_type, "--image", v2)
    assert text.returncode == 5 and "changes present" in text.stdout, text.stdout
    assert doc["boxes"][0]["apps"][0]["image_to"] in text.stdout

    assert fleet.cli("rollout", fleet.box_type, "--image", v2).returncode == 0
    after = fleet.cli("plan", fleet.box_type, "--image", v2, "--json")
    assert after.returncode == 0, after.stdout + after.stderr
    assert json.loads(after.stdout)["changes"] is False
    assert "nothing to do" in fleet.cli("plan", fleet.box_type, "--image", v2).stdout


def test_plan_of_an_unknown_box_type_is_bad_input(fleet_factory: Callable[..., Fleet]) -> None:
    fleet = fleet_factory(1)
    run = fleet.cli("plan", "nosuchtype")
    assert run.returncode == 2 and "no box type 'nosuchtype'" in run.stderr, run.stderr
