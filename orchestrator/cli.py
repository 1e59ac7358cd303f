"""The `orchestrator` command line; one top-level handler turns our errors into exit codes."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from orchestrator.config import find_fleet, load_box, load_fleet
from orchestrator.errors import (
    ConfigError,
    InvalidFile,
    LeaseHeld,
    OrchestratorError,
    RolloutNotSucceeded,
)
from orchestrator.settings import CoordinatorSettings
from orchestrator.watch import watch
from schemas.rollout import Policy, Rollout

if TYPE_CHECKING:
    from orchestrator.coordinator import Coordinator
from schemas.boxfile import BoxSpec
from schemas.checks import app_order
from schemas.fleet import FleetSettings


def summary(path: Path, spec: BoxSpec) -> str:
    """One line a person can scan: apps in start order, containers, published ports."""
    containers = sum(len(a.containers) for a in spec.apps.values())
    ports = [
        str(p.host_port) + ("/udp" if p.protocol == "udp" else "")
        for a in spec.apps.values()
        for c in a.containers.values()
        for p in c.ports
    ]
    parts = [
        f"apps {' -> '.join(app_order(spec))}",
        f"{containers} container{'s' if containers != 1 else ''}",
        f"ports {', '.join(ports) if ports else 'none'}",
    ]
    if spec.services:
        parts.append(f"services {', '.join(spec.services)}")
    return f"{path}: ok: " + "; ".join(parts)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks of unexpected errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Rolling Docker deploys across fleets of boxes.

    Exit codes: 0 ok, 1 a deploy failed or halted, 2 bad input (nothing was changed).
    """
    ctx.obj = {"verbose": verbose}


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--fleet",
    "fleet_path",
    type=click.Path(path_type=Path),
    help="fleet.yml to check services against "
    "(default: fleet.yml beside each file, or in its parent folder).",
)
def validate(paths: tuple[Path, ...], fleet_path: Path | None) -> None:
    """Check box.yml files; print a summary line per file, or every problem (exit 2)."""
    failed: list[InvalidFile] = []
    explicit: FleetSettings | None = None
    if fleet_path is not None:
        explicit = load_fleet(fleet_path)
    for path in paths:
        try:
            fleet = explicit
            if fleet is None and (found := find_fleet(path)) is not None:
                fleet = load_fleet(found)
            loaded = load_box(path, fleet)
        except InvalidFile as exc:
            failed.append(exc)
            click.echo(f"ERROR (InvalidFile): {exc}", err=True)
            continue
        click.echo(summary(path, loaded.spec))
    if failed:
        n = sum(len(f.problems) for f in failed)
        raise ConfigError(
            f"{n} problem{'s' if n != 1 else ''} in {len(failed)} file(s); nothing was changed"
        )


@cli.command()
@click.option(
    "--fleet", "fleet_schema", is_flag=True, help="Print the schema of fleet.yml instead."
)
def schema(fleet_schema: bool) -> None:
    """Print the JSON Schema of box.yml (for editors and CI linters)."""
    model = FleetSettings if fleet_schema else BoxSpec
    click.echo(json.dumps(model.model_json_schema(), indent=2))


# --- rollouts ------------------------------------------------------------------------

POLICY_OPTIONS = [
    click.option(
        "--canary",
        default="1",
        show_default=True,
        help="Boxes in the canary wave (N or N%); nothing else starts until it is done.",
    ),
    click.option(
        "--batch",
        default="1",
        show_default=True,
        help="Boxes in flight after the canary (N or N%).",
    ),
    click.option(
        "--max-failed",
        default="0",
        show_default=True,
        help="Failed boxes tolerated before halting (N or N%).",
    ),
    click.option(
        "--on-failure",
        type=click.Choice(["halt", "rollback", "continue"]),
        default="halt",
        show_default=True,
        help="halt: no new box starts; rollback: halt, then return the changed boxes "
        "to the current release; continue: go on within --max-failed.",
    ),
]


def policy_options(f: Any) -> Any:
    for option in reversed(POLICY_OPTIONS):
        f = option(f)
    return f


def parse_images(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        app, sep, ref = pair.partition("=")
        if not sep or not app or not ref:
            raise ConfigError(f"--image {pair!r}: write APP=IMAGE, e.g. --image gcweb=reg/gcweb:v2")
        out[app] = ref
    return out


def coordinator() -> Coordinator:
    from orchestrator.coordinator import Coordinator

    return Coordinator.connect(CoordinatorSettings())


@cli.command()
@click.argument("box_type")
@click.option(
    "--image",
    "images",
    multiple=True,
    metavar="APP=REF",
    help="Deploy this image for APP (repeatable); pinned to a digest now.",
)
@click.option("--reason", default="", help="Why: shown in lock status and history.")
@click.option("--wait", is_flag=True, help="Wait for a rollout holding the box type to end.")
@click.option("--json", "json_out", is_flag=True, help="One JSON object per event on stdout.")
@click.option(
    "--skip-missing",
    is_flag=True,
    help="Deploy the group's instances that have a worker; skip those without one.",
)
@policy_options
def rollout(
    box_type: str,
    images: tuple[str, ...],
    reason: str,
    wait: bool,
    json_out: bool,
    skip_missing: bool,
    canary: str,
    batch: str,
    max_failed: str,
    on_failure: str,
) -> None:
    """Roll BOX_TYPE's boxes to boxes/BOX_TYPE.yml (+ --image overrides), a few at a time.

    Exit codes: 0 every box succeeded, 1 failed or halted, 2 bad input (nothing changed).
    """
    policy = Policy(canary=canary, batch=batch, max_failed=max_failed, on_failure=on_failure)
    c = coordinator()
    try:
        release = c.make_release(box_type, parse_images(images), reason)
        started = c.start(
            box_type, release, policy, reason=reason, wait=wait, skip_missing=skip_missing
        )
        click.echo(
            f"rollout {started.id}: release {release.id} on {len(started.plan.boxes)} boxes",
            err=True,
        )
        state = follow(c, started, json_out)
    finally:
        c.close()
    if state != "succeeded":
        raise RolloutNotSucceeded(f"rollout {started.id} ended {state}")


def follow(c: Coordinator, started: Rollout, json_out: bool) -> str:
    from orchestrator.rollback import maybe_roll_back

    state = watch(c.rollouts, started, json_out=json_out, interval=c.settings.watch_interval)
    child = maybe_roll_back(c, started)
    if child is not None:
        click.echo(f"rollback {child.id}: returning changed boxes to {child.release_id}", err=True)
        watch(c.rollouts, child, json_out=json_out, interval=c.settings.watch_interval)
    return state


@cli.command()
@click.argument("box_type")
@click.option("--to", "to_release", default=None, help="A release id (default: the current one).")
@click.option("--reason", default="", help="Why: shown in lock status and history.")
@click.option("--wait", is_flag=True, help="Wait for a rollout holding the box type to end.")
@click.option("--json", "json_out", is_flag=True, help="One JSON object per event on stdout.")
@policy_options
def rollback(
    box_type: str,
    to_release: str | None,
    reason: str,
    wait: bool,
    json_out: bool,
    canary: str,
    batch: str,
    max_failed: str,
    on_failure: str,
) -> None:
    """Return BOX_TYPE's fleet to its current (last successful) release, or --to RELEASE."""
    from orchestrator.rollback import maybe_roll_back

    c = coordinator()
    try:
        holder, _ = c.rollouts.lease.holder(box_type)
        if holder and c.rollouts.state(holder) == "rollback-pending" and not to_release:
            # A rollout waiting for someone to run its rollback: this is that someone.
            child = maybe_roll_back(c, c.rollouts.get(holder))
            if child is not None:
                state = watch(
                    c.rollouts, child, json_out=json_out, interval=c.settings.watch_interval
                )
                if state != "succeeded":
                    raise RolloutNotSucceeded(f"rollback {child.id} ended {state}")
                return
        target = to_release or (c.client.get(c.keys.current(box_type)) or b"").decode()
        if not target:
            raise ConfigError(
                f"{box_type} has no successful release yet: nothing to return to "
                "(see `orchestrator history`)"
            )
        release = c.rollouts.releases.get(target)
        if release.box_type != box_type:
            raise ConfigError(f"release {target} is of box type {release.box_type}, not {box_type}")
        policy = Policy(
            canary=canary,
            batch=batch,
            max_failed=max_failed,
            on_failure="halt" if on_failure == "rollback" else on_failure,
        )
        started = c.start(
            box_type,
            release,
            policy,
            reason=reason or f"rollback to {target}",
            wait=wait,
            kind="rollback",
        )
        state = follow(c, started, json_out)
    finally:
        c.close()
    if state != "succeeded":
        raise RolloutNotSucceeded(f"rollback {started.id} ended {state}")


@cli.command()
@click.argument("box_id")
@click.option("--json", "json_out", is_flag=True, help="One JSON object per event on stdout.")
def repair(box_id: str, json_out: bool) -> None:
    """Restore and rejoin one box: a one-box rollout to its type's current release."""
    c = coordinator()
    try:
        raw = c.client.get(c.keys.heartbeat(box_id))
        if raw is None:
            raise ConfigError(f"box {box_id} has no live heartbeat: start its worker first")
        from schemas.contract import Heartbeat

        box_type = Heartbeat.model_validate_json(raw).box_type
        current = (c.client.get(c.keys.current(box_type)) or b"").decode()
        if not current:
            raise ConfigError(f"{box_type} has no successful release to repair {box_id} to")
        started = c.start(
            box_type,
            c.rollouts.releases.get(current),
            Policy(),
            reason=f"repair {box_id}",
            kind="repair",
            boxes=[box_id],
        )
        state = follow(c, started, json_out)
    finally:
        c.close()
    if state != "succeeded":
        raise RolloutNotSucceeded(f"repair {started.id} ended {state}")


@cli.command()
@click.argument("box_type")
@policy_options
def plan(box_type: str, canary: str, batch: str, max_failed: str, on_failure: str) -> None:
    """Print the plan of a rollout of BOX_TYPE now; changes nothing."""
    from orchestrator.engine.fleet import heartbeats
    from orchestrator.planner import make_plan

    c = coordinator()
    try:
        fleet = sorted(heartbeats(c.client, c.keys, box_type))
        p = make_plan(
            fleet, Policy(canary=canary, batch=batch, max_failed=max_failed, on_failure=on_failure)
        )
    finally:
        c.close()
    click.echo(
        f"{box_type}: {len(p.boxes)} boxes; canary {p.canary} "
        f"({', '.join(p.canary_boxes) or 'none'}), then {p.batch} at a time; "
        f"halt after {p.max_failed + 1} failed; on failure: {p.on_failure}"
    )
    for i, box in enumerate(p.boxes):
        click.echo(f"  {i + 1:>4}. {box}{'  (canary)' if i < p.canary else ''}")


@cli.command("watch")
@click.argument("rollout_id")
@click.option("--json", "json_out", is_flag=True, help="One JSON object per event on stdout.")
def watch_cmd(rollout_id: str, json_out: bool) -> None:
    """Re-attach to a rollout (it runs on without any coordinator)."""
    c = coordinator()
    try:
        state = follow(c, c.rollouts.get(rollout_id), json_out)
    finally:
        c.close()
    if state != "succeeded":
        raise RolloutNotSucceeded(f"rollout {rollout_id} ended {state}")


@cli.command()
@click.argument("rollout_id")
def pause(rollout_id: str) -> None:
    """No new box starts; boxes in flight finish; the lease is held without expiry."""
    c = coordinator()
    try:
        r = c.rollouts.get(rollout_id)
        ok, before = c.rollouts.transition(rollout_id, "paused", "running")
        if not ok:
            raise ConfigError(f"rollout {rollout_id} is {before}: only a running one pauses")
        c.rollouts.lease.persist(r.box_type, rollout_id)
    finally:
        c.close()
    click.echo(f"{rollout_id}: paused (resume with `orchestrator resume {rollout_id}`)")


@cli.command()
@click.argument("rollout_id")
def resume(rollout_id: str) -> None:
    """Start boxes again (after pause, or after a halt once the cause is fixed)."""
    c = coordinator()
    try:
        r = c.rollouts.get(rollout_id)
        holder, _ = c.rollouts.lease.holder(r.box_type)
        if holder not in (None, rollout_id):
            raise LeaseHeld(c.describe_holder(r.box_type, holder))
        if holder is None and c.rollouts.lease.acquire(
            r.box_type, rollout_id, c.settings.lease_ttl
        ):
            raise ConfigError(f"could not take the lease of {r.box_type} back; try again")
        ok, before = c.rollouts.transition(rollout_id, "running", "paused", "halted")
        if not ok:
            raise ConfigError(f"rollout {rollout_id} is {before}: only paused/halted resume")
        c.client.hdel(c.keys.rollout(rollout_id), "ended")
        retried = c.rollouts.retry_failed(r)
        if retried:
            click.echo(f"{rollout_id}: trying {', '.join(retried)} again", err=True)
        c.rollouts.lease.renew(r.box_type, rollout_id, c.settings.lease_ttl)
        c.client.set(c.keys.active(r.box_type), rollout_id)
        c.rollouts.advance(r)
    finally:
        c.close()
    click.echo(f"{rollout_id}: running (watch with `orchestrator watch {rollout_id}`)")


@cli.command()
@click.argument("rollout_id")
def abort(rollout_id: str) -> None:
    """Halt now: no new box starts; boxes in flight finish and rejoin."""
    c = coordinator()
    try:
        r = c.rollouts.get(rollout_id)
        ok, before = c.rollouts.transition(
            rollout_id, "aborted", "running", "paused", "halted", "rolling-back", "rollback-pending"
        )
        if not ok:
            raise ConfigError(f"rollout {rollout_id} already ended {before}")
        c.rollouts.advance(r)  # ends it now if nothing is in flight
    finally:
        c.close()
    click.echo(f"{rollout_id}: aborted")


@cli.group()
def lock() -> None:
    """The lease of a box type: who holds it, and releasing it by hand."""


@lock.command("status")
@click.argument("box_type")
def lock_status(box_type: str) -> None:
    """Who holds BOX_TYPE's lease, why, since when, and until when."""
    c = coordinator()
    try:
        stale = c.rollouts.abandon_if_stale(box_type)
        if stale:
            click.echo(f"{box_type}: rollout {stale} lost its lease: marked abandoned")
        holder, left = c.rollouts.lease.holder(box_type)
        if holder is None:
            click.echo(f"{box_type}: free")
            return
        st = c.rollouts.status(holder)
        expiry = f"expires in {left:.1f}s" if left is not None else "held without expiry"
        click.echo(f"{box_type}: held by {holder} ({st.get('state', '?')}); {expiry}")
        click.echo("  " + c.describe_holder(box_type, holder))
    finally:
        c.close()


@lock.command("release")
@click.argument("box_type")
def lock_release(box_type: str) -> None:
    """Release BOX_TYPE's lease and run the end-of-rollout clean-up of its holder."""
    c = coordinator()
    try:
        holder, _ = c.rollouts.lease.holder(box_type)
        if holder is None:
            click.echo(f"{box_type}: already free")
            return
        c.rollouts.transition(
            holder, "aborted", "running", "paused", "halted", "rolling-back", "rollback-pending"
        )
        c.client.delete(c.keys.rollout_part(holder, "pending"))
        final = c.rollouts.end(c.rollouts.get(holder))
        c.rollouts.lease.force_release(box_type)
        click.echo(f"{box_type}: released (rollout {holder} {final or 'had already ended'})")
    finally:
        c.close()


@cli.command()
@click.argument("box_type")
@click.option("--json", "json_out", is_flag=True, help="One JSON object per box.")
def status(box_type: str, json_out: bool) -> None:
    """What runs where, as the boxes report it (not as planned)."""
    from orchestrator.status import fleet_status

    c = coordinator()
    try:
        report = fleet_status(c.client, c.keys, box_type)
    finally:
        c.close()
    if json_out:
        for row in report.rows:
            click.echo(json.dumps(row))
        return
    click.echo(report.render())
    if report.attention:
        raise RolloutNotSucceeded(f"{len(report.attention)} box(es) need attention")


@cli.command()
@click.argument("box_type")
def boxes(box_type: str) -> None:
    """The box type's auto scaling group joined with its workers: who runs what, flags."""
    from orchestrator.engine.asg import AsgFleet, find_group, group_instances
    from orchestrator.engine.aws import aws_client
    from orchestrator.engine.fleet import heartbeats

    c = coordinator()
    try:
        aws = (c.settings.aws_region, c.settings.aws_endpoint_url)
        group = find_group(aws_client("autoscaling", *aws), box_type)
        beats = heartbeats(c.client, c.keys, box_type)
        if group is None:
            raise ConfigError(
                f"box type {box_type!r} has no auto scaling group "
                f"(tag orchestrator:box-type={box_type}); see `status`"
            )
        fleet = AsgFleet(
            group["AutoScalingGroupName"], group_instances(group, aws_client("ec2", *aws)), beats
        )
    finally:
        c.close()
    click.echo(
        f"{box_type}: group {fleet.group}, {len(fleet.instances)} instances, "
        f"{len(fleet.boxes)} deployable"
    )
    for inst in sorted(fleet.instances, key=lambda i: i.id):
        hb = beats.get(inst.id)
        releases = ",".join(sorted({a.release for a in hb.apps.values()})) if hb else "-"
        flags = []
        if inst.id in fleet.missing:
            flags.append("no worker")
        if inst.lifecycle != "InService":
            flags.append(f"not deployed ({inst.lifecycle})")
        click.echo(
            f"  {inst.id:<20} {inst.az:<12} {inst.private_ip or '-':<15} "
            f"v{inst.template_version or '?':<4} {'worker' if hb else 'no worker':<10} "
            f"{releases or '-'}{'  !! ' + ', '.join(flags) if flags else ''}"
        )
    for stray in fleet.strays:
        click.echo(
            f"  {stray:<20} stray: heartbeats as {box_type} but is not in the group; not deployed"
        )
    if fleet.missing or fleet.strays:
        raise RolloutNotSucceeded(
            f"{len(fleet.missing)} missing worker(s), {len(fleet.strays)} stray(s)"
        )


@cli.command()
@click.argument("box_type")
@click.option("-n", "limit", default=20, show_default=True, help="How many rollouts.")
def history(box_type: str, limit: int) -> None:
    """Rollouts of BOX_TYPE, newest first: release, outcome, duration, reason."""
    c = coordinator()
    try:
        ids = [i.decode() for i in c.client.zrevrange(c.keys.rollouts(box_type), 0, limit - 1)]
        if not ids:
            click.echo(f"{box_type}: no rollouts yet")
        current = c.client.get(c.keys.current(box_type))
        for rid in ids:
            r = c.rollouts.get(rid)
            st = c.rollouts.status(rid)
            took = float(st.get("ended", time.time())) - r.created_at
            mark = " (current)" if current and current.decode() == r.release_id else ""
            click.echo(
                f"{rid}  {r.kind:<8} {r.release_id}{mark}  {st.get('state', '?'):<16}"
                f" {took:7.1f}s  {st.get('n_ok', 0)}/{st.get('n_total', 0)} ok  "
                f"{r.reason or '-'}"
            )
    finally:
        c.close()


def _register_groups() -> None:
    from orchestrator.cli_boxtype import boxtype

    cli.add_command(boxtype)


_register_groups()


def main(argv: list[str] | None = None) -> int:
    """Entry point: one handler prints `ERROR (Class): message`; traceback only with -v."""
    args = sys.argv[1:] if argv is None else argv
    verbose = "-v" in args or "--verbose" in args
    try:
        cli.main(args=args, prog_name="orchestrator", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.ClickException as exc:  # usage errors: click prints them itself
        exc.show()
        return 2
    except OrchestratorError as exc:
        if verbose:
            raise
        click.echo(f"ERROR ({type(exc).__name__}): {exc}", err=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
