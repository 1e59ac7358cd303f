"""Commands that read: status, boxes, history, lock status. They change nothing."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli_args import Whole, box_id_arg, box_type_arg
from orchestrator.cli_rollout import coordinator
from orchestrator.config import box_file
from orchestrator.engine.freeze import Freezes
from orchestrator.errors import ConfigError, RolloutNotSucceeded
from schemas.rollout import Rollout

if TYPE_CHECKING:
    from orchestrator.coordinator import Coordinator

JSON_HELP = "One JSON document on stdout (README: JSON output); [] when there is nothing."


def emit(doc: object, json_out: bool, text: str) -> None:
    click.echo(json.dumps(doc) if json_out else text)


def known(c: Coordinator, box_type: str, recorded: bool) -> None:
    """A type with no box file and nothing recorded is a typo: said (exit 2), not shown as an
    empty fleet or a free lock. A retired type (its file gone, its records kept) is shown."""
    if recorded:
        return
    try:
        box_file(c.settings, box_type)
    except ConfigError as exc:
        raise ConfigError(f"{exc}; nothing is recorded for it either") from None


@click.command()
@click.argument("box_type", callback=box_type_arg)
@click.option("--json", "json_out", is_flag=True, help=JSON_HELP)
def status(box_type: str, json_out: bool) -> None:
    """What runs where, as the boxes report it, and where each box stands in its load
    balancer, as the load balancer says. Exit 1 when any box needs attention."""
    from orchestrator.status import fleet_status

    c = coordinator()
    try:
        report = fleet_status(c.client, c.keys, box_type, c.read_lb)
        known(c, box_type, bool(report.rows or report.current))
    finally:
        c.close()
    emit(report.rows, json_out, report.render())
    if report.attention:
        raise RolloutNotSucceeded(f"{len(report.attention)} box(es) need attention")


class _Boxes(click.Group):
    """`boxes <type>` shows the group (as before); `boxes forget <box>` is a subcommand."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["show", *args]
        return super().resolve_command(ctx, args)


@click.group(cls=_Boxes)
def boxes() -> None:
    """The boxes of a box type: `boxes <type>` (its auto scaling group joined with its
    workers) and `boxes forget <box>` (a member that is gone for good)."""


@boxes.command("forget")
@click.argument("box_id", callback=box_id_arg)
def boxes_forget(box_id: str) -> None:
    """Remove BOX_ID from its box type's members: rollouts stop counting it missing."""
    from orchestrator.engine.fleet import Members, forget_refusal, heartbeat

    c = coordinator()
    try:
        members = Members(c.client, c.keys)
        types = members.types_of(box_id)
        hb = heartbeat(c.client, c.keys, box_id)
        refused = forget_refusal(box_id, types, hb.box_type if hb else None)
        if refused:
            raise ConfigError(refused)
        for box_type in types:
            members.forget(box_type, box_id)
            click.echo(f"{box_id}: no longer a member of {box_type}")
    finally:
        c.close()


@boxes.command("show")
@click.argument("box_type", callback=box_type_arg)
@click.option("--json", "json_out", is_flag=True, help=JSON_HELP)
def boxes_show(box_type: str, json_out: bool) -> None:
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
    finally:
        c.close()
    rows = []
    for inst in sorted(fleet.instances, key=lambda i: i.id):
        hb = fleet.heartbeats.get(inst.id)
        flags = ["no worker"] if inst.id in fleet.missing else []
        if inst.lifecycle != "InService":
            flags.append(f"not deployed ({inst.lifecycle})")
        rows.append({"box": inst.id, "az": inst.az, "ip": inst.private_ip,
                     "template_version": inst.template_version, "worker": hb is not None,
                     "releases": sorted({a.release for a in hb.apps.values()}) if hb else [],
                     "flags": flags})
    rows += [{"box": s, "az": None, "ip": None, "template_version": None, "worker": True,
              "releases": [], "flags": ["stray: heartbeats but is not in the group"]}
             for s in fleet.strays]
    lines = [f"{box_type}: group {fleet.group}, {len(fleet.instances)} instances, "
             f"{len(fleet.boxes)} deployable"]
    for r in rows:
        lines.append(
            f"  {r['box']:<20} {r['az'] or '-':<12} {r['ip'] or '-':<15} "
            f"v{r['template_version'] or '?':<4} {'worker' if r['worker'] else 'no worker':<10} "
            f"{','.join(r['releases']) or '-'}"
            f"{'  !! ' + ', '.join(r['flags']) if r['flags'] else ''}")
    emit(rows, json_out, "\n".join(lines))
    if fleet.missing or fleet.strays:
        raise RolloutNotSucceeded(
            f"{len(fleet.missing)} missing worker(s), {len(fleet.strays)} stray(s)"
        )


@click.command()
@click.argument("box_type", callback=box_type_arg)
@click.option("-n", "limit", default=20, show_default=True, type=Whole(1, 10_000),
              help="How many rollouts (1-10000).")
@click.option("--json", "json_out", is_flag=True, help=JSON_HELP)
def history(box_type: str, limit: int, json_out: bool) -> None:
    """Rollouts of BOX_TYPE, newest first: release, outcome, duration, who and why."""
    c = coordinator()
    try:
        current = c.rollouts.states.current(box_type)
        rows = [history_row(c.rollouts.get(rid), c.rollouts.status(rid), current)
                for rid in c.rollouts.history(box_type, limit)]
        known(c, box_type, bool(rows or current))
    finally:
        c.close()
    lines = [
        f"{r['rollout']}  {r['kind']:<8} {r['release']}{' (current)' if r['current'] else ''}"
        f"  {r['state']:<16} {r['seconds']:7.1f}s  {r['ok']}/{r['total']} ok  {r['by']}  "
        f"{r['reason'] or '-'}" for r in rows]
    emit(rows, json_out, "\n".join(lines) or f"{box_type}: no rollouts yet")


def history_row(r: Rollout, st: dict[str, str], current: str | None) -> dict[str, Any]:
    return {"rollout": r.id, "kind": r.kind, "release": r.release_id,
            "current": current == r.release_id, "state": st.get("state", "?"),
            "seconds": round(float(st.get("ended", time.time())) - r.created_at, 1),
            "ok": int(st.get("n_ok", 0)), "total": int(st.get("n_total", 0)),
            "by": by(r), "user": r.created_by, "host": r.host,
            "performer": r.performer or r.created_by, "reason": r.reason,
            "command": r.command, "halt_reason": st.get("halt_reason", "")}


def by(r: Rollout) -> str:
    """who@host, with the CI performer when it is not the user; '-' for old records."""
    user = r.created_by or "-"
    who = user if r.performer in ("", user) else f"{r.performer} (as {user})"
    return f"{who}@{r.host}" if r.host else who


@click.command("status")
@click.argument("box_type", callback=box_type_arg)
@click.option("--json", "json_out", is_flag=True, help=JSON_HELP)
def lock_status(box_type: str, json_out: bool) -> None:
    """Who holds BOX_TYPE's lease, why, since when, and until when; its freeze, if any."""
    c = coordinator()
    try:
        stale = c.rollouts.abandon_if_stale(box_type)
        frozen = Freezes(c.client, c.keys).get(box_type)
        holder, left = c.rollouts.lease.holder(box_type)
        st = c.rollouts.status(holder) if holder else {}
        held = None if holder is None else {
            "rollout": holder, "state": st.get("state", "?"), "expires_in": left,
            "who": st.get("who", ""), "reason": st.get("reason", ""),
            "describe": c.describe_holder(box_type, holder)}
        known(c, box_type, bool(stale or frozen or held))
    finally:
        c.close()
    doc = {"box_type": box_type, "abandoned": stale,
           "frozen": None if frozen is None else {"message": frozen.message, "who": frozen.who,
                                                  "at": frozen.at},
           "holder": held}
    lines = [f"{box_type}: rollout {stale} lost its lease: marked abandoned"] if stale else []
    lines += [f"{box_type}: {frozen}"] if frozen else []
    if held is None:
        lines.append(f"{box_type}: {'no rollout running' if frozen else 'free'}")
    else:
        expiry = f"expires in {left:.1f}s" if left is not None else "held without expiry"
        lines += [f"{box_type}: held by {holder} ({held['state']}); {expiry}",
                  "  " + str(held["describe"])]
    emit(doc, json_out, "\n".join(lines))
