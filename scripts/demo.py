"""The demo: a real rolling deploy of a small web app across three simulated boxes.

Run it through `bash scripts/demo.sh` (which installs what is missing first). Everything runs
on this machine, on loopback addresses, on ports chosen now, under one temp directory:

  redis-server, a moto server (AWS: the app's SSM parameter), Debian's docker-registry,
  HAProxy (backend `web`, one server per box), Flower (basic auth) and three
  `orchestrator-worker` processes, one per simulated box, each publishing on its own
  127.x.y.N address.

It builds demo-web:v1 and :v2 (busybox httpd FROM scratch), pushes both to the registry,
deploys v1 with `orchestrator rollout web`, then runs
`orchestrator rollout web --image web=<registry>/demo-web:v2` while 4 client threads send
requests through HAProxy (stop-first: each box leaves HAProxy for its swap); then back to v1
with `strategy: start-first` in box.yml, under traffic again: each box starts v1 beside v2 on
its alternate port and moves its HAProxy member there, never leaving (HAProxy's own log shows
no server DOWN, in DRAIN or in maintenance). It prints each rollout's progress,
`orchestrator status web`, the failed request counts and Flower's URL, then stops every
process it started (by PID) and removes the containers of its boxes: at the end, on an error,
on Ctrl-C or SIGTERM.

  --keep        leave it all running and print how to use it and how to stop it
  --stop DIR    stop what a `--keep` run left (DIR is the temp directory it printed)

Exit code: 0 when every rollout succeeded, every request got a 2xx, the start-first one took
no server out of HAProxy and the status is clean;
1 otherwise; 130 when interrupted. The local images demo-web:v1/v2 (label orchestrator.demo=1)
are kept so the next run builds nothing; `docker rmi demo-web:v1 demo-web:v2` removes them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# devstack/ (the dev stack: dev tooling, not part of the installed package) is imported from
# this checkout, however the script is started.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import docker

from devstack import engine, images
from devstack.flower import Flower
from devstack.haproxy import HAProxy
from devstack.moto import DUMMY_ENV, MotoServer
from devstack.net import box_addresses, http, pair_free_on
from devstack.process import BIN, ServiceError, pid_alive, stop_pids, tail, wait_for
from devstack.redis import RedisServer
from devstack.registry import Registry
from devstack.stack import Stack, interrupt_on_sigterm
from devstack.traffic import TrafficLoop, TrafficStats
from devstack.workers import BoxWorker, cli_env, dev_keys, settings, worker_env
from orchestrator.engine.lb.haproxy import HAProxyLB

BOX_TYPE = "web"
IMAGE = "demo-web"
DEMO_LABEL = "orchestrator.demo"
RUN_LABEL = "orchestrator.demo.run"
BOX_LABEL = "orchestrator.box"  # schemas.contract.Label.BOX: set by the worker
SSM_PARAMETER = "/demo/web/token"
FLOWER_USER = "demo"
STATE_FILE = "demo.json"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Request loop: 4 threads, each at most RATE req/s, at most MAX_REQUESTS in MAX_SECONDS.
THREADS = 4
RATE = 25.0
MAX_REQUESTS = 6000
MAX_SECONDS = 60.0

# Timings of the simulated boxes and the CLI: short, so the demo takes seconds.
WORKER_TIMINGS = settings(
    heartbeat_interval="1", heartbeat_ttl="3", step_deadline="30", visibility_timeout="60",
    restore_interval="1", lease_ttl="10", slot_ttl="10", settle_time="0.3", drain_timeout="10",
    # The demo's box type has no standard services, so the reconciler need not tick during
    # the run (its tick also runs the boot convergence, which can race a swap).
    services_interval="300",
)
CLI_TIMINGS = settings(lease_ttl="10", slot_ttl="10", preflight_timeout="30",
                       watch_interval="0.1")

FLEET_YML = """\
# The demo's fleet: every `elb:` is an HAProxy backend.
load_balancer: haproxy
step_deadline: 30
"""

BOX_YML = """\
# The demo's box type `web`: one app behind HAProxy backend `web`.
apps:
  web:
    elb: web
    image: {image}
    containers:
      web:
        ports: ["{port}:{app_port}"]
        env:
          DEMO_TOKEN: {{secret: "ssm:{parameter}"}}  # resolved on the box, from moto
        health: {{http: /health, interval: 0.1, timeout: 1, retries: 15}}
        stop_timeout: 2
"""

# The same, start-first: the new version starts beside the old on the other port set, the
# HAProxy member moves to it, the box never leaves its backend.
START_FIRST = """\
    strategy: start-first
    alternate_ports: {{{port}: {alt}}}
"""


def box_yml(image: str, port: int, parameter: str, start_first: bool = False) -> str:
    text = BOX_YML.format(image=image, port=port, app_port=images.APP_PORT, parameter=parameter)
    if start_first:
        text = text.replace("    elb: web\n", "    elb: web\n" + START_FIRST.format(
            port=port, alt=port + 1))
    return text


class DemoFailed(Exception):
    """A step of the demo could not be done; the message says which and where the logs are."""


T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[demo {time.monotonic() - T0:5.1f}s] {message}", flush=True)


def remove_containers(client: docker.DockerClient, boxes: list[str], run: str) -> int:
    """Remove the containers of the demo's boxes (label orchestrator.box) and of its run."""
    filters = [f"{BOX_LABEL}={box}" for box in boxes] + [f"{RUN_LABEL}={run}"]
    return sum(engine.remove_containers(client, f) for f in filters)


def stop_command(directory: Path) -> str:
    return f"{BIN / 'python'} {Path(__file__).resolve()} --stop {directory}"


@dataclass
class Demo:
    keep: bool
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="orch-demo-")))
    popens: list[subprocess.Popen[bytes]] = field(default_factory=list)
    client: docker.DockerClient | None = None

    def __post_init__(self) -> None:
        self.stack = Stack("orch-demo", self.tmp / "logs")
        self.boxes = [f"box{i + 1}-{self.run[:6]}" for i in range(3)]
        self.ips = box_addresses(len(self.boxes))
        self.app_port = pair_free_on(self.ips)  # and app_port + 1: start-first's other set
        self.prefix = f"demo-{self.run}:"
        logs = self.stack.dir
        # Over AUTH, as production runs it: a password made for this run.
        self.redis = RedisServer(logs, detach=True, password=secrets.token_urlsafe(12))
        self.broker_url, self.redis_url = f"{self.redis.url}/0", f"{self.redis.url}/1"
        self.moto = MotoServer(logs, detach=True)
        self.registry = Registry(logs, detach=True)
        self.haproxy = HAProxy(logs, list(zip(self.boxes, self.ips, [self.app_port] * 3,
                                              strict=True)), detach=True)
        self.flower = Flower(logs, self.broker_url, user=FLOWER_USER, detach=True)
        dev_keys(self.tmp / "keys")  # the demo runs signed; the key lives as long as its stack
        self.workers = [BoxWorker(logs, self.worker_env(box, ip), detach=True,
                                  argv=[str(BIN / "orchestrator-worker")])
                        for box, ip in zip(self.boxes, self.ips, strict=True)]

    # -- bookkeeping ---------------------------------------------------------------------------

    def save_state(self, kept: bool = False) -> None:
        state = {"run": self.run, "tmp": str(self.tmp), "demo_pid": os.getpid(), "kept": kept,
                 "procs": self.stack.records(), "boxes": self.boxes,
                 "registry": self.registry.host}
        (self.tmp / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    def base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        return env

    def worker_env(self, box: str, ip: str) -> dict[str, str]:
        env = worker_env(box, BOX_TYPE, self.broker_url, self.redis_url, self.prefix,
                         {DEMO_LABEL: "1", RUN_LABEL: self.run}, bind_ip=ip,
                         log_root=str(self.tmp / box / "logs"),
                         haproxy_socket=self.haproxy.socket_path,
                         aws_endpoint_url=self.moto.url)
        return {**env, "PATH": self.base_env()["PATH"], **DUMMY_ENV, **WORKER_TIMINGS}

    def cli_env(self) -> dict[str, str]:
        # Any AWS call goes to the demo's moto server, never to a real account.
        env = cli_env(self.tmp / "boxes", self.broker_url, self.redis_url, self.prefix,
                      aws_endpoint_url=self.moto.url, haproxy_socket=self.haproxy.socket_path)
        return {**env, "PATH": self.base_env()["PATH"], **DUMMY_ENV, **CLI_TIMINGS}

    def docker(self) -> docker.DockerClient:
        if self.client is None:
            self.client = engine.connect()
        return self.client

    # -- the services and the images -----------------------------------------------------------

    def start_services(self) -> None:
        for binary in ("moto_server", "celery", "orchestrator", "orchestrator-worker"):
            if not (BIN / binary).exists():
                raise DemoFailed(f"{BIN / binary} is missing: run `bash scripts/setup.sh`")
        early = [self.redis, self.moto, self.registry, self.haproxy]
        for service in early:
            self.stack.add(service).launch()
        self.save_state()
        self.docker()
        for version in ("v1", "v2"):  # while the services start
            images.build_web_image(self.docker(), f"{IMAGE}:{version}", f"{IMAGE} {version}\n",
                                   {DEMO_LABEL: "1"}, replace=True)
        say(f"built {IMAGE}:v1 and {IMAGE}:v2 (busybox httpd FROM scratch, "
            f"label {DEMO_LABEL}=1)")
        self.redis.wait_ready()
        for service in (self.flower, *self.workers):  # the broker's clients, once it answers
            self.stack.add(service).launch()
        self.save_state()
        # While they start: the images into the registry, the app's setting into SSM.
        self.registry.wait_ready()
        for version in ("v1", "v2"):
            self.registry.push(self.docker(), f"{IMAGE}:{version}", IMAGE, version)
        self.moto.wait_ready()
        with contextlib.closing(self.moto.client("ssm")) as ssm:
            # Resolved by each box when its container starts.
            ssm.put_parameter(Name=SSM_PARAMETER, Value=secrets.token_hex(8),
                              Type="SecureString", Overwrite=True)
        for service in (self.haproxy, self.flower, *self.workers):
            service.wait_ready()

    # -- the CLI ---------------------------------------------------------------------------------

    def orchestrator(self, *args: str, timeout: float = 120) -> int:
        """Run the CLI with the terminal as its output; returns its exit code."""
        shown = " ".join(f'"{a}"' if " " in a else a for a in args)
        print(f"\n$ orchestrator {shown}", flush=True)
        proc = subprocess.Popen([str(BIN / "orchestrator"), *args], cwd=self.tmp,
                                env={**self.base_env(), **self.cli_env()})
        self.popens.append(proc)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DemoFailed(f"`orchestrator {shown}` took more than {timeout:.0f}s") from None
        finally:
            if proc.poll() is None:  # timed out, or the demo was interrupted
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            sys.stdout.flush()

    # -- the whole thing -------------------------------------------------------------------------

    def main(self) -> int:
        say(f"run {self.run}: runtime files in {self.tmp}")
        self.start_services()
        lb_url, flower_url = self.haproxy.url, f"{self.flower.url}/"
        say(f"redis 127.0.0.1:{self.redis.port} (keys {self.prefix}*), moto {self.moto.url}, "
            f"registry {self.registry.host}, HAProxy {lb_url}, Flower {flower_url}")
        say("boxes: " + ", ".join(f"{b} on {ip}:{self.app_port}"
                                  for b, ip in zip(self.boxes, self.ips, strict=True)))
        self.write_env_sh()
        (self.tmp / "fleet.yml").write_text(FLEET_YML)  # found above boxes/
        (self.tmp / "boxes").mkdir(exist_ok=True)
        box_file = self.tmp / "boxes" / f"{BOX_TYPE}.yml"
        v1, v2 = (f"{self.registry.host}/{IMAGE}:{v}" for v in ("v1", "v2"))
        box_file.write_text(box_yml(v1, self.app_port, SSM_PARAMETER))

        say(f"deploying v1 to the 3 boxes ({box_file})")
        if self.orchestrator("rollout", BOX_TYPE, "--reason", "demo: first deploy") != 0:
            raise DemoFailed("the first deploy (v1) failed")
        lb = HAProxyLB(self.haproxy.socket_path, self.haproxy.backend)
        wait_for(lambda: all(lb.state(b).in_service for b in self.boxes),
                 "every box in service in HAProxy", timeout=30)
        wait_for(lambda: http(lb_url).text.strip() == f"{IMAGE} v1", "v1 through HAProxy",
                 timeout=30)

        say(f"request loop: {THREADS} threads, at most {RATE * THREADS:.0f} req/s, "
            f"through HAProxy {lb_url}")
        code, stats, status = self.under_traffic(
            lb_url, "v2", "--image", f"web={v2}", "--reason", "demo: v2 under traffic")
        problems = self.problems("v2", code, stats, status)

        say(f"back to v1 with `strategy: start-first` ({box_file}): each box starts v1 beside "
            f"v2 on port {self.app_port + 1} and moves its HAProxy member there")
        box_file.write_text(box_yml(v1, self.app_port, SSM_PARAMETER, start_first=True))
        before = len(self.out_of_service())
        code, stats, status = self.under_traffic(
            lb_url, "v1 (start-first)", "--reason", "demo: back to v1, start-first")
        out = self.out_of_service()[before:]
        print(f"HAProxy's log during it: {len(out)} server(s) DOWN, in DRAIN or in maintenance"
              + (f": {out[:5]}" if out else ""), flush=True)
        problems += self.problems("v1 (start-first)", code, stats, status)
        if out:
            problems.append(f"the start-first rollout took servers out: {out[:3]}")
        print(f"Flower: {flower_url} (user {FLOWER_USER}, password {self.flower.auth[1]})"
              + ("" if self.keep else " - stops with the demo; --keep leaves it up"), flush=True)
        if problems:
            say("FAILED: " + "; ".join(problems))
        if self.keep:
            self.save_state(kept=True)
            print(f"""
Kept running (--keep). Use it from a shell:
  source {self.tmp / 'env.sh'}
  orchestrator status web; orchestrator history web; curl {lb_url}
  orchestrator rollout web --image web={v2}     # v2 again (start-first), or edit {box_file}
Stop everything it started:
  {stop_command(self.tmp)}""", flush=True)
        return 1 if problems else 0

    def under_traffic(self, lb_url: str, what: str, *args: str
                      ) -> tuple[int, TrafficStats, int]:
        """`orchestrator rollout web ARGS` while the request loop runs through HAProxy, then
        `orchestrator status web`: the rollout's exit code, the loop, the status's exit code."""
        traffic = TrafficLoop(lb_url, THREADS, RATE, MAX_REQUESTS, MAX_SECONDS).start()
        batch = 2 * THREADS * int(RATE) // 5  # requests in 0.4 s
        try:
            with contextlib.suppress(TimeoutError):
                traffic.wait_total(batch, timeout=10)
            started = time.monotonic()
            code = self.orchestrator("rollout", BOX_TYPE, *args)
            took = time.monotonic() - started
            with contextlib.suppress(TimeoutError):
                traffic.wait_total(traffic.stats.total + batch, timeout=10)
        finally:
            stats = traffic.stop()
        print(flush=True)
        say(f"rollout to {what} {'succeeded' if code == 0 else f'FAILED (exit {code})'} "
            f"in {took:.1f}s")
        status = self.orchestrator("status", BOX_TYPE)
        bodies = ", ".join(f"{k!r}: {v}" for k, v in sorted(stats.answers().items()))
        print(flush=True)
        print(f"failed requests: {stats.failed} of {stats.total} "
              f"({stats.elapsed:.1f}s; answers {bodies or 'none'})", flush=True)
        if stats.failed:
            print(f"  by kind: {dict(stats.failures)}; first: {stats.samples[:5]}", flush=True)
        return code, stats, status

    @staticmethod
    def problems(what: str, code: int, stats: TrafficStats, status: int) -> list[str]:
        return [problem for problem, bad in (
            (f"the rollout to {what} exited {code}", code != 0),
            (f"{stats.failed} requests failed during the rollout to {what}", stats.failed > 0),
            (f"no request was made during the rollout to {what}", stats.total == 0),
            (f"`orchestrator status web` reports boxes needing attention after {what}",
             status != 0),
        ) if bad]

    def out_of_service(self) -> list[str]:
        """HAProxy's own log: every server that went DOWN, to DRAIN or to maintenance."""
        return [f"{c.server}: {c.text}" for c in self.haproxy.state_changes()
                if any(w in c.text for w in ("DOWN", "DRAIN", "maintenance"))]

    def write_env_sh(self) -> None:
        lines = [f"# The demo's CLI settings (run {self.run}); AWS calls go to its moto server.",
                 f"export PATH={BIN}:$PATH"]
        lines += [f"export {k}={v}" for k, v in self.cli_env().items()
                  if k.startswith(("ORCHESTRATOR_", "AWS_"))]
        (self.tmp / "env.sh").write_text("\n".join(lines) + "\n")

    def clean_up(self, keep_logs: bool) -> None:
        """Stop every process the demo started (by PID), remove its boxes' containers."""
        say("stopping everything the demo started")
        count = len(self.stack.records())
        killed = self.stack.stop()
        for proc in self.popens:  # reap; the CLI runs are ours too
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        removed = 0
        if self.client is not None:
            try:
                removed = remove_containers(self.client, self.boxes, self.run)
                self.registry.forget_local_refs(self.client, DEMO_LABEL)
            except docker.errors.DockerException as exc:
                say(f"could not remove the demo's containers ({exc}): "
                    f"docker rm -f $(docker ps -aq --filter label={RUN_LABEL}={self.run})")
            finally:
                self.client.close()
        note = f"; had to SIGKILL {', '.join(killed)}" if killed else ""
        if keep_logs:
            shutil.rmtree(self.registry.storage, ignore_errors=True)
            say(f"stopped {count} processes, removed {removed} containers{note}; "
                f"logs kept in {self.stack.dir}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
            say(f"stopped {count} processes, removed {removed} containers{note}")


def stop_kept(directory: Path) -> int:
    """`--stop DIR`: stop what a `--keep` run left, remove its containers and DIR."""
    state_path = directory / STATE_FILE
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError) as exc:
        print(f"no demo state in {state_path}: {exc}", file=sys.stderr)
        return 2
    killed = stop_pids(state["procs"])
    removed = 0
    try:
        client = engine.connect()
        try:
            removed = remove_containers(client, state["boxes"], state["run"])
            if state.get("registry"):
                engine.forget_registry(client, DEMO_LABEL, state["registry"])
        finally:
            client.close()
    except (docker.errors.DockerException, ServiceError) as exc:
        print(f"could not remove the demo's containers ({exc}): docker rm -f $(docker ps -aq "
              f"--filter label={RUN_LABEL}={state['run']})", file=sys.stderr)
    shutil.rmtree(directory, ignore_errors=True)
    note = f"; had to SIGKILL {', '.join(killed)}" if killed else ""
    print(f"demo {state['run']}: stopped {len(state['procs'])} processes, removed {removed} "
          f"containers and {directory}{note}")
    return 0


def leftovers() -> Iterator[str]:
    for path in Path(tempfile.gettempdir()).glob(f"orch-demo-*/{STATE_FILE}"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            state = json.loads(path.read_text())
            if any(pid_alive(e["pid"], e["start"]) for e in state["procs"]):
                yield str(path.parent)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true",
                        help="leave the stack running and print how to stop it")
    parser.add_argument("--stop", metavar="DIR", type=Path,
                        help="stop what a --keep run left (its temp directory)")
    args = parser.parse_args()
    if args.stop:
        return stop_kept(args.stop)
    for directory in leftovers():
        say(f"note: an earlier demo still runs; stop it with {stop_command(Path(directory))}")
    interrupt_on_sigterm()
    demo = Demo(keep=args.keep)
    code = 1
    finished = False  # main() returned: with --keep, even a failed rollout stays up to look at
    try:
        code = demo.main()
        finished = True
    except KeyboardInterrupt:
        print(flush=True)
        say("interrupted")
        code = 130
    except (DemoFailed, ServiceError, TimeoutError) as exc:
        say(f"FAILED: {exc}")
        code = 1
    finally:
        if not (args.keep and finished):
            # A second Ctrl-C must not cut the clean-up short (every wait in it is bounded).
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if code == 1 and IN_CI:
                for s in demo.stack.services:
                    print(f"--- {s.name} log ({s.log_path}), last lines:\n{tail(s.log_path)}")
            demo.clean_up(keep_logs=code == 1)
    say(f"done, exit {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
