"""A real HAProxy reload (master-worker, SIGUSR2: what `systemctl reload haproxy` does) after a
start-first rollout moved the member to the alternate port. Without a server-state file the
reload puts it back on its configured port, where nothing runs: the box moves it back itself at
its next heartbeat tick; with that turned off, `status` flags it and `repair` fixes it. With
the README's recipe (server-state-file, load-server-state-from-file) it stays where it was."""

from __future__ import annotations

from collections.abc import Callable

from devstack.traffic import TrafficLoop
from tests.harness.common import wait_for
from tests.harness.rollout_fx import PORT, Fleet
from tests.harness.start_first_fx import ALT, deployed, out_of_service_changes, write

SAID = "an HAProxy reload without a server-state file?"


def on_v2(fleet_factory: Callable[..., Fleet], **options: object) -> Fleet:
    """One box rolled v1 -> v2 start-first: its member on the alternate port, in service."""
    fleet = deployed(fleet_factory, 1, **options)
    write(fleet, "v2")
    run = fleet.cli("rollout", fleet.box_type, "--reason", "v2")
    assert run.returncode == 0, run.stdout + run.stderr
    (box,) = fleet.workers
    assert fleet.lb.member_port(box.box_id) == ALT
    fleet.wait_all_in_service()
    return fleet


def test_without_a_state_file_the_box_puts_its_member_back_itself(
    fleet_factory: Callable[..., Fleet],
) -> None:
    fleet = on_v2(fleet_factory, haproxy={"reloadable": True})
    (box,) = fleet.workers
    fleet.proxy.reload()
    wait_for(lambda: SAID in box.log_path.read_text(errors="replace"),
             "the box moving its member back, in its log", timeout=30)
    assert fleet.lb.member_port(box.box_id) == ALT
    fleet.wait_all_in_service()
    status = fleet.status_at_rest()
    assert status.returncode == 0, status.stdout + status.stderr


def test_with_realign_off_status_flags_the_member_and_repair_moves_it(
    fleet_factory: Callable[..., Fleet],
) -> None:
    fleet = on_v2(fleet_factory, haproxy={"reloadable": True},
                  extra_env={"ORCHESTRATOR_REALIGN_MEMBERS": "false"})
    (box,) = fleet.workers
    fleet.proxy.reload()
    assert fleet.lb.member_port(box.box_id) == PORT  # the configured port: nothing runs there
    wait_for(lambda: not fleet.lb.state(box.box_id).in_service, "the member DOWN", timeout=10)
    status = fleet.cli("status", fleet.box_type)
    assert status.returncode == 1, status.stdout + status.stderr
    assert f"member on port {PORT}" in status.stdout and f"not {ALT}" in status.stdout, (
        status.stdout)
    repair = fleet.cli("repair", box.box_id)
    assert repair.returncode == 0, repair.stdout + repair.stderr
    assert fleet.lb.member_port(box.box_id) == ALT
    fleet.wait_all_in_service()
    assert fleet.cli("status", fleet.box_type).returncode == 0
    assert SAID not in box.log_path.read_text(errors="replace")


def test_with_the_readme_state_file_a_reload_keeps_the_member_in_service(
    fleet_factory: Callable[..., Fleet],
) -> None:
    fleet = on_v2(fleet_factory, haproxy={"state_file": True},
                  extra_env={"ORCHESTRATOR_REALIGN_MEMBERS": "false"})  # HAProxy alone
    (box,) = fleet.workers
    before = len(out_of_service_changes(fleet))
    with TrafficLoop(fleet.proxy.url, threads=2, rate_per_thread=40, max_seconds=60) as loop:
        loop.wait_total(20, timeout=10)
        fleet.proxy.reload()
        loop.wait_total(loop.stats.total + 40, timeout=10)
    stats = loop.stop()
    assert fleet.lb.member_port(box.box_id) == ALT
    assert fleet.lb.state(box.box_id).in_service
    assert out_of_service_changes(fleet)[before:] == []
    assert stats.failed == 0, stats.summary()
    assert stats.bodies["v2\n"] == stats.total, stats.bodies
    assert fleet.cli("status", fleet.box_type).returncode == 0
