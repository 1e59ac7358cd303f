"""`orchestrator-worker`: the box's Celery worker on its own queue `box.<id>`."""

from __future__ import annotations

import logging
import socket
import sys

import click
from celery import Celery
from pydantic import ValidationError

from orchestrator.engine.celery_app import ensure_routes, make_celery
from orchestrator.engine.events import Events
from orchestrator.engine.journal import Journal
from orchestrator.engine.redisconn import connect
from orchestrator.engine.rollouts import Rollouts
from orchestrator.engine.version import version
from orchestrator.errors import OrchestratorError, ServiceUnavailable
from schemas.contract import Keys, queue_for
from worker.facts import BoxEnv, ContainerRuntime
from worker.fence import Fault
from worker.heartbeat import HeartbeatThread
from worker.identity import resolve_identity
from worker.inspect import Inspector
from worker.limits import check_release
from worker.recovery import recover, settle
from worker.releases import BoxReleases
from worker.runtime import DockerRuntime
from worker.runtime_noop import NoopRuntime
from worker.secrets import ssm_fetcher
from worker.services import ServiceReconciler, ensure_services
from worker.settings import WorkerSettings
from worker.steps.protocol import StepContext
from worker.tasks import register_tasks
from worker.trust import release_refusal

log = logging.getLogger("orchestrator.worker")


def build_context(settings: WorkerSettings, runtime: ContainerRuntime) -> StepContext:
    client = connect(settings.redis_url, tls=settings.tls())
    keys = Keys(settings.key_prefix)
    ssm = ssm_fetcher(settings.aws_region, settings.aws_endpoint_url)
    envs: dict[str, BoxEnv] = {}

    def box_env(box_id: str, box_type: str) -> BoxEnv:
        if box_id not in envs:
            envs[box_id] = BoxEnv(
                box_id=box_id,
                box_type=box_type,
                runtime=runtime,
                log_root=settings.log_root,
                bind_ip=settings.bind_ip,
                health_host=settings.bind_ip or settings.health_host,
                hostname=settings.hostname or socket.gethostname(),
                settle_time=settings.settle_time,
                ssm=ssm,
                extra_labels=settings.extra_labels,
            )
        return envs[box_id]

    return StepContext(
        settings=settings,
        redis=client,
        keys=keys,
        journal=Journal(client, keys),
        releases=BoxReleases(client, keys, settings.state_dir),
        events=Events(client, keys),
        make_env=box_env,
        fault=Fault(settings.fault_point),
    )


def boot(ctx: StepContext, box_id: str, box_type: str) -> None:
    """Converge an empty box (on start, and on every reconcile tick until it has a release)."""
    from worker.boot import converge_on_boot

    with ctx.services_lock:
        try:
            said = converge_on_boot(ctx, box_id, box_type)
        except ServiceUnavailable as exc:  # e.g. no replica acknowledged its fresh token
            log.warning("boot: not now (%s); tried again on the next reconcile tick", exc)
            return
    if not said.startswith("apps already"):
        log.warning("boot: %s", said)


def services_tick(ctx: StepContext, box_id: str, box_type: str) -> None:
    boot(ctx, box_id, box_type)
    with ctx.services_lock:
        raw = ctx.redis.get(ctx.keys.services(box_id))
        if raw is None:
            return
        rid, _, token = raw.decode().partition(" ")
        release = ctx.releases.get(rid)
        why = release_refusal(ctx, release)
        if why:  # `services:<box>` is in Redis: its release is verified like any other
            log.error("services of %s refused: %s", box_id, why)
            return
        # `services:<box>` is only a pointer in Redis: the box's limits hold here as in a step.
        check_release(release, ctx.settings)
        changed = ensure_services(ctx.box_env(box_id, box_type), release, token)
    if changed:
        log.warning("services reconciled: %s", ", ".join(changed))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version(), "--version", prog_name="orchestrator-worker",
                      message="%(prog)s %(version)s")
@click.option("--loglevel", default="INFO", show_default=True, help="Celery log level.")
@click.option(
    "--leave-lb",
    is_flag=True,
    help="Leave this box's load balancers (waiting out the drain) and exit: the systemd "
    "unit's ExecStop, so a box scaled in stops serving before it stops.",
)
def cli(loglevel: str, leave_lb: bool) -> None:
    """Run the box worker: consume this box's queue `box.<id>` and run deploy steps.

    Every setting is an ORCHESTRATOR_* environment variable (or a line of
    /etc/orchestrator/worker.env); README.md lists them all.
    """
    logging.basicConfig(level=loglevel.upper(), format="%(asctime)s %(name)s %(message)s")
    try:
        settings = WorkerSettings()
    except ValidationError as exc:
        raise click.UsageError(f"bad worker settings: {exc}") from None
    box_id, box_type = resolve_identity(settings.box_id, settings.box_type, settings.imds_url)
    # noop: benchmarks only, the orchestration without containers.
    runtime = NoopRuntime() if settings.runtime == "noop" else DockerRuntime()
    ctx = build_context(settings, runtime)
    ctx.box_type = box_type
    if settings.insecure_unsigned:
        log.error("INSECURE: ORCHESTRATOR_INSECURE_UNSIGNED is set: this box acts on unsigned "
                  "releases and orders; anyone who can write Redis can run anything here")
    if leave_lb:
        from worker.drain import leave_all

        left = leave_all(ctx, box_id, box_type)
        click.echo(f"{box_id}: left {', '.join(left) or 'no load balancer'}")
        return
    app = celery_app(ctx)
    for served in (box_id, *settings.extra_box_ids):
        recover(ctx, served, box_type)
    boot(ctx, box_id, box_type)
    heartbeat, reconciler = start_threads(ctx, app, runtime, box_id, box_type)
    app.worker_main(worker_argv(settings, loglevel, box_id))
    heartbeat.stop()
    reconciler.stop()


def celery_app(ctx: StepContext) -> Celery:
    """The Celery app with every task registered, and the rollout engine the tasks drive."""
    settings = ctx.settings
    app = make_celery(
        settings.broker_url,
        visibility_timeout=settings.visibility_timeout,
        restore_interval=settings.restore_interval,
        tls=settings.tls(),
    )
    ctx.rollouts = Rollouts(
        ctx.redis,
        ctx.keys,
        app,
        lease_ttl=settings.lease_ttl,
        slot_ttl=settings.slot_ttl,
        aws=(settings.aws_region, settings.aws_endpoint_url),
    )
    # No remote control: a broadcast (`celery control shutdown`) reaches no box. Task
    # events (-E) still reach Flower; they do not need it.
    app.conf.worker_enable_remote_control = False
    register_tasks(app, lambda: ctx)
    return app


def tick(ctx: StepContext, app: Celery, box_ids: list[str], box_type: str) -> None:
    """After each heartbeat: routes a wiped broker forgot, and each box's unfinished record."""
    try:
        remade = ensure_routes(app, [queue_for(b) for b in box_ids])
    except Exception as exc:  # the broker is down: its own reconnection handles it
        log.debug("routes not checked: %s", exc)
    else:
        if remade:
            log.warning("the broker had lost the routes of %s: declared again", ", ".join(remade))
    for served in box_ids:
        settle(ctx, served, box_type)


def start_threads(
    ctx: StepContext,
    app: Celery,
    runtime: DockerRuntime | NoopRuntime,
    box_id: str,
    box_type: str,
) -> tuple[HeartbeatThread, ServiceReconciler]:
    """The heartbeat (what runs here, the running step's slot) and the services reconciler."""
    settings = ctx.settings
    box_ids = [box_id, *settings.extra_box_ids]
    heartbeat = HeartbeatThread(
        ctx.redis,
        ctx.keys,
        box_id,
        box_type,
        runtime,
        ctx.busy,
        settings.heartbeat_interval,
        settings.heartbeat_ttl,
        runtime.version,
        rollouts=ctx.rollouts,
        slot_ttl=settings.slot_ttl,
        bind_ip=settings.bind_ip,
        extra_box_ids=settings.extra_box_ids,
        on_beat=lambda: tick(ctx, app, box_ids, box_type),
        inspect=Inspector(ctx, probe=settings.runtime == "docker"),
    )
    heartbeat.start()
    reconciler = ServiceReconciler(
        settings.services_interval, lambda: services_tick(ctx, box_id, box_type)
    )
    reconciler.start()
    return heartbeat, reconciler


def worker_argv(settings: WorkerSettings, loglevel: str, box_id: str) -> list[str]:
    """Celery's worker arguments: this box's queues (and those it serves for others)."""
    queues = [queue_for(b) for b in (box_id, *settings.extra_box_ids)]
    return [
        "worker",
        f"--loglevel={loglevel}",
        "-Q",
        ",".join(queues),
        "-n",
        f"box-{box_id}@{socket.gethostname()}",
        "-c",
        str(settings.concurrency),
        "-P",
        "solo" if settings.concurrency == 1 else "threads",
        "-E",
        "--without-gossip",
        "--without-mingle",
    ]


def main() -> int:
    try:
        cli.main(prog_name="orchestrator-worker", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return 2
    except OrchestratorError as exc:
        click.echo(f"ERROR ({type(exc).__name__}): {exc}", err=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
