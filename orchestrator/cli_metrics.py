"""`orchestrator metrics`: the Prometheus exporter, a long-running process."""

from __future__ import annotations

import contextlib
import signal
import threading

import click

from orchestrator.cli_args import box_types_arg, listen_arg


@click.command()
@click.option("--listen", default="127.0.0.1:9464", show_default=True, metavar="HOST:PORT",
              callback=listen_arg, help="Where /metrics is served.")
@click.option("--box-type", "box_types", multiple=True, callback=box_types_arg,
              help="Export these box types only (default: every box type with a history, "
              "found once a minute).")
def metrics(listen: str, box_types: tuple[str, ...]) -> None:
    """Serve Prometheus metrics of rollouts, steps, boxes and leases until stopped."""
    from orchestrator.engine.redisconn import connect
    from orchestrator.metrics import serve
    from orchestrator.settings import load_settings
    from schemas.contract import Keys

    host, _, port = listen.rpartition(":")
    settings = load_settings()  # a bad setting is one line, exit 2, not a traceback
    client = connect(settings.redis_url, wait=settings.redis_wait, tls=settings.tls())
    server, _ = serve(client, Keys(settings.key_prefix), listen, box_types)
    click.echo(f"metrics: serving http://{host or '0.0.0.0'}:{port}/metrics", err=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    server.shutdown()
