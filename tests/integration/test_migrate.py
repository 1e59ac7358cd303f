"""box.yml's one-off task (`migrate:`) on real Docker, workers and HAProxy: it runs once before
any box leaves its load balancer; a failure swaps nothing; a worker killed while it runs does
not start it a second time."""

from __future__ import annotations

from collections.abc import Callable

import docker

from schemas.contract import Label
from tests.harness.common import started, wait_for
from tests.harness.rollout_fx import Fleet, json_lines


def with_migrate(fleet: Fleet, image: str, command: str) -> None:
    fleet.write(image)
    path = fleet.boxes_dir / f"{fleet.box_type}.yml"
    path.write_text(path.read_text() + f"migrate: {{app: web, command: {command}, deadline: 60}}\n")


def tasks(box_id: str) -> list[docker.models.containers.Container]:
    client = docker.from_env()
    try:
        return client.containers.list(all=True, filters={"label": [f"{Label.BOX}={box_id}",
                                                                    f"{Label.ROLE}=migrate"]})
    finally:
        client.close()


def test_a_migration_runs_once_before_any_box_leaves(fleet_factory: Callable[..., Fleet]) -> None:
    fleet = fleet_factory(2)
    fleet.write(f"{fleet.images.repo}:v1")
    assert fleet.cli("rollout", fleet.box_type).returncode == 0
    with_migrate(fleet, f"{fleet.images.repo}:v2", '[sh, -c, "echo migrated to v2"]')
    run = fleet.cli("rollout", fleet.box_type, "--json")
    assert run.returncode == 0, run.stderr
    events = json_lines(run.stdout)[:-1]
    steps = [(e.get("step"), e.get("phase")) for e in events]
    (migrated,) = [e for e in events if e.get("step") == "deploy.migrate"]
    assert migrated["outcome"] == "ok" and "exit 0" in str(migrated["reason"])
    assert "migrated to v2" in str(migrated["reason"])
    first_leave = steps.index(("deploy.leave_lb", "end"))
    assert events.index(migrated) < first_leave


def test_a_failed_migration_swaps_nothing(fleet_factory: Callable[..., Fleet]) -> None:
    fleet = fleet_factory(2)
    fleet.write(f"{fleet.images.repo}:v1")
    assert fleet.cli("rollout", fleet.box_type).returncode == 0
    fleet.wait_all_in_service()
    before = fleet.proxy.state_changes()
    with_migrate(fleet, f"{fleet.images.repo}:v2", '[sh, -c, "echo no database; exit 3"]')
    run = fleet.cli("rollout", fleet.box_type)
    assert run.returncode == 1, run.stderr
    assert "migrate on" in run.stderr and "exit 3" in run.stderr and "no database" in run.stderr
    assert "nothing was swapped" in run.stderr
    assert fleet.proxy.state_changes() == before  # no server of the backend went down
    assert all(fleet.in_service().values())
    status = json_lines(fleet.cli("status", fleet.box_type, "--json").stdout)
    assert len({r["apps"]["web"]["release"] for r in status}) == 1  # type: ignore[index]


def test_a_redelivered_migration_is_not_started_again(fleet_factory: Callable[..., Fleet]) -> None:
    fleet = fleet_factory(1)
    fleet.write(f"{fleet.images.repo}:v1")
    assert fleet.cli("rollout", fleet.box_type).returncode == 0
    (box,) = fleet.workers
    with_migrate(fleet, f"{fleet.images.repo}:v2", '[sh, -c, "sleep 4; echo once"]')
    run = fleet.start_cli("rollout", fleet.box_type, "--json")
    # The recorded event: the task's container runs. Then its worker dies (kill -9) and comes
    # back; the broker hands the unacknowledged task to it again.
    wait_for(lambda: any(c.status == "running" for c in tasks(box.box_id)), "the task to run", 60)
    (first,) = tasks(box.box_id)
    box.kill9()
    started(box)
    out, err = run.communicate(timeout=180)
    assert run.returncode == 0, err
    assert [c.id for c in tasks(box.box_id)] == [first.id]  # the same one container, once
    (migrated,) = [e for e in json_lines(out)[:-1] if e.get("step") == "deploy.migrate"]
    assert "exit 0" in str(migrated["reason"]) and "once" in str(migrated["reason"])
