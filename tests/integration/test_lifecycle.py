"""Audit, deploy freezes and the pre-rollout hook, on real workers, Redis and HAProxy."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.harness.common import wait_for
from tests.harness.redis_fx import ProductRedis
from tests.harness.rollout_fx import Fleet

# Eight seconds, on boxes whose steps may take 30 s: a rollout of four boxes holds its lease
# long enough to pause it on a loaded machine before its last box has started.
LONG = {"retries": 90, "command": '[sh, -c, "sleep 8; exec httpd -f -p 8080 -h /www"]'}
LONG_STEPS = {"ORCHESTRATOR_STEP_DEADLINE": "30", "ORCHESTRATOR_VISIBILITY_TIMEOUT": "40"}


def releases(product: ProductRedis) -> set[str]:
    return set(product.client.scan_iter(match=f"{product.prefix}release:*"))


def paused(run: subprocess.Popen[str], product: ProductRedis, fleet: Fleet) -> str:
    """Once the rollout `run` holds its lease, pause it (the lease is then held without expiry
    and no new box starts): what follows looks at a rollout that cannot end meanwhile."""
    from schemas.contract import Keys

    def holder() -> str | None:
        if run.poll() is not None:
            raise AssertionError(f"the rollout ended first: {run.communicate()}")
        return product.client.get(Keys(product.prefix).lease(fleet.box_type))

    rid = wait_for(holder, "the rollout to hold the lease", 60)
    pause = fleet.cli("pause", rid)
    assert pause.returncode == 0, pause.stderr
    return rid


def test_history_and_lock_status_say_who_from_where_and_why(
    fleet_factory: Callable[..., Fleet], product_redis: ProductRedis,
) -> None:
    fleet = fleet_factory(4, extra_env=LONG_STEPS)
    fleet.env["ORCHESTRATOR_PERFORMER"] = "ci-bot"
    fleet.write(f"{fleet.images.repo}:v1", **LONG)
    run = fleet.start_cli("rollout", fleet.box_type, "--reason", "ticket 42")
    rid = paused(run, product_redis, fleet)
    held = fleet.cli("lock", "status", fleet.box_type).stdout
    host = os.uname().nodename
    assert "ci-bot (as " in held and f"@{host}" in held and "ticket 42" in held, held
    # Ended by abort, not run to its end: history names who and why whatever the outcome.
    assert fleet.cli("abort", rid).returncode == 0
    _, err = run.communicate(timeout=120)
    assert run.returncode == 1, err
    history = fleet.cli("history", fleet.box_type).stdout
    assert "aborted" in history, history
    assert "ci-bot (as " in history and f"@{host}" in history and "ticket 42" in history


def test_reason_is_required_unless_allowed(
    fleet_factory: Callable[..., Fleet], product_redis: ProductRedis,
) -> None:
    fleet = fleet_factory(1)
    fleet.write(f"{fleet.images.repo}:v1")
    fleet.env["ORCHESTRATOR_ALLOW_NO_REASON"] = "false"
    refused = fleet.cli("rollout", fleet.box_type)
    assert refused.returncode == 2 and "--reason is required" in refused.stderr, refused.stderr
    assert not releases(product_redis)
    # A rollback, an incident's command, never needs one: it says where it goes.
    for image, why in (("v1", "first"), ("v2", "second")):
        fleet.write(f"{fleet.images.repo}:{image}")
        done = fleet.cli("rollout", fleet.box_type, "--reason", why)
        assert done.returncode == 0, done.stderr
    back = fleet.cli("rollback", fleet.box_type, "--reason", "  ")
    assert back.returncode == 0, back.stderr
    history = fleet.cli("history", fleet.box_type, "--json")
    last = json.loads(history.stdout)[0]
    assert last["kind"] == "rollback" and last["reason"] == f"rollback to {last['release']}", last


def test_a_freeze_refuses_rollouts_and_lifting_it_never_ends_one(
    fleet_factory: Callable[..., Fleet], product_redis: ProductRedis,
) -> None:
    fleet = fleet_factory(2, extra_env=LONG_STEPS)
    fleet.write(f"{fleet.images.repo}:v1", **LONG)
    frozen = fleet.cli("lock", "acquire", fleet.box_type, "-m", "incident 42")
    assert frozen.returncode == 0, frozen.stderr
    refused = fleet.cli("rollout", fleet.box_type)
    assert refused.returncode == 3, refused.stderr  # README "Exit codes": held (frozen)
    assert "incident 42" in refused.stderr and "lock release" in refused.stderr
    again = fleet.cli("lock", "acquire", fleet.box_type, "-m", "twice")
    assert again.returncode == 2 and "already frozen" in again.stderr
    assert fleet.cli("lock", "release", fleet.box_type).returncode == 0

    run = fleet.start_cli("rollout", fleet.box_type, "--reason", "v1")
    rid = paused(run, product_redis, fleet)
    # Frozen while it runs: it goes on; lifting the freeze does not end it either.
    assert "goes on" in fleet.cli("lock", "acquire", fleet.box_type, "-m", "late").stdout
    lifted = fleet.cli("lock", "release", fleet.box_type)
    assert lifted.returncode == 0 and "unfrozen" in lifted.stdout and "goes on" in lifted.stdout
    assert fleet.cli("resume", rid).returncode == 0
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert "succeeded" in fleet.cli("history", fleet.box_type).stdout


def running(fleet: Fleet) -> dict[str, object]:
    """Each box's containers as Docker has them (ids), and its HAProxy membership."""
    import docker

    from schemas.contract import Label

    client = docker.from_env()
    try:
        return {w.box_id: (sorted(c.id for c in client.containers.list(
                    all=True, filters={"label": f"{Label.BOX}={w.box_id}"})),
                           fleet.in_service()[w.box_id]) for w in fleet.workers}
    finally:
        client.close()


def test_a_failing_pre_rollout_hook_changes_nothing(
    fleet_factory: Callable[..., Fleet], product_redis: ProductRedis, tmp_path: Path,
) -> None:
    fleet = fleet_factory(2)
    fleet.write(f"{fleet.images.repo}:v1")
    assert fleet.cli("rollout", fleet.box_type).returncode == 0
    fleet.wait_all_in_service()
    before = running(fleet)
    stored = releases(product_redis)
    hooks = fleet.boxes_dir.parent / "hooks"
    hooks.mkdir()
    seen = tmp_path / "hook-env"
    hook = hooks / "pre-rollout"
    hook.write_text(f"#!/bin/sh\nenv | grep ^ORCHESTRATOR_ > {seen}\n"
                    "echo 'migrations pending' >&2\nexit 1\n")
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    fleet.env["ORCHESTRATOR_PERFORMER"] = "ci-bot"
    run = fleet.cli("rollout", fleet.box_type, "--image", f"web={fleet.images.repo}:v2")
    assert run.returncode == 1, run.stderr
    assert "pre-rollout exited 1" in run.stderr and "migrations pending" in run.stderr
    assert releases(product_redis) == stored  # no new release
    assert fleet.cli("lock", "status", fleet.box_type).stdout.strip().endswith("free")
    assert running(fleet) == before  # boxes untouched: same containers, all in service
    env = dict(line.split("=", 1) for line in seen.read_text().splitlines())
    assert env["ORCHESTRATOR_HOOK"] == "pre-rollout" and env["ORCHESTRATOR_PERFORMER"] == "ci-bot"
    assert env["ORCHESTRATOR_BOX_TYPE"] == fleet.box_type
    assert env["ORCHESTRATOR_ROLLOUT_ID"].startswith(fleet.box_type)
    assert "@sha256:" in env["ORCHESTRATOR_IMAGES"] and env["ORCHESTRATOR_RELEASE"]
