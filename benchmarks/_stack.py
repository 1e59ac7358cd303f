"""What every benchmark starts for real, from the dev stack (devstack/): redis-server, the
registry, HAProxy, box workers, the CLI, the test images.

Every process started here is stopped by its own PID when the stack closes (also on Ctrl-C or
SIGTERM), and every container carries BENCH_LABEL plus the owner's PID, so clean-up removes
exactly what this run made.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import redis

from devstack import engine, images, stack
from devstack.haproxy import HAProxy, ServerSpec
from devstack.net import box_addresses
from devstack.process import find_binary, wait_for
from devstack.redis import RedisServer
from devstack.registry import Registry
from devstack.workers import BoxWorker, CeleryWorker
from devstack.workers import cli_env as _cli_env
from devstack.workers import worker_env as _worker_env

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

BENCH_LABEL = "orchestrator.bench"
CONTAINER_LABELS = engine.owner_labels(BENCH_LABEL)
APP_PORT = images.APP_PORT  # busybox httpd inside the container
HOST_PORT = 18080  # what every simulated box publishes, each on its own loopback address
BACKEND = "web"
READY_TIMEOUT = 20.0


def need(binary: str) -> str:
    # The venv's own first (ansible-playbook, py-spy), then PATH (redis-server, haproxy).
    return find_binary(binary, "run `bash scripts/setup.sh` (and `.venv/bin/pip install -e "
                               "'.[bench]'`) first")


@dataclass
class CliRun:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    wall: float
    max_rss_mb: float  # the CLI process's peak resident set (getrusage of that child)
    cpu_s: float = 0.0  # its user + system CPU seconds
    started_at: float = 0.0  # when it was forked (time.time()); `wall` runs from there

    def check(self) -> CliRun:
        if self.returncode != 0:
            raise RuntimeError(f"orchestrator {' '.join(self.args)} exited {self.returncode}:\n"
                               f"{self.stderr[-3000:]}\n{self.stdout[-2000:]}")
        return self

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]


class Stack(contextlib.ExitStack):
    """Everything one benchmark runs; `with Stack("name") as s:` stops it all at the end."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.services = stack.Stack(f"orch-bench-{name}")
        self.dir = self.services.dir
        self.registries: list[Registry] = []
        self._docker: docker.DockerClient | None = None
        self.callback(self._cleanup)

    def __enter__(self) -> Stack:
        super().__enter__()
        # SIGTERM ends the run like Ctrl-C: the exit stack still stops every process.
        stack.interrupt_on_sigterm()
        engine.remove_owned(self.docker, BENCH_LABEL, only_orphans=True)
        return self

    @property
    def docker(self) -> docker.DockerClient:
        if self._docker is None:
            self._docker = engine.connect(start=True)
        return self._docker

    def _cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.services.stop()
        if self._docker is not None:
            with contextlib.suppress(Exception):
                engine.remove_owned(self._docker, BENCH_LABEL, only_orphans=False)
            for registry in self.registries:  # gone: so are the references to it
                with contextlib.suppress(Exception):
                    registry.forget_local_refs(self._docker, BENCH_LABEL)
            self._docker.close()
        if os.environ.get("BENCH_KEEP_LOGS"):
            print(f"logs kept in {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- services ------------------------------------------------------------------------

    def redis(self, name: str = "redis") -> RedisServer:
        server = RedisServer(self.dir, name, args=["--maxclients", "10000"])
        self.services.start(server, timeout=READY_TIMEOUT)
        return server

    def registry(self) -> Registry:
        registry = Registry(self.dir)
        self.services.start(registry, timeout=READY_TIMEOUT)
        self.registries.append(registry)
        return registry

    def haproxy(self, servers: list[ServerSpec], check_inter_ms: int = 200) -> HAProxy:
        """One backend `web`; no retries and no redispatch: a request sent to a box that is
        gone fails, so a swap that is not drained shows up as failed requests."""
        hap = HAProxy(self.dir, servers, check_inter_ms=check_inter_ms, maxconn=4000)
        self.services.start(hap, timeout=READY_TIMEOUT)
        return hap

    def worker(self, box_id: str, env: dict[str, str], name: str | None = None,
               loglevel: str = "INFO") -> BoxWorker:
        """`orchestrator-worker` at the systemd unit's log level (INFO: a line per task),
        launched: wait_ready() waits for several at once."""
        return self.services.add(BoxWorker(self.dir, env, name or f"worker-{box_id}",
                                           loglevel=loglevel)).launch()

    def celery_worker(self, app: str, queue: str, node: str, env: dict[str, str]) -> CeleryWorker:
        """A plain Celery worker with the options of `orchestrator-worker` (solo, -E)."""
        worker = CeleryWorker(self.dir, app, queue, node, env=env, events=True)
        self.services.start(worker, timeout=120)
        return worker

    def wait_ready(self, workers: Sequence[BoxWorker], timeout: float = 120.0) -> None:
        for worker in workers:
            worker.wait_ready(timeout)

    # -- the CLI -------------------------------------------------------------------------

    def cli(self, env: dict[str, str], *args: str, timeout: float = 600.0,
            profile_to: Path | None = None) -> CliRun:
        """Run `orchestrator ARGS`; wall time and the process's own peak RSS (wait4).
        With `profile_to`, under pyinstrument (its text report goes there)."""
        argv = [PYTHON, "-m", "orchestrator.entry", *args]  # what the console script runs
        if profile_to is not None:
            argv[1:1] = ["-m", "pyinstrument", "-r", "text", "-o", str(profile_to)]
        n = sum(1 for p in self.dir.glob("cli-*.out"))
        out_path, err_path = self.dir / f"cli-{n}.out", self.dir / f"cli-{n}.err"
        usage_path = self.dir / f"cli-{n}.usage"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            popen = subprocess.Popen([PYTHON, "-S", "-c", FORK_AND_MEASURE, str(usage_path),
                                      *argv], env=env, stdout=out, stderr=err, cwd=ROOT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
            timer = threading.Timer(timeout, lambda: os.killpg(popen.pid, signal.SIGKILL))
            timer.start()
            try:
                popen.wait()
            finally:
                timer.cancel()
        rss_kb, cpu, forked, reaped = (float(x) for x in usage_path.read_text().split())
        return CliRun(list(args), popen.returncode, out_path.read_text(), err_path.read_text(),
                      reaped - forked, rss_kb / 1024, cpu, forked)


# The CLI's own peak RSS and CPU: Linux keeps a process's peak RSS across fork and exec, so a CLI
# forked from this (large) benchmark process reported the benchmark's memory as its own (the
# "202 MB coordinator" at 5,000 boxes was this process holding the run's events). A small
# python forks the CLI instead, and reports its wait4 figures and the CLI's own start and end
# on this machine's clock: "<maxrss KB> <cpu s> <forked at> <reaped at>". The CLI's wall time
# is theirs: this small python's own start (~25 ms) is the benchmark's, not the product's.
FORK_AND_MEASURE = """
import os, signal, sys, time
forked = time.time()
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
reaped = time.time()
with open(sys.argv[1], "w") as f:
    f.write(f"{usage.ru_maxrss} {usage.ru_utime + usage.ru_stime} {forked!r} {reaped!r}")
code = os.waitstatus_to_exitcode(status)
if code < 0:
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
"""

# -- environments -----------------------------------------------------------------------------


def worker_env(box_id: str, box_type: str, broker_url: str, redis_url: str, prefix: str,
               **extra: str) -> dict[str, str]:
    """A box worker's settings: the product's defaults unless a benchmark says otherwise."""
    return _worker_env(box_id, box_type, broker_url, redis_url, prefix, CONTAINER_LABELS,
                       **extra)


def cli_env(boxes_dir: Path, broker_url: str, redis_url: str, prefix: str,
            **extra: str) -> dict[str, str]:
    # The fleet is the live heartbeats: no AWS credentials are looked for (nor IMDS).
    return _cli_env(boxes_dir, broker_url, redis_url, prefix,
                    **{"fleet_source": "heartbeats", **extra})


def build_web_images(client: docker.DockerClient) -> dict[str, str]:
    """orch-bench/web:v1 and :v2, busybox httpd FROM scratch (2 MB): GET / says the version,
    GET /health says ok. The engine caches them across runs."""
    tags = {version: f"orch-bench/web:{version}" for version in ("v1", "v2")}
    for version, tag in tags.items():
        images.build_web_image(client, tag, f"{version}\n", {BENCH_LABEL: "1"})
    return tags


@dataclass
class WebFleet:
    """Benchmarks 1 and 3: one redis (broker db 0, product db 1), the registry holding the web
    images, `boxes` behind HAProxy each on its own address, and the CLI's environment."""

    stack: Stack
    server: RedisServer
    local: dict[str, str]  # version -> local tag
    refs: dict[str, str]  # version -> HOST/bench-web@sha256:...
    ips: dict[str, str]  # box -> address
    hap: HAProxy
    box_type: str = "web"
    prefix: str = "bench:"

    @classmethod
    def start(cls, stack: Stack, boxes: int) -> WebFleet:
        redis_server, registry = stack.redis("redis"), stack.registry()
        local = build_web_images(stack.docker)
        refs = {v: registry.push(stack.docker, tag, "bench-web", v) for v, tag in local.items()}
        names = [f"box{i + 1}" for i in range(boxes)]
        ips = dict(zip(names, box_addresses(boxes), strict=True))
        hap = stack.haproxy([(b, ips[b], HOST_PORT) for b in names])
        (stack.dir / "boxes").mkdir()
        return cls(stack, redis_server, local, refs, ips, hap)

    @property
    def boxes(self) -> list[str]:
        return list(self.ips)

    @property
    def repo(self) -> str:
        return self.refs["v1"].split("@")[0]

    @property
    def env(self) -> dict[str, str]:
        return cli_env(self.stack.dir / "boxes", f"{self.server.url}/0", f"{self.server.url}/1",
                       self.prefix)

    @property
    def product(self) -> redis.Redis[Any]:
        return self.server.client(1)

    def box_yml(self, image: str) -> str:
        return images.web_box_yml(image, HOST_PORT, retries=30)

    def start_workers(self, suffix: str = "") -> list[BoxWorker]:
        """One `orchestrator-worker` per box, told HAProxy's socket; ready."""
        workers = [self.stack.worker(b, worker_env(
            b, self.box_type, f"{self.server.url}/0", f"{self.server.url}/1", self.prefix,
            bind_ip=ip, haproxy_socket=self.hap.socket_path,
            log_root=str(self.stack.dir / b / "logs")), name=f"worker-{b}{suffix}")
            for b, ip in self.ips.items()]
        self.stack.wait_ready(workers)
        return workers

    def deploy(self, image: str, *args: str) -> CliRun:
        """`orchestrator rollout` of `image` (box file written), once every heartbeat reports
        its release: the next rollout plans from them."""
        (self.stack.dir / "boxes" / f"{self.box_type}.yml").write_text(self.box_yml(image))
        run = self.stack.cli(self.env, "rollout", self.box_type, "--json", *args).check()
        with self.product as product:
            wait_heartbeats(product, self.prefix, self.boxes,
                            str(run.json_lines()[-1]["summary"]["release"]))
        return run


def fleet_arguments(doc: str | None, boxes: int, batch: int,
                    processes: int) -> argparse.ArgumentParser:
    """The options of the no-op fleets (scale, profile): how many boxes, how many at once,
    and how many worker processes serve them (boxes dealt round-robin)."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--boxes", type=int, default=boxes)
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--processes", type=int, default=processes, help="worker processes")
    return parser


def wait_heartbeats(product: redis.Redis[Any], prefix: str, boxes: Sequence[str],
                    release: str, timeout: float = 30.0) -> None:
    """Until every box's heartbeat reports `release` for each app: a rollout plans from them."""
    def reported() -> bool:
        for box in boxes:
            raw = product.get(f"{prefix}box:{box}")
            apps = json.loads(raw)["apps"] if raw else {}
            if not apps or any(a["release"] != release for a in apps.values()):
                return False
        return True

    wait_for(reported, f"heartbeats reporting {release}", timeout=timeout, interval=0.1)

