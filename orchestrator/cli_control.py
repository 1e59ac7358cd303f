"""Commands that act on a running rollout: pause, resume, abort, lock release."""

from __future__ import annotations

import click

from orchestrator import control
from orchestrator.cli_args import box_type_arg
from orchestrator.cli_rollout import coordinator


@click.command()
@click.argument("rollout_id")
def pause(rollout_id: str) -> None:
    """No new box starts; boxes in flight finish; the lease is held without expiry."""
    c = coordinator()
    try:
        control.pause(c, rollout_id)
    finally:
        c.close()
    click.echo(f"{rollout_id}: paused (resume with `orchestrator resume {rollout_id}`)")


@click.command()
@click.argument("rollout_id")
def resume(rollout_id: str) -> None:
    """Start boxes again (after pause, or after a halt once the cause is fixed)."""
    c = coordinator()
    try:
        retried = control.resume(c, rollout_id)
    finally:
        c.close()
    if retried:
        click.echo(f"{rollout_id}: trying {', '.join(retried)} again", err=True)
    click.echo(f"{rollout_id}: running (watch with `orchestrator watch {rollout_id}`)")


@click.command()
@click.argument("rollout_id")
def abort(rollout_id: str) -> None:
    """Halt now: no new box starts; boxes in flight finish and rejoin."""
    c = coordinator()
    try:
        control.abort(c, rollout_id)
    finally:
        c.close()
    click.echo(f"{rollout_id}: aborted")


@click.command("release")
@click.argument("box_type", callback=box_type_arg)
def lock_release(box_type: str) -> None:
    """Release BOX_TYPE's lease and run the end-of-rollout clean-up of its holder."""
    c = coordinator()
    try:
        holder, final = control.release_lock(c, box_type)
    finally:
        c.close()
    if holder is None:
        click.echo(f"{box_type}: already free")
    else:
        click.echo(f"{box_type}: released (rollout {holder} {final or 'had already ended'})")
