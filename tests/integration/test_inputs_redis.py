"""Input against real Redis and real workers: a refused rollout changes nothing (no release,
lease free, no task sent); a failed start gives everything back whatever the exception;
garbage heartbeats are skipped by status, plan and rollout with a warning naming the box."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from devstack.workers import cli_env
from orchestrator.coordinator import Coordinator
from orchestrator.engine.releases import make_release
from orchestrator.settings import CoordinatorSettings
from schemas.boxfile import BoxSpec
from schemas.contract import CONTRACT_VERSION, Keys
from schemas.rollout import Policy
from tests.harness.common import wait_for
from tests.harness.redis_fx import ProductRedis
from tests.harness.rollout_fx import Fleet

pytestmark = pytest.mark.integration

# Keys a live worker rewrites on its own (its heartbeat, its membership, its slot, its reaper
# turn): not changes we made. Its first beat may land while the test runs.
LIVE = ("box:", "members:", "slot:", "reaper:")


def product_keys(redis: ProductRedis) -> set[str]:
    return {
        k for k in redis.client.scan_iter(match=f"{redis.prefix}*", count=500)
        if not k.removeprefix(redis.prefix).startswith(LIVE)
    }


def test_a_refused_rollout_changes_nothing(
    fleet_factory: Callable[..., Fleet], product_redis: ProductRedis
) -> None:
    fleet = fleet_factory(1)
    fleet.write(f"{fleet.images.repo}:v1")
    (fleet.boxes_dir / "broken.yml").write_text(
        "apps:\n  web:\n    image: web:1\n    containers:\n      web.prev: {}\n"
    )
    t = fleet.box_type
    refused = [
        (["rollout", t, "--batch", "-1"], "--batch"),
        (["rollout", t, "--batch", "0"], "--batch"),
        (["rollout", t, "--canary", "x"], "--canary"),
        (["rollout", "/tmp/x/evil"], "must be a name"),
        (["rollout", f"../{fleet.boxes_dir.name}/{t}"], "must be a name"),
        (["rollout", t, "--image", "web=Bad Image"], "image reference"),
        (["rollout", t, "--image", "nope=reg/app:1"], "unknown app"),
        (["rollout", "broken"], ".prev"),
        (["rollout", "missing"], "no box type"),
    ]
    before = product_keys(product_redis)
    assert not any(":release:" in k or ":lease:" in k for k in before)
    for argv, token in refused:
        run = fleet.cli(*argv)
        assert run.returncode == 2, (argv, run.stderr)
        assert token in run.stderr and "Traceback" not in run.stderr, (argv, run.stderr)
        # No release stored, the lease free, no rollout recorded, no task sent (a task would
        # have left a journal entry or an event).
        assert product_keys(product_redis) == before, argv
    bad_env = dict(fleet.env, ORCHESTRATOR_FLEET_SOURCE="bogus")
    run = subprocess.run([sys.executable, "-m", "orchestrator.cli", "rollout", t],
                         env=bad_env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "ORCHESTRATOR_FLEET_SOURCE" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    assert product_keys(product_redis) == before
    # The same rig deploys when nothing is wrong: the checks above could have failed.
    ok = fleet.cli("rollout", t)
    assert ok.returncode == 0, ok.stderr
    assert product_keys(product_redis) != before


@pytest.mark.parametrize("fault", [RuntimeError("a bug"), KeyboardInterrupt()])
def test_any_exception_between_lease_and_start_gives_everything_back(
    product_redis: ProductRedis, broker_url: str, tmp_path: Path, fault: BaseException,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = cli_env(tmp_path, broker_url, product_redis.url, product_redis.prefix)
    for key, value in env.items():
        if key.startswith("ORCHESTRATOR_"):
            monkeypatch.setenv(key, value)
    c = Coordinator.connect(CoordinatorSettings())
    try:
        spec = BoxSpec.model_validate(
            {"apps": {"web": {"image": "web:1", "containers": {"web": {}}}}}
        )
        release = make_release("faulty", spec, {"web": "web@sha256:" + "a" * 64}, None)
        c.rollouts.releases.put(release)

        def explode(*args: object) -> None:
            raise fault

        # The fault is raised where preflight would ask the boxes: after the lease was
        # taken and the rollout recorded, before any box started.
        monkeypatch.setattr(c, "preflight", explode)
        with pytest.raises(type(fault)):
            c.start("faulty", release, Policy(), boxes=["ghost-box"])
        keys = Keys(product_redis.prefix)
        assert product_redis.client.get(keys.lease("faulty")) is None
        ids = [
            k.removeprefix(keys.rollout(""))
            for k in product_redis.client.scan_iter(match=keys.rollout("*"), count=500)
            if ":" not in k.removeprefix(keys.rollout(""))  # its parts: the signed order, ...
        ]
        assert len(ids) == 1, ids
        assert c.rollouts.status(ids[0])["state"] == "failed"
        assert type(fault).__name__ in c.rollouts.status(ids[0]).get("halt_reason", "")
    finally:
        c.close()


def test_garbage_heartbeats_are_skipped_by_status_plan_and_rollout(
    fleet_factory: Callable[..., Fleet], product_redis: ProductRedis
) -> None:
    fleet = fleet_factory(1)
    fleet.write(f"{fleet.images.repo}:v1")
    keys = Keys(product_redis.prefix)
    garbage = {
        "not-json": "{{{ nope",
        "a-list": "[1, 2]",
        "older": json.dumps({"contract_version": CONTRACT_VERSION - 1, "box_type": fleet.box_type}),
        "newer": json.dumps({"contract_version": CONTRACT_VERSION + 1, "box_type": fleet.box_type,
                             "shape": "from the future"}),
        "wrong-fields": json.dumps({"contract_version": CONTRACT_VERSION, "box_id": 7}),
    }
    for box, raw in garbage.items():
        product_redis.client.set(keys.heartbeat(box), raw, ex=600)
    box_id = fleet.workers[0].box_id
    wait_for(lambda: product_redis.client.exists(keys.heartbeat(box_id)), "the box's heartbeat")
    for argv in (["plan", fleet.box_type], ["rollout", fleet.box_type],
                 ["status", fleet.box_type]):
        run = fleet.cli(*argv)
        # `plan` before the first rollout: 5, changes present (README "Exit codes").
        assert run.returncode == (5 if argv[0] == "plan" else 0), (argv, run.stdout, run.stderr)
        assert "Traceback" not in run.stderr
        for box in garbage:
            assert f"heartbeat of box {box} skipped" in run.stderr, (argv, box, run.stderr)
        assert box_id in run.stdout + run.stderr, (argv, run.stdout)
