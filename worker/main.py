"""`orchestrator-worker`: the box's Celery worker on its own queue `box.<id>`."""

from __future__ import annotations

import logging
import re
import socket
import sys
from collections.abc import Callable

import click
from celery import Celery
from pydantic import ValidationError
from pydantic_settings import SettingsError

from orchestrator.engine import logs
from orchestrator.engine.bake import GateSources
from orchestrator.engine.bake import tick as bake_tick
from orchestrator.engine.celery_app import ensure_routes, make_celery
from orchestrator.engine.ecr import EcrTokens
from orchestrator.engine.events import Events
from orchestrator.engine.journal import Journal
from orchestrator.engine.redisconn import connect
from orchestrator.engine.rollouts import Rollouts
from orchestrator.engine.version import version
from orchestrator.errors import OrchestratorError
from schemas.contract import Keys, queue_for
from worker import logging_setup
from worker.facts import BoxEnv, ContainerRuntime
from worker.fence import Fault
from worker.heartbeat import HeartbeatThread
from worker.identity import resolve_identity
from worker.inspect import Inspector
from worker.limits import check_release
from worker.realign import Realigner
from worker.recovery import recover, settle
from worker.releases import BoxReleases
from worker.retire import tidy_retired
from worker.runtime import DockerRuntime
from worker.runtime_noop import NoopRuntime
from worker.secrets import ssm_fetcher
from worker.services import ServiceReconciler, ensure_services
from worker.settings import WorkerSettings
from worker.stage import tidy
from worker.steps.protocol import StepContext
from worker.tasks import register_tasks
from worker.trust import release_refusal

log = logging.getLogger("orchestrator.worker")
CATCH_UP_BEATS = 4  # the catch-up looks every this many heartbeat intervals


def build_context(settings: WorkerSettings, runtime: ContainerRuntime) -> StepContext:
    client = connect(settings.redis_url, tls=settings.tls())
    keys = Keys(settings.key_prefix)
    ssm = ssm_fetcher(settings.aws_region, settings.aws_endpoint_url)
    ecr = EcrTokens(settings.aws_endpoint_url)  # one token cache for every pull of this worker
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
                ecr=ecr.credentials,
                state_dir=settings.state_dir,
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


def catch_up_all(
    ctx: StepContext, box_ids: list[str], box_type: str, notes: dict[str, str]
) -> None:
    """Each served box behind its type's current release (or fresh) starts its own catch-up;
    `notes` keeps why not, for the heartbeat."""
    from worker.catchup import catch_up

    for served in box_ids:
        try:
            said = catch_up(ctx, served, box_type)
        except Exception as exc:  # Redis or Docker away: the next tick decides again
            said = f"not decided: {exc}"
        if said is None:  # a step or a rollout is under way: nothing to say until it ends
            # (a word from before it, "no successful release yet", was shown after its end)
            notes.pop(served, None)
            continue
        if said and said != notes.get(served):
            log.warning("catch-up of %s: %s", served, said)
        notes[served] = said


def services_tick(ctx: StepContext, box_id: str, box_type: str) -> None:
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
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    envvar="ORCHESTRATOR_LOG_FORMAT",
    help="json: one object per line (time, level, box, rollout, step, message).",
)
@click.option(
    "--leave-lb",
    is_flag=True,
    help="Leave this box's load balancers (waiting out the drain) and exit: the systemd "
    "unit's ExecStop, so a box scaled in stops serving before it stops.",
)
def cli(loglevel: str, log_format: str, leave_lb: bool) -> None:
    """Run the box worker: consume this box's queue `box.<id>` and run deploy steps.

    Every setting is an ORCHESTRATOR_* environment variable (or a line of
    /etc/orchestrator/worker.env); README.md lists them all.
    """
    logs.configure(log_format, loglevel)
    try:
        settings = WorkerSettings()
    except ValidationError as exc:
        raise click.UsageError(settings_error(exc)) from None
    except SettingsError as exc:
        raise click.UsageError(json_setting_error(exc)) from None
    if problem := settings.tls_file_problem():  # before Redis: a missing CA is no outage
        raise click.UsageError(f"bad worker setting ORCHESTRATOR_{problem[0]}: {problem[1]}; "
                               "fix or unset it")
    box_id, box_type = resolve_identity(settings.box_id, settings.box_type, settings.imds_url)
    logging_setup.setup(log_format, loglevel, box_id)
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
    beat = serve_metrics(settings, runtime, box_id)
    served = [box_id, *settings.extra_box_ids]
    for one in served:
        recover(ctx, one, box_type)
        ctx.record(one).leaving(False)  # started again: a member of its type once more
    notes: dict[str, str] = {}
    catch_up_all(ctx, served, box_type, notes)  # its chain runs once the worker consumes
    threads = start_threads(ctx, app, runtime, box_id, box_type, notes, beat)
    app.worker_main(worker_argv(settings, loglevel, box_id))
    for thread in threads:
        thread.stop()
    from worker.taskevents import sender_for

    sender_for(app).flush(2.0)  # the last steps' task events, for monitors: briefly


def serve_metrics(
    settings: WorkerSettings, runtime: DockerRuntime | NoopRuntime, box_id: str
) -> Callable[[], None]:
    """This worker's own /metrics when ORCHESTRATOR_METRICS_LISTEN is set; the heartbeat's
    hook (a no-op without it)."""
    if not settings.metrics_listen:
        return lambda: None
    from celery import signals

    from worker.metrics import WorkerMetrics

    metrics = WorkerMetrics(runtime, [box_id, *settings.extra_box_ids])
    metrics.serve(settings.metrics_listen)
    signals.task_postrun.connect(metrics.count, weak=False)
    return metrics.beat


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


def tick(ctx: StepContext, app: Celery, box_ids: list[str], box_type: str,
         realign: Callable[[str, str], None]) -> None:
    """After each heartbeat: routes a wiped broker forgot, each box's unfinished record, and
    its start-first members where its load balancer lost them."""
    try:
        remade = ensure_routes(app, [queue_for(b) for b in box_ids])
    except Exception as exc:  # the broker is down: its own reconnection handles it
        log.debug("routes not checked: %s", exc)
    else:
        if remade:
            log.warning("the broker had lost the routes of %s: declared again", ", ".join(remade))
    for served in box_ids:
        settle(ctx, served, box_type)
        tidy(ctx, served, box_type)  # staged for a rollout that ended, or a turn that passed
        tidy_retired(ctx, served, box_type)  # an old start-first version its chain left
        realign(served, box_type)  # an HAProxy reload put a member back on its configured port
    if ctx.rollouts is not None:
        # A bake has nothing in flight: the box type's workers judge its gates and end it.
        settings = ctx.settings
        src = GateSources(settings.haproxy_socket, (settings.aws_region, settings.aws_endpoint_url))
        if said := bake_tick(ctx.rollouts, box_type, src):
            log.warning("%s", said)


def on_beat(
    ctx: StepContext, app: Celery, box_ids: list[str], box_type: str, beat: Callable[[], None],
    realign: Callable[[str, str], None],
) -> None:
    beat()
    tick(ctx, app, box_ids, box_type, realign)


def start_threads(
    ctx: StepContext,
    app: Celery,
    runtime: DockerRuntime | NoopRuntime,
    box_id: str,
    box_type: str,
    notes: dict[str, str],
    beat: Callable[[], None] = lambda: None,
) -> tuple[HeartbeatThread, ServiceReconciler, ServiceReconciler]:
    """The heartbeat (what runs here, the running step's slot), the services reconciler and the
    catch-up."""
    settings = ctx.settings
    box_ids = [box_id, *settings.extra_box_ids]
    realign = Realigner(ctx)
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
        on_beat=lambda: on_beat(ctx, app, box_ids, box_type, beat, realign),
        inspect=Inspector(ctx, probe=settings.runtime == "docker"),
        leaving=lambda b: ctx.record(b).read().draining,
        catch_up=lambda b: notes.get(b, ""),
    )
    heartbeat.start()
    reconciler = ServiceReconciler(
        settings.services_interval, lambda: services_tick(ctx, box_id, box_type)
    )
    reconciler.start()
    # Its own thread, at the heartbeat's pace: a slow Docker or Redis never delays a beat.
    catching = ServiceReconciler(
        settings.heartbeat_interval * CATCH_UP_BEATS,
        lambda: catch_up_all(ctx, box_ids, box_type, notes),
        name="catch-up",
    )
    catching.start()
    return heartbeat, reconciler, catching


def settings_error(exc: ValidationError) -> str:
    """A bad setting in one line, named as the operator sets it (the variable, or the line of
    /etc/orchestrator/worker.env), as the coordinator's CLI names its own."""
    first = exc.errors()[0]
    field = "_".join(str(p) for p in first["loc"][:1]).upper()
    msg = str(first["msg"]).removeprefix("Value error, ")
    where = f"setting ORCHESTRATOR_{field}" if field else "settings"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"bad worker {where}: {msg}{more}; fix or unset it"


def json_setting_error(exc: SettingsError) -> str:
    """A JSON setting (a list or an object) that is not JSON, named as the operator sets it;
    pydantic-settings names only the field, in its message."""
    field = re.search(r'field "(\w+)"', str(exc))
    where = f"setting ORCHESTRATOR_{field.group(1).upper()}" if field else "settings"
    why = exc.__cause__ or exc
    return (f"bad worker {where}: bad JSON ({why}); write e.g. [\"a\", \"b\"] or "
            '{"k": "v"}, or unset it')


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
