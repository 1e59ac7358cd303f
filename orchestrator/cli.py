"""The `orchestrator` command line; one top-level handler turns our errors into exit codes."""

from __future__ import annotations

import contextlib
import gc
import importlib
import io
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import click
import kombu.exceptions
import redis

from orchestrator.cli_args import log_level_arg
from orchestrator.config import find_fleet, load_box, load_fleet
from orchestrator.engine.version import version
from orchestrator.errors import (
    ConfigError,
    InvalidFile,
    OrchestratorError,
    ReaderGone,
    ServiceUnavailable,
)
from orchestrator.output import GuardedStdout
from schemas.boxfile import BoxSpec
from schemas.checks import app_order
from schemas.fleet import FleetSettings
from schemas.hostpaths import default_warnings
from schemas.redaction import redact


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


# Each command's module is imported only when that command runs (or help lists it): `rollout`
# loads neither boto3 (the `boxtype` group) nor the notifier, status or metrics code.
_LAZY = {
    "rollout": "orchestrator.cli_rollout:rollout",
    "rollback": "orchestrator.cli_rollout:rollback",
    "repair": "orchestrator.cli_rollout:repair",
    "plan": "orchestrator.cli_rollout:plan",
    "watch": "orchestrator.cli_rollout:watch_cmd",
    "pause": "orchestrator.cli_control:pause",
    "resume": "orchestrator.cli_control:resume",
    "abort": "orchestrator.cli_control:abort",
    "status": "orchestrator.cli_read:status",
    "boxes": "orchestrator.cli_read:boxes",
    "history": "orchestrator.cli_read:history",
    "boxtype": "orchestrator.cli_boxtype:boxtype",
    "keys": "orchestrator.cli_keys:keys",
    "notify": "orchestrator.cli_notify:notify",
    "metrics": "orchestrator.cli_metrics:metrics",
}
_LAZY_LOCK = {
    "status": "orchestrator.cli_read:lock_status",
    "release": "orchestrator.cli_control:lock_release",
    "acquire": "orchestrator.cli_control:lock_acquire",
}


@contextlib.contextmanager
def _collector_paused(freeze: bool) -> Iterator[None]:
    """With `freeze`, the collector waits while a command's modules are imported, and what
    they made is frozen: a full pass over Celery's and kombu's objects cost `rollout` 16-19 ms
    at import (measured). Only the process's entry point freezes (`run`): a test calling
    `main` keeps its collector as it was."""
    if not freeze or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


class LazyGroup(click.Group):
    """A group whose commands (name -> "module:attribute") are imported on first use."""

    lazy: dict[str, str] = {}
    freeze_imports = False  # set by `run`: the process is the CLI's own

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, _, attr = self.lazy[cmd_name].partition(":")
            with _collector_paused(self.freeze_imports):
                command = getattr(importlib.import_module(module), attr)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


class _Top(LazyGroup):
    lazy = _LAZY


class _Lock(LazyGroup):
    lazy = _LAZY_LOCK


@click.group(cls=_Top, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version(), "--version", prog_name="orchestrator",
                      message="%(prog)s %(version)s")
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks of unexpected errors.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    envvar="ORCHESTRATOR_LOG_FORMAT",
    help="Log lines on stderr: text, or json (one object per line: time, level, box, "
    "rollout, step, message).",
)
@click.option(
    "--log-level", default="WARNING", show_default=True, envvar="ORCHESTRATOR_LOG_LEVEL",
    callback=log_level_arg, help="The lowest level logged: DEBUG, INFO, WARNING, ERROR or "
    "CRITICAL.",
)
@click.pass_context
def cli(ctx: click.Context, verbose: bool, log_format: str, log_level: str) -> None:
    """Rolling Docker deploys across fleets of boxes.

    Exit codes: 0 ok, 1 a deploy failed or halted (or status found a problem), 2 bad input
    (nothing was changed), 3 the lease is held by another rollout, 4 Redis, Docker, a
    registry or AWS did not answer, 130 interrupted.
    """
    from orchestrator.engine.logs import configure

    configure(log_format, log_level)
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
        fleet_file = fleet_path
        try:
            fleet = explicit
            if fleet is None and (fleet_file := find_fleet(path)) is not None:
                fleet = load_fleet(fleet_file)
            loaded = load_box(path, fleet)
        except InvalidFile as exc:
            failed.append(exc)
            show_error(exc)
            continue
        click.echo(summary(path, loaded.spec))
        _warn_host_paths(path, loaded.spec, fleet, fleet_file)
    if failed:
        n = sum(len(f.problems) for f in failed)
        raise ConfigError(
            f"{n} problem{'s' if n != 1 else ''} in {len(failed)} file(s); nothing was changed"
        )


def _warn_host_paths(
    path: Path, spec: BoxSpec, fleet: FleetSettings | None, fleet_file: Path | None
) -> None:
    """Warn (exit 0: a box's allow-list may open them) about paths boxes refuse by default."""
    services = {n: fleet.services[n] for n in spec.services if n in fleet.services} if fleet else {}
    for line in default_warnings(
        str(path),
        spec.apps,
        str(fleet_file) if fleet_file else None,
        services,
        fleet.registries if fleet else (),
    ):
        show(f"WARNING: {line}")


@cli.command()
@click.option(
    "--fleet", "fleet_schema", is_flag=True, help="Print the schema of fleet.yml instead."
)
def schema(fleet_schema: bool) -> None:
    """Print the JSON Schema of box.yml (for editors and CI linters)."""
    model = FleetSettings if fleet_schema else BoxSpec
    click.echo(json.dumps(model.model_json_schema(), indent=2))


@cli.group(cls=_Lock)
def lock() -> None:
    """Who holds a box type's lease, deploy freezes (acquire/release), releasing by hand."""


def show(text: str) -> None:
    """Every error and warning a command shows goes out here, through the one mask: a
    message may quote what a person wrote, and that may hold a password, a webhook or a key."""
    click.echo(redact(text), err=True)


def show_error(exc: Exception) -> None:
    show(f"ERROR ({type(exc).__name__}): {exc}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: one handler prints `ERROR (Class): message`; traceback only with -v."""
    args = sys.argv[1:] if argv is None else argv
    verbose = "-v" in args or "--verbose" in args
    real = sys.stdout
    sys.stdout = GuardedStdout(real)
    try:
        code = cli.main(args=args, prog_name="orchestrator", standalone_mode=False)
    except ReaderGone as exc:  # `| head` had enough: nothing to say, to no one
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.ClickException as exc:  # usage errors: click words them (usage, hint)
        text = io.StringIO()
        exc.show(file=text)
        show(text.getvalue().rstrip("\n"))
        return 2
    except OrchestratorError as exc:
        if verbose:
            raise
        show_error(exc)
        return exc.exit_code
    except (redis.RedisError, kombu.exceptions.OperationalError) as exc:
        # The coordinator's one boundary for a Redis lost mid-command (retries are spent).
        if verbose:
            raise
        lost = ServiceUnavailable(f"Redis does not answer: {exc}")
        show_error(lost)
        return lost.exit_code
    finally:
        sys.stdout = real
    return code if isinstance(code, int) else 0  # ctx.exit(n): e.g. `plan`'s "changes present"


def run() -> NoReturn:
    """The `orchestrator` command: `main`, then out at once. Tearing down the interpreter
    (every module of pydantic, Celery, kombu and redis-py freed one by one) took 0.14-0.24 s
    after the command had finished, measured: a tenth of a three-box rollout. Nothing is
    left to do by then (no thread of ours runs, every connection is closed), so the streams
    are flushed and the process exits with main's code."""
    gc.freeze()  # the CLI's modules live as long as the process: no pass looks at them again
    LazyGroup.freeze_imports = True
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`| head`): code stands
            if stream is not None:  # None: the shell closed it (`>&-`)
                stream.flush()
    logging.shutdown()
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(code)  # a profiler or coverage writes its report at the interpreter's exit
    os._exit(code)


if __name__ == "__main__":
    run()
