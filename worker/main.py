"""`orchestrator-worker`: the box-resident Celery worker (real in the worker issue)."""

from __future__ import annotations

import sys

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Run the box worker: consume this box's queue `box.<id>` and run deploy steps.

    Settings come from ORCHESTRATOR_* environment variables (see README).
    """
    raise click.ClickException("the worker is not implemented yet")


def main() -> int:
    cli.main(prog_name="orchestrator-worker")
    return 0


if __name__ == "__main__":
    sys.exit(main())
