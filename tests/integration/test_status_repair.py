"""`status` flags what the boxes report; `repair` rejoins a box; `rollback --to` goes back."""

from __future__ import annotations

from collections.abc import Callable

import docker

from tests.harness.common import wait_for
from tests.harness.docker_fx import TEST_CONTAINER_LABELS, WebImages
from tests.harness.rollout_fx import Fleet, json_lines


def test_hand_made_container_is_flagged_and_repair_rejoins(
    fleet_factory: Callable[..., Fleet], docker_client: docker.DockerClient,
    test_images: WebImages,
) -> None:
    fleet = fleet_factory(2)
    fleet.write(f"{fleet.images.repo}:v1")
    assert fleet.cli("rollout", fleet.box_type).returncode == 0
    fleet.wait_all_in_service()
    assert fleet.cli("status", fleet.box_type).returncode == 0

    box = fleet.workers[0]
    docker_client.containers.run(test_images.v1, name=f"{box.box_id}.by-hand", detach=True,
                                 init=True, labels=dict(TEST_CONTAINER_LABELS))
    wait_for(lambda: "hand-made" in fleet.cli("status", fleet.box_type).stdout,
             "status to flag the hand-made container")
    flagged = fleet.cli("status", fleet.box_type)
    assert flagged.returncode == 1
    assert f"hand-made container {box.box_id}.by-hand" in flagged.stdout
    assert "needs attention" in flagged.stdout

    # Out of its load balancer by hand: repair proves health and rejoins.
    fleet.lb.leave(box.box_id)
    fleet.lb.wait_drained(box.box_id, 5)
    assert not fleet.in_service()[box.box_id]
    repaired = fleet.cli("repair", box.box_id)
    assert repaired.returncode == 0, repaired.stderr
    fleet.wait_all_in_service()


def test_rollback_to_an_earlier_release(fleet_factory: Callable[..., Fleet]) -> None:
    fleet = fleet_factory(2)
    fleet.write(f"{fleet.images.repo}:v1")
    first = fleet.cli("rollout", fleet.box_type, "--json")
    v1 = json_lines(first.stdout)[-1]["summary"]["release"]  # type: ignore[index]
    assert fleet.cli("rollout", fleet.box_type, "--image",
                     f"web={fleet.images.repo}:v2").returncode == 0
    back = fleet.cli("rollback", fleet.box_type, "--to", str(v1), "--batch", "2")
    assert back.returncode == 0, back.stderr
    rows = json_lines(fleet.cli("status", fleet.box_type, "--json").stdout)
    assert {r["apps"]["web"]["release"] for r in rows} == {v1}  # type: ignore[index]
    assert "rollback" in fleet.cli("history", fleet.box_type).stdout
    missing = fleet.cli("rollback", fleet.box_type, "--to", "r-nope")
    assert missing.returncode == 2 and "not in Redis" in missing.stderr


def test_status_tells_the_truth_and_repair_fixes_it(
    fleet_factory: Callable[..., Fleet], docker_client: docker.DockerClient,
) -> None:
    fleet = fleet_factory(2)
    fleet.write(f"{fleet.images.repo}:v1")
    assert fleet.cli("rollout", fleet.box_type).returncode == 0
    fleet.wait_all_in_service()
    assert fleet.cli("status", fleet.box_type).returncode == 0
    box, other = fleet.workers

    # An app container dies while nothing runs a rollout.
    (web,) = docker_client.containers.list(filters={"label": f"orchestrator.box={box.box_id}"})
    web.kill()
    wait_for(lambda: "is exited" in fleet.cli("status", fleet.box_type).stdout,
             "status to flag the dead container", timeout=20)
    dead = fleet.cli("status", fleet.box_type)
    assert dead.returncode == 1 and f"{box.box_id}.web.web is exited" in dead.stdout, dead.stdout
    # Out of HAProxy by hand (no rollout): the load balancer's own word, not a record.
    fleet.lb.leave(other.box_id)
    wait_for(lambda: "out of its load balancer" in fleet.cli("status", fleet.box_type).stdout,
             "status to read HAProxy")
    out = fleet.cli("status", fleet.box_type, "--json")
    flags = {r["box"]: r["flags"] for r in json_lines(out.stdout)}
    assert out.returncode == 1
    assert any("out of its load balancer (haproxy web" in f for f in flags[other.box_id]), flags

    for target in (box, other):
        repaired = fleet.cli("repair", target.box_id)
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    fleet.wait_all_in_service()
    wait_for(lambda: fleet.cli("status", fleet.box_type).returncode == 0,
             "status exit 0 once repaired")


# A next version that answers its health check only after a few seconds: its box stays busy
# in the swap that long (the step's deadline outlasts it on a loaded machine).
SLOW_START = {"retries": 60, "command": '[sh, -c, "sleep 4; exec httpd -f -p 8080 -h /www"]'}
SLOW_STEPS = {"ORCHESTRATOR_STEP_DEADLINE": "30", "ORCHESTRATOR_VISIBILITY_TIMEOUT": "40"}


def test_a_box_in_its_swap_shows_what_its_load_balancer_says(
    fleet_factory: Callable[..., Fleet],
) -> None:
    """A busy box is not looked at (a probe must not race its step), so its heartbeat named no
    membership and `status` showed `lb -` for the one box that was moving. It now keeps the
    memberships of its last look at rest, and `status` shows HAProxy's word for them."""
    fleet = fleet_factory(1, extra_env=SLOW_STEPS)
    fleet.write(f"{fleet.images.repo}:v1")
    assert fleet.cli("rollout", fleet.box_type).returncode == 0
    fleet.wait_all_in_service()
    at_rest = json_lines(fleet.status_at_rest().stdout)
    assert at_rest[0]["apps"]["web"]["lb"] == "in", at_rest  # type: ignore[index]

    fleet.write(f"{fleet.images.repo}:v2", **SLOW_START)
    run = fleet.start_cli("rollout", fleet.box_type, "--reason", "slow start")

    def swapping() -> dict[str, object] | None:
        if run.poll() is not None:
            raise AssertionError(f"the rollout ended first: {run.communicate()}")
        rows = json_lines(fleet.cli("status", fleet.box_type, "--json").stdout)
        row = rows[0] if rows else {}
        busy = str(row.get("busy") or "")
        return row if "deploy.swap" in busy and "web" in row.get("apps", {}) else None  # type: ignore[operator]

    row = wait_for(swapping, "status to show the box in its swap", timeout=30, interval=0.1)
    assert str(row["apps"]["web"]["lb"]).startswith("out ("), row  # type: ignore[index]
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    fleet.wait_all_in_service()


# Beats far apart: a heartbeat written by the tick alone is seconds old when `status` reads it
# right after a rollout (slots and leases outlast the interval).
SLOW_BEATS = {"ORCHESTRATOR_HEARTBEAT_INTERVAL": "5", "ORCHESTRATOR_HEARTBEAT_TTL": "20",
              "ORCHESTRATOR_SLOT_TTL": "15", "ORCHESTRATOR_LEASE_TTL": "15"}


def test_status_right_after_a_rollout_reads_what_runs_now(
    fleet_factory: Callable[..., Fleet],
) -> None:
    """A box beats as soon as its chain ends: `status` run right after `rollout` showed the
    last box still busy, on the release it had left, until its next tick."""
    fleet = fleet_factory(2, extra_env=SLOW_BEATS)
    fleet.write(f"{fleet.images.repo}:v1")
    assert fleet.cli("rollout", fleet.box_type).returncode == 0
    for image in ("v2", "v1"):
        fleet.write(f"{fleet.images.repo}:{image}")
        run = fleet.cli("rollout", fleet.box_type, "--json", "--reason", image)
        assert run.returncode == 0, run.stderr
        release = json_lines(run.stdout)[-1]["summary"]["release"]  # type: ignore[index]
        rows = json_lines(fleet.cli("status", fleet.box_type, "--json").stdout)
        assert [r["busy"] for r in rows] == [None, None], rows
        assert {r["apps"]["web"]["release"] for r in rows} == {release}, rows  # type: ignore[index]
