"""The CLI imports only what a command needs: `rollout` (and what it runs) loads no boto3."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

PROBE = """
import sys
import click
from orchestrator.cli import cli
ctx = click.Context(cli)
assert cli.get_command(ctx, "{command}") is not None
import orchestrator.coordinator, orchestrator.preflight, orchestrator.watch  # what it runs
from types import SimpleNamespace
from orchestrator.cli_notify import make_notifier  # an attached rollout notifies its own
from orchestrator.settings import CoordinatorSettings
from schemas.contract import Keys
make_notifier(SimpleNamespace(settings=CoordinatorSettings(), client=None, keys=Keys(""),
                              fleet_settings=lambda: None, rollouts=None))
print(sorted(m for m in ("boto3", "botocore", "orchestrator.cli_boxtype") if m in sys.modules))
"""


def loaded(command: str) -> str:
    out = subprocess.run([sys.executable, "-c", PROBE.format(command=command)],
                         capture_output=True, text=True, timeout=120, check=True)
    return out.stdout.strip()


@pytest.mark.parametrize("command", ["rollout", "watch", "status", "abort"])
def test_a_command_outside_aws_loads_no_boto3(command: str) -> None:
    assert loaded(command) == "[]"


def test_the_boxtype_group_still_loads_it_when_asked() -> None:
    assert "boto3" in loaded("boxtype")


def test_help_lists_every_command_without_importing_them_all_first() -> None:
    from click.testing import CliRunner

    from orchestrator.cli import cli

    out = CliRunner().invoke(cli, ["--help"]).output
    for name in ("rollout", "rollback", "repair", "plan", "watch", "pause", "resume", "abort",
                 "status", "boxes", "history", "boxtype", "lock", "keys", "notify", "metrics",
                 "validate", "schema"):
        assert f"  {name} " in out, name


ENTRY_PROBE = """
import gc, sys
from orchestrator import entry, cli
sys.argv = ["orchestrator", "{command}", "--help"]
cli.os._exit = lambda code: (print(code, gc.get_freeze_count() > 0, gc.isenabled()),
                             sys.stdout.flush(), sys.exit(0))
entry.run()
"""


def test_the_entry_point_freezes_its_imports_and_collects_again_after_them() -> None:
    # The console script's process: what the imports made is frozen (the collector skips it),
    # and the collector runs again for the command itself (a watch may last hours).
    out = subprocess.run([sys.executable, "-c", ENTRY_PROBE.format(command="rollout")],
                         capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "0 True True", out


def test_a_caller_of_main_keeps_its_collector_as_it_was() -> None:
    import gc

    from orchestrator.cli import cli, main

    cli.commands.pop("plan", None)  # imported again: the lazy import runs
    frozen, enabled = gc.get_freeze_count(), gc.isenabled()
    assert main(["plan", "--help"]) == 0
    assert (gc.get_freeze_count(), gc.isenabled()) == (frozen, enabled)
