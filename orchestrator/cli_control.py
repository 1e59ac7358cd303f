"""Commands that act on a running rollout: pause, resume, abort, lock release."""

from __future__ import annotations

import click

from orchestrator import control
from orchestrator.cli_args import box_type_arg, check_text, rollout_id_arg
from orchestrator.cli_rollout import coordinator
from orchestrator.errors import ConfigError


@click.command()
@click.argument("rollout_id", callback=rollout_id_arg)
def pause(rollout_id: str) -> None:
    """No new box starts; boxes in flight finish; the lease is held without expiry."""
    c = coordinator()
    try:
        control.pause(c, rollout_id)
    finally:
        c.close()
    click.echo(f"{rollout_id}: paused (resume with `orchestrator resume {rollout_id}`)")


@click.command()
@click.argument("rollout_id", callback=rollout_id_arg)
def resume(rollout_id: str) -> None:
    """Start boxes again (after pause, or after a halt once the cause is fixed)."""
    c = coordinator(signs=True)
    try:
        retried = control.resume(c, rollout_id)
    finally:
        c.close()
    if retried:
        click.echo(f"{rollout_id}: trying {', '.join(retried)} again", err=True)
    click.echo(f"{rollout_id}: running (watch with `orchestrator watch {rollout_id}`)")


@click.command()
@click.argument("rollout_id", callback=rollout_id_arg)
def abort(rollout_id: str) -> None:
    """Halt now: no new box starts; boxes in flight finish and rejoin."""
    c = coordinator()
    try:
        control.abort(c, rollout_id)
    finally:
        c.close()
    click.echo(f"{rollout_id}: aborted")


@click.command("acquire")
@click.argument("box_type", callback=box_type_arg)
@click.option("-m", "--message", required=True, help="Why (shown to whoever tries to deploy).")
def lock_acquire(box_type: str, message: str) -> None:
    """Freeze BOX_TYPE: rollouts, catch-up and boot convergence refuse until `lock release`.

    A rollout already running goes on (abort it if it must stop)."""
    from orchestrator.audit import who
    from orchestrator.engine.freeze import Freezes

    if not check_text("--message", message).strip():
        raise ConfigError("--message is empty: say why deploys are frozen, e.g. -m 'incident 42'")
    c = coordinator()
    try:
        freezes = Freezes(c.client, c.keys)
        made = freezes.acquire(box_type, message, str(who(c.settings.performer)))
        found = freezes.get(box_type)
        holder, _ = c.rollouts.lease.holder(box_type)
    finally:
        c.close()
    if made is None:
        raise ConfigError(f"{box_type} is already {found}; `orchestrator lock release "
                          f"{box_type}` lifts it")
    click.echo(f"{box_type}: {made}")
    if holder:
        click.echo(f"  rollout {holder} is running and goes on; "
                   f"`orchestrator abort {holder}` stops it")


@click.command("release")
@click.argument("box_type", callback=box_type_arg)
def lock_release(box_type: str) -> None:
    """Lift BOX_TYPE's freeze (a running rollout goes on); with no freeze, release its lease
    and run the end-of-rollout clean-up of its holder."""
    from orchestrator.engine.freeze import Freezes

    c = coordinator()
    try:
        lifted = Freezes(c.client, c.keys).lift(box_type)
        if lifted is None:
            holder, final = control.release_lock(c, box_type)
        else:
            holder, _ = c.rollouts.lease.holder(box_type)
    finally:
        c.close()
    if lifted is not None:
        goes_on = f"; rollout {holder} goes on" if holder else ""
        click.echo(f"{box_type}: unfrozen (was {lifted}){goes_on}")
        return
    if holder is None:
        click.echo(f"{box_type}: already free")
    else:
        click.echo(f"{box_type}: released (rollout {holder} {final or 'had already ended'})")
