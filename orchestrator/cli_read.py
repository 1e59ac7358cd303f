"""Commands that read: status, boxes, history, lock status. They change nothing."""

from __future__ import annotations

import json
import time

import click

from orchestrator.cli_args import box_type_arg
from orchestrator.cli_rollout import coordinator
from orchestrator.engine.freeze import Freezes
from orchestrator.errors import ConfigError, RolloutNotSucceeded
from schemas.rollout import Rollout


@click.command()
@click.argument("box_type", callback=box_type_arg)
@click.option("--json", "json_out", is_flag=True, help="One JSON object per box.")
def status(box_type: str, json_out: bool) -> None:
    """What runs where, as the boxes report it, and where each box stands in its load
    balancer, as the load balancer says. Exit 1 when any box needs attention."""
    from orchestrator.status import fleet_status

    c = coordinator()
    try:
        report = fleet_status(c.client, c.keys, box_type, c.read_lb)
    finally:
        c.close()
    if json_out:
        for row in report.rows:
            click.echo(json.dumps(row))
    else:
        click.echo(report.render())
    if report.attention:
        raise RolloutNotSucceeded(f"{len(report.attention)} box(es) need attention")


@click.command()
@click.argument("box_type", callback=box_type_arg)
def boxes(box_type: str) -> None:
    """The box type's auto scaling group joined with its workers: who runs what, flags."""
    c = coordinator()
    try:
        try:
            fleet = c.rollouts.fleet_of(box_type, "asg")
        except ConfigError:
            raise ConfigError(
                f"box type {box_type!r} has no auto scaling group "
                f"(tag orchestrator:box-type={box_type}); see `status`"
            ) from None
        beats = fleet.heartbeats
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


@click.command()
@click.argument("box_type", callback=box_type_arg)
@click.option("-n", "limit", default=20, show_default=True, help="How many rollouts.")
def history(box_type: str, limit: int) -> None:
    """Rollouts of BOX_TYPE, newest first: release, outcome, duration, reason."""
    c = coordinator()
    try:
        ids = c.rollouts.history(box_type, limit)
        if not ids:
            click.echo(f"{box_type}: no rollouts yet")
        current = c.rollouts.states.current(box_type)
        for rid in ids:
            r = c.rollouts.get(rid)
            st = c.rollouts.status(rid)
            took = float(st.get("ended", time.time())) - r.created_at
            mark = " (current)" if current == r.release_id else ""
            click.echo(
                f"{rid}  {r.kind:<8} {r.release_id}{mark}  {st.get('state', '?'):<16}"
                f" {took:7.1f}s  {st.get('n_ok', 0)}/{st.get('n_total', 0)} ok  "
                f"{by(r)}  {r.reason or '-'}"
            )
    finally:
        c.close()


def by(r: Rollout) -> str:
    """who@host, with the CI performer when it is not the user; '-' for old records."""
    user = r.created_by or "-"
    who = user if r.performer in ("", user) else f"{r.performer} (as {user})"
    return f"{who}@{r.host}" if r.host else who


@click.command("status")
@click.argument("box_type", callback=box_type_arg)
def lock_status(box_type: str) -> None:
    """Who holds BOX_TYPE's lease, why, since when, and until when."""
    c = coordinator()
    try:
        stale = c.rollouts.abandon_if_stale(box_type)
        if stale:
            click.echo(f"{box_type}: rollout {stale} lost its lease: marked abandoned")
        frozen = Freezes(c.client, c.keys).get(box_type)
        if frozen is not None:
            click.echo(f"{box_type}: {frozen}")
        holder, left = c.rollouts.lease.holder(box_type)
        if holder is None:
            click.echo(f"{box_type}: {'no rollout running' if frozen else 'free'}")
            return
        st = c.rollouts.status(holder)
        expiry = f"expires in {left:.1f}s" if left is not None else "held without expiry"
        click.echo(f"{box_type}: held by {holder} ({st.get('state', '?')}); {expiry}")
        click.echo("  " + c.describe_holder(box_type, holder))
    finally:
        c.close()
