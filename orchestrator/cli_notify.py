"""`orchestrator notify`: the process that handles every rollout's lifecycle events once."""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING

import click

from orchestrator.cli_args import seconds_arg
from orchestrator.cli_rollout import coordinator
from orchestrator.notifier import Deliver, Lifecycle, Notifier, live_notifier
from schemas.fleet import FleetSettings

if TYPE_CHECKING:
    from orchestrator.coordinator import Coordinator
    from schemas.rollout import Rollout


def make_notifier(c: Coordinator) -> Notifier:
    from orchestrator.engine.secrets import resolve_secret, ssm_fetcher
    from orchestrator.hooks import hooks_dir, run_hook

    s = c.settings
    ssm = ssm_fetcher(s.aws_region, s.aws_endpoint_url)

    def sns() -> object:
        # boto3 only when an SNS notification is sent: an attached `rollout` notifies its own
        # rollouts, and most fleets have none (its import alone is ~30 MB and 0.3 s).
        from orchestrator.engine.aws import aws_client

        return aws_client("sns", s.aws_region, s.aws_endpoint_url)

    deliver = Deliver(lambda n: resolve_secret(n.webhook, ssm) if n.webhook else "", sns)
    folder = hooks_dir(s.boxes_dir, s.hooks_dir)

    def hooks(ev: Lifecycle, r: Rollout | None) -> None:
        if ev.event == "started":
            return
        values = {"rollout_id": ev.rollout, "box_type": ev.box_type, "outcome": ev.event,
                  "release": r.release_id if r else "", "reason": r.reason if r else "",
                  "performer": (r.performer or r.created_by) if r else ""}
        for name in ("post-rollout", "on-halt") if ev.event == "halted" else ("post-rollout",):
            try:
                run = run_hook(folder, name, values, s.hook_timeout)
            except Exception as exc:  # a hook's failure is an event, never the notifier's end
                c.rollouts.events.emit(ev.box_type, rollout=ev.rollout, step=f"hook.{name}",
                                       phase="end", outcome="failed", reason=str(exc))
                continue
            if run is not None:
                c.rollouts.events.emit(
                    ev.box_type, rollout=ev.rollout, step=f"hook.{name}", phase="end",
                    outcome="ok" if run.code == 0 else "failed",
                    reason=f"exit {run.code}: {run.output.strip()[-300:]}")

    return Notifier(c.client, c.keys, c.fleet_settings() or FleetSettings(), deliver, hooks)


def notify_own(c: Coordinator, rollouts: list[Rollout]) -> None:
    """An attached `rollout` does a notifier's work for its own rollouts when none runs."""
    if live_notifier(c.client, c.keys) or not rollouts:
        return
    make_notifier(c).own([(r, c.rollouts.status(r.id)) for r in rollouts])


@click.command()
@click.option("--interval", default="1", show_default=True, metavar="SECONDS", callback=seconds_arg,
              help="Seconds between reads (at most 86400).")
def notify(interval: float) -> None:
    """Follow every box type's rollouts; for each lifecycle event (started, halted, succeeded,
    failed, rolled-back, aborted, abandoned) run hooks/post-rollout and hooks/on-halt and send
    fleet.yml's notifications, once, however many notifiers run. Stop with Ctrl-C or SIGTERM."""
    c = coordinator()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    n = make_notifier(c)
    click.echo(f"{n.ident}: following every box type's rollouts", err=True)
    try:
        n.run(stopping.is_set, interval)
    except KeyboardInterrupt:
        pass
    finally:
        c.close()
    click.echo(f"{n.ident}: stopped", err=True)
