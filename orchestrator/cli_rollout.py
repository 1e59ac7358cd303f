"""Commands that start or follow rollouts: rollout, rollback, repair, plan, watch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli_args import (
    box_id_arg,
    box_type_arg,
    check_text,
    make_policy,
    parse_images,
    release_id_arg,
    rollout_id_arg,
)
from orchestrator.cli_bake import bake_options, make_bake, with_fleet_alarms
from orchestrator.config import release_spec
from orchestrator.engine.fleet import heartbeat
from orchestrator.engine.state import new_id
from orchestrator.errors import ConfigError, RolloutNotSucceeded
from orchestrator.settings import load_settings
from orchestrator.watch import watch
from schemas.rollout import Policy, Rollout, RolloutState

if TYPE_CHECKING:
    from orchestrator.coordinator import Coordinator
    from schemas.release import Release


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


def require_reason(reason: str) -> None:
    check_text("--reason", reason)
    if not reason.strip() and not load_settings().allow_no_reason:
        raise ConfigError(
            "--reason is required: say why (history and `lock status` show it), e.g. "
            "--reason 'fix login'; or set ORCHESTRATOR_ALLOW_NO_REASON=true"
        )


def before_rollout(c: Coordinator, rollout_id: str, release: Release, reason: str) -> None:
    """hooks/pre-rollout, before anything is stored: a non-zero exit changes nothing."""
    from orchestrator.audit import who
    from orchestrator.hooks import hooks_dir, pre_rollout

    s = c.settings
    pre_rollout(hooks_dir(s.boxes_dir, s.hooks_dir), {
        "rollout_id": rollout_id, "box_type": release.box_type, "release": release.id,
        "images": " ".join(f"{a}={i}" for a, i in sorted(release.images.items())),
        "performer": who(s.performer).performer, "reason": reason,
    }, s.hook_timeout)


def coordinator(*, signs: bool = False) -> Coordinator:
    """Connected to Redis; `signs`: a command that signs reads its key before that."""
    from orchestrator.coordinator import Coordinator

    return Coordinator.connect(load_settings(), say=lambda m: click.echo(m, err=True),
                               signs=signs)


@click.command()
@click.argument("box_type", callback=box_type_arg)
@click.option(
    "--image",
    "images",
    multiple=True,
    metavar="APP=REF",
    help="Deploy this image for APP (repeatable); pinned to a digest now.",
)
@click.option("--reason", default="",
              help="Why: shown in lock status and history (one line, under 1,000 characters).")
@click.option("--wait", is_flag=True, help="Wait for a rollout holding the box type to end.")
@click.option("--json", "json_out", is_flag=True, help="One JSON object per event on stdout.")
@click.option(
    "--skip-missing",
    is_flag=True,
    help="Deploy the boxes with a live worker; skip missing ones (members, or the group's "
    "InService instances, without a live heartbeat) instead of failing at once.",
)
@policy_options
@bake_options
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
    bake: str | None,
    alarms: tuple[str, ...],
    error_margin: float | None,
    bake_min_requests: int | None,
    bake_each_wave: bool,
) -> None:
    """Roll BOX_TYPE's boxes to boxes/BOX_TYPE.yml (+ --image overrides), a few at a time.

    Exit codes: 0 every box succeeded, 1 failed or halted, 2 bad input (nothing changed),
    3 another rollout holds the lease, 4 Redis, the registry or AWS did not answer.
    """
    # Every flag is checked before anything connects, writes or sends a task.
    policy = make_policy(canary, batch, max_failed, on_failure)
    overrides = parse_images(images)
    release_spec(load_settings(), box_type, overrides)  # the file and --image, checked now
    require_reason(reason)
    baking = make_bake(bake, alarms, error_margin, bake_min_requests, bake_each_wave)
    c = coordinator(signs=True)
    try:
        c.refuse_if_frozen(box_type)
        baking = with_fleet_alarms(baking, c.fleet_settings(), box_type)
        release = c.build_release(box_type, overrides, reason)
        rollout_id = new_id(box_type)
        before_rollout(c, rollout_id, release, reason)
        c.rollouts.releases.put(release)
        started = c.start(box_type, release, policy, reason=reason, wait=wait,
                          skip_missing=skip_missing, rollout_id=rollout_id, bake=baking)
        click.echo(
            f"rollout {started.id}: release {release.id} on {len(started.plan.boxes)} boxes",
            err=True,
        )
        from orchestrator.cli_notify import notify_own

        notify_own(c, [started])  # `started` now, when no notifier runs
        ended(c, "rollout", started.id, follow(c, started, json_out))
    finally:
        c.close()


def follow(c: Coordinator, started: Rollout, json_out: bool) -> str:
    from orchestrator.cli_notify import notify_own
    from orchestrator.rollback import maybe_roll_back

    state = watch(c.rollouts, started, json_out=json_out, interval=c.settings.watch_interval)
    child = maybe_roll_back(c, started)
    if child is not None:
        click.echo(f"rollback {child.id}: returning changed boxes to {child.release_id}", err=True)
        watch(c.rollouts, child, json_out=json_out, interval=c.settings.watch_interval)
    notify_own(c, [started, *([child] if child else [])])
    return state


def ended(c: Coordinator, what: str, rollout_id: str, state: str) -> None:
    """Nothing if it succeeded; else the error an operator reads first: the state and why."""
    if state == "succeeded":
        return
    why = c.rollouts.status(rollout_id).get("halt_reason", "")
    raise RolloutNotSucceeded(f"{what} {rollout_id} ended {state}" + (f": {why}" if why else ""))


@click.command()
@click.argument("box_type", callback=box_type_arg)
@click.option("--to", "to_release", default=None, callback=release_id_arg,
              help="A release id (default: the current one).")
@click.option("--reason", default="",
              help="Why: shown in lock status and history (one line, under 1,000 characters; "
              "default: 'rollback to RELEASE', even without ORCHESTRATOR_ALLOW_NO_REASON).")
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

    policy = make_policy(
        canary, batch, max_failed, "halt" if on_failure == "rollback" else on_failure
    )
    check_text("--reason", reason)
    c = coordinator(signs=True)
    try:
        holder, _ = c.rollouts.lease.holder(box_type)
        pending = holder and c.rollouts.state(holder) == RolloutState.ROLLBACK_PENDING
        if pending and holder and not to_release:
            # A rollout waiting for someone to run its rollback: this is that someone.
            child = maybe_roll_back(c, c.rollouts.get(holder))
            if child is not None:
                state = watch(
                    c.rollouts, child, json_out=json_out, interval=c.settings.watch_interval
                )
                ended(c, "rollback", child.id, state)
                return
        target = to_release or c.rollouts.states.current(box_type)
        if not target:
            raise ConfigError(
                f"{box_type} has no successful release yet: nothing to return to "
                "(see `orchestrator history`)"
            )
        release = c.rollouts.releases.get(target)
        if release.box_type != box_type:
            raise ConfigError(f"release {target} is of box type {release.box_type}, not {box_type}")
        started = c.start(
            box_type,
            release,
            policy,
            reason=reason.strip() or f"rollback to {target}",  # never required: an incident's
            wait=wait,
            kind="rollback",
        )
        ended(c, "rollback", started.id, follow(c, started, json_out))
    finally:
        c.close()


@click.command()
@click.argument("box_id", callback=box_id_arg)
@click.option("--json", "json_out", is_flag=True, help="One JSON object per event on stdout.")
def repair(box_id: str, json_out: bool) -> None:
    """Restore and rejoin one box: a one-box rollout to its type's current release."""
    c = coordinator(signs=True)
    try:
        beat = heartbeat(c.client, c.keys, box_id)
        if beat is None:
            raise ConfigError(f"box {box_id} has no live heartbeat: start its worker first")
        box_type = beat.box_type
        current = c.rollouts.states.current(box_type)
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
        ended(c, "repair", started.id, follow(c, started, json_out))
    finally:
        c.close()


@click.command()
@click.argument("box_type", callback=box_type_arg)
@click.option("--image", "images", multiple=True, metavar="APP=IMAGE",
              help="Plan with this image for APP, as `rollout --image` would.")
@click.option("--json", "json_out", is_flag=True, help="One JSON object (README: plan --json).")
@policy_options
@click.pass_context
def plan(ctx: click.Context, box_type: str, images: tuple[str, ...], json_out: bool,
         canary: str, batch: str, max_failed: str, on_failure: str) -> None:
    """What a rollout of BOX_TYPE would change now, box by box: images (digests), spec
    changes (env keys, never values), load balancers left, waves. Changes nothing.

    Exit codes: 0 nothing to do, 5 changes present, 2 bad input, 4 unreachable.
    """
    import json

    from orchestrator import plandiff
    from orchestrator.boxquery import ask_secrets
    from orchestrator.planner import make_plan

    policy = make_policy(canary, batch, max_failed, on_failure)
    overrides = parse_images(images)
    release_spec(load_settings(), box_type, overrides)  # the file and --image, checked now
    c = coordinator()
    try:
        release = c.build_release(box_type, overrides, reason="plan")
        view = c.rollouts.fleet_of(box_type, c.settings.fleet_source)
        p = make_plan(view.boxes, policy)
        running = {r.release for b in view.heartbeats.values() for r in b.apps.values()}
        stored = {rid: got for rid in running if (got := c.rollouts.releases.find(rid))}
        skipped = {box: "no live worker" for box in view.missing}
        skipped |= {box: "not in the group" for box in view.strays}
        # Each box compares its own secret values (a keyed hash that never leaves it).
        rotated, unanswered = ask_secrets(c.app, c.client, c.keys, release, p.boxes,
                                          min(c.settings.preflight_timeout, 30.0))
        skipped |= {box: f"secrets not checked: {why}" for box, why in unanswered.items()}
        d = plandiff.diff(release, p, view.heartbeats, stored, skipped, rotated)
    finally:
        c.close()
    click.echo(json.dumps(d.as_json()) if json_out else plandiff.render(d))
    if d.changes:
        ctx.exit(plandiff.CHANGES_PRESENT)


@click.command("watch")
@click.argument("rollout_id", callback=rollout_id_arg)
@click.option("--json", "json_out", is_flag=True, help="One JSON object per event on stdout.")
def watch_cmd(rollout_id: str, json_out: bool) -> None:
    """Re-attach to a rollout (it runs on without any coordinator)."""
    c = coordinator()
    try:
        ended(c, "rollout", rollout_id, follow(c, c.rollouts.get(rollout_id), json_out))
    finally:
        c.close()
