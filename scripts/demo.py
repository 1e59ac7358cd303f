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
requests through HAProxy. It prints the rollout's progress, `orchestrator status web`, the
failed request count and Flower's URL, then stops every process it started (by PID) and
removes the containers of its boxes: at the end, on an error, on Ctrl-C or SIGTERM.

  --keep        leave it all running and print how to use it and how to stop it
  --stop DIR    stop what a `--keep` run left (DIR is the temp directory it printed)

Exit code: 0 when both rollouts succeeded, every request got a 2xx and the status is clean;
1 otherwise; 130 when interrupted. The local images demo-web:v1/v2 (label orchestrator.demo=1)
are kept so the next run builds nothing; `docker rmi demo-web:v1 demo-web:v2` removes them.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import docker
import redis

from orchestrator.engine.lb.haproxy import HAProxyLB

T = TypeVar("T")

BOX_TYPE = "web"
BACKEND = "web"
IMAGE = "demo-web"
DEMO_LABEL = "orchestrator.demo"
RUN_LABEL = "orchestrator.demo.run"
BOX_LABEL = "orchestrator.box"  # schemas.contract.Label.BOX: set by the worker
APP_PORT = 8080  # busybox httpd inside the container
SSM_PARAMETER = "/demo/web/token"
FLOWER_USER = "demo"
BUSYBOX = Path("/bin/busybox")
BIN = Path(sys.executable).parent  # the venv's bin: orchestrator, orchestrator-worker, ...
STATE_FILE = "demo.json"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Request loop: 4 threads, each at most RATE req/s, at most MAX_REQUESTS in MAX_SECONDS.
THREADS = 4
RATE = 25.0
MAX_REQUESTS = 6000
MAX_SECONDS = 60.0

# Timings of the simulated boxes and the CLI: short, so the demo takes seconds.
WORKER_TIMINGS = {
    "ORCHESTRATOR_HEARTBEAT_INTERVAL": "1",
    "ORCHESTRATOR_HEARTBEAT_TTL": "3",
    "ORCHESTRATOR_STEP_DEADLINE": "30",
    "ORCHESTRATOR_VISIBILITY_TIMEOUT": "60",
    "ORCHESTRATOR_RESTORE_INTERVAL": "1",
    "ORCHESTRATOR_LEASE_TTL": "10",
    "ORCHESTRATOR_SLOT_TTL": "10",
    "ORCHESTRATOR_SETTLE_TIME": "0.3",
    "ORCHESTRATOR_DRAIN_TIMEOUT": "10",
    # The demo's box type has no standard services, so the reconciler need not tick during
    # the run (its tick also runs the boot convergence, which can race a swap).
    "ORCHESTRATOR_SERVICES_INTERVAL": "300",
}
CLI_TIMINGS = {
    "ORCHESTRATOR_LEASE_TTL": "10",
    "ORCHESTRATOR_SLOT_TTL": "10",
    "ORCHESTRATOR_PREFLIGHT_TIMEOUT": "30",
    "ORCHESTRATOR_WATCH_INTERVAL": "0.1",
}
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "demo",
    "AWS_SECRET_ACCESS_KEY": "demo",
    "AWS_DEFAULT_REGION": "us-east-1",
}

DOCKERFILE = f"""\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
COPY www /www
EXPOSE {APP_PORT}
CMD ["httpd", "-f", "-p", "{APP_PORT}", "-h", "/www"]
"""

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


class DemoFailed(Exception):
    """A step of the demo could not be done; the message says which and where the logs are."""


# -- small helpers ---------------------------------------------------------------------------

T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[demo {time.monotonic() - T0:5.1f}s] {message}", flush=True)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_free_on(hosts: list[str]) -> int:
    """A port nothing listens on at any of `hosts` (each simulated box publishes it)."""
    for _ in range(50):
        port = free_port(hosts[0])
        try:
            for host in hosts[1:]:
                with socket.socket() as s:
                    s.bind((host, port))
        except OSError:
            continue
        return port
    raise DemoFailed(f"no port free on all of {hosts}")


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except DemoFailed:  # a process it waits on has exited: no point in waiting on
            raise
        except Exception as exc:  # not answering yet
            last, value = exc, None
        if value:
            return value
        time.sleep(0.05)
    raise DemoFailed(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last!r})")


def http_get(url: str, auth: tuple[str, str] | None = None, timeout: float = 2.0) -> str:
    req = urllib.request.Request(url)
    if auth:
        import base64

        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback only
        return str(resp.read().decode(errors="replace"))


def haproxy_command(socket_path: str, command: str) -> str:
    chunks: list[bytes] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(socket_path)
        sock.sendall(command.encode() + b"\n")
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def is_static_elf(path: Path) -> bool:
    """True when the ELF has no PT_INTERP header: it runs in an image FROM scratch."""
    data = path.read_bytes()
    if data[:5] != b"\x7fELF\x02":
        return False
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    types = (struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum))
    return 3 not in types


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text[-lines:])


# -- processes, by PID -------------------------------------------------------------------------


def start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (/proc/PID/stat field 22): a PID reused later differs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    if fields[0] == "Z":
        return None  # a zombie: it has ended
    return fields[19]


def alive(pid: int, started: str) -> bool:
    return start_time(pid) == started


def signal_pid(pid: int, started: str, sig: int) -> None:
    if alive(pid, started):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def stop_pids(entries: list[dict[str, Any]], grace: float = 8.0) -> list[str]:
    """SIGTERM by stage (workers first, Redis last), wait up to `grace`, then SIGKILL."""
    killed: list[str] = []
    for stage in sorted({int(e["stage"]) for e in entries}):
        group = [e for e in entries if int(e["stage"]) == stage]
        for e in group:
            signal_pid(e["pid"], e["start"], signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(alive(e["pid"], e["start"]) for e in group):
            time.sleep(0.05)
        for e in group:
            if alive(e["pid"], e["start"]):
                signal_pid(e["pid"], e["start"], signal.SIGKILL)
                killed.append(f"{e['name']} (pid {e['pid']})")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(alive(e["pid"], e["start"]) for e in group):
            time.sleep(0.05)
    return killed


def remove_containers(client: docker.DockerClient, boxes: list[str], run: str) -> int:
    """Remove the containers of the demo's boxes (label orchestrator.box) and of its run."""
    found: dict[str, Any] = {}
    filters = [f"{BOX_LABEL}={box}" for box in boxes] + [f"{RUN_LABEL}={run}"]
    for label in filters:
        for c in client.containers.list(all=True, sparse=True, filters={"label": label}):
            found[c.id] = c
    for c in found.values():
        with contextlib.suppress(docker.errors.NotFound):
            c.remove(force=True)
    return len(found)


def forget_registry_refs(client: docker.DockerClient, registry_host: str) -> None:
    """Untag HOST/... references of the demo's images (the registry is gone; the image stays)."""
    for image in client.images.list(filters={"label": f"{DEMO_LABEL}=1"}):
        refs = (image.attrs.get("RepoTags") or []) + (image.attrs.get("RepoDigests") or [])
        for ref in refs:
            if ref.startswith(f"{registry_host}/"):
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    client.images.remove(ref)


# -- the request loop --------------------------------------------------------------------------


@dataclass
class Traffic:
    """THREADS clients through HAProxy, rate-capped, bounded in time and count, loopback only."""

    host: str
    port: int
    ok: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    bodies: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    _claimed: int = 0
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _t0: float = 0.0
    elapsed: float = 0.0

    def __post_init__(self) -> None:
        if not self.host.startswith("127."):
            raise ValueError(f"the demo sends requests to loopback only, not {self.host}")

    @property
    def total(self) -> int:
        return self.ok + sum(self.failures.values())

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def start(self) -> Traffic:
        self._t0 = time.monotonic()
        for i in range(THREADS):
            t = threading.Thread(target=self._run, name=f"traffic-{i}", daemon=True)
            self._threads.append(t)
            t.start()
        return self

    def wait_total(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while self.total < count and any(t.is_alive() for t in self._threads):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(min(left, 0.2))

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
        self.elapsed = time.monotonic() - self._t0

    def _run(self) -> None:
        interval = 1.0 / RATE
        deadline = self._t0 + MAX_SECONDS
        next_at = time.monotonic()
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                if self._claimed >= MAX_REQUESTS:
                    return
                self._claimed += 1
            kind, body = self._request()
            with self._lock:
                if kind is None:
                    self.ok += 1
                    self.bodies[body.strip()] += 1
                else:
                    self.failures[kind.split(":")[0]] += 1
                    if len(self.samples) < 5:
                        self.samples.append(f"{time.monotonic() - self._t0:.2f}s {kind}")
                self._lock.notify_all()
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)

    def _request(self) -> tuple[str | None, str]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            conn.request("GET", "/", headers={"Connection": "close"})
            resp = conn.getresponse()
            body = resp.read().decode(errors="replace")
        except (OSError, http.client.HTTPException) as exc:
            return f"{type(exc).__name__}: {exc}", ""
        finally:
            conn.close()
        if 200 <= resp.status < 300:
            return None, body
        return f"HTTP {resp.status}: {body[:60]!r}", ""


# -- the demo ----------------------------------------------------------------------------------


@dataclass
class Demo:
    keep: bool
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="orch-demo-")))
    procs: list[dict[str, Any]] = field(default_factory=list)
    popens: list[subprocess.Popen[bytes]] = field(default_factory=list)
    boxes: list[str] = field(default_factory=list)
    registry_host: str = ""
    env: dict[str, str] = field(default_factory=dict)
    client: docker.DockerClient | None = None

    # -- bookkeeping ---------------------------------------------------------------------------

    def save_state(self, kept: bool = False) -> None:
        state = {
            "run": self.run,
            "tmp": str(self.tmp),
            "demo_pid": os.getpid(),
            "kept": kept,
            "procs": self.procs,
            "boxes": self.boxes,
            "registry": self.registry_host,
        }
        (self.tmp / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    def spawn(self, name: str, argv: list[str], stage: int,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start a service process in its own session (Ctrl-C reaches the demo, not it)."""
        log_path = self.tmp / "logs" / f"{name}.log"
        log_path.parent.mkdir(exist_ok=True)
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.tmp, env=env or self.base_env(), start_new_session=True,
            )
        self.popens.append(proc)
        self.procs.append({"name": name, "pid": proc.pid, "stage": stage,
                           "start": start_time(proc.pid) or "", "log": str(log_path)})
        self.save_state()
        return proc

    def log(self, name: str) -> Path:
        return self.tmp / "logs" / f"{name}.log"

    def check_running(self, name: str) -> bool:
        entry = next(e for e in self.procs if e["name"] == name)
        if not alive(entry["pid"], entry["start"]):
            raise DemoFailed(f"{name} exited; its log ({self.log(name)}):\n{tail(self.log(name))}")
        return True

    def base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        return env

    def docker(self) -> docker.DockerClient:
        if self.client is None:
            try:
                self.client = docker.from_env()
                self.client.ping()
            except docker.errors.DockerException as exc:
                raise DemoFailed(f"the Docker engine does not answer ({exc}); "
                                 "scripts/setup.sh starts dockerd") from None
        return self.client

    # -- the services --------------------------------------------------------------------------

    def start_services(self) -> dict[str, Any]:
        for binary in ("redis-server", "docker-registry", "haproxy"):
            if shutil.which(binary) is None:
                raise DemoFailed(f"{binary} is not installed: run `bash scripts/setup.sh`")
        for binary in ("moto_server", "celery", "orchestrator", "orchestrator-worker"):
            if not (BIN / binary).exists():
                raise DemoFailed(f"{BIN / binary} is missing: run `bash scripts/setup.sh`")
        s: dict[str, Any] = {}
        s["redis_port"] = free_port()
        self.spawn("redis", ["redis-server", "--port", str(s["redis_port"]), "--bind",
                             "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(self.tmp)], stage=3)
        s["moto_url"] = f"http://127.0.0.1:{free_port()}"
        self.spawn("moto", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p",
                            s["moto_url"].rsplit(":", 1)[1]], stage=2)
        reg_port = free_port()
        self.registry_host = f"127.0.0.1:{reg_port}"
        config = self.tmp / "registry.yml"
        config.write_text(json.dumps({  # JSON is YAML
            "version": 0.1, "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(self.tmp / "registry-storage")}},
            "http": {"addr": self.registry_host},
        }))
        self.spawn("registry", ["docker-registry", "serve", str(config)], stage=2)

        # The boxes: ids, addresses on a random 127.x.y subnet, one published port for all.
        subnet = f"127.{random.randint(1, 250)}.{random.randint(1, 250)}"
        s["bind_ips"] = [f"{subnet}.{11 + i}" for i in range(3)]
        self.boxes = [f"box{i + 1}-{self.run[:6]}" for i in range(3)]
        s["app_port"] = port_free_on(s["bind_ips"])
        s["haproxy_port"] = free_port()
        s["haproxy_socket"] = str(self.tmp / "haproxy.sock")
        cfg = self.tmp / "haproxy.cfg"
        cfg.write_text(haproxy_config(
            s["haproxy_port"], s["haproxy_socket"],
            [(box, ip, s["app_port"]) for box, ip in zip(self.boxes, s["bind_ips"], strict=True)],
        ))
        self.spawn("haproxy", ["haproxy", "-f", str(cfg), "-db"], stage=2)
        self.save_state()
        return s

    def wait_redis(self, s: dict[str, Any]) -> None:
        url = f"redis://127.0.0.1:{s['redis_port']}"

        def ping() -> bool:
            self.check_running("redis")
            with redis.Redis.from_url(url, socket_timeout=0.5) as r:
                return bool(r.ping())

        wait_for(ping, "redis-server")
        s["broker_url"] = f"{url}/0"
        s["redis_url"] = f"{url}/1"
        s["prefix"] = f"demo-{self.run}:"

    def start_flower(self, s: dict[str, Any]) -> None:
        s["flower_port"] = free_port()
        s["flower_password"] = secrets.token_urlsafe(9)
        self.spawn("flower", [
            sys.executable, "-m", "celery", "-b", s["broker_url"], "flower",
            "--address=127.0.0.1", f"--port={s['flower_port']}",
            f"--basic-auth={FLOWER_USER}:{s['flower_password']}",
        ], stage=1)

    def start_workers(self, s: dict[str, Any]) -> None:
        for box, ip in zip(self.boxes, s["bind_ips"], strict=True):
            env = {
                **self.base_env(),
                **AWS_ENV,
                "ORCHESTRATOR_BOX_ID": box,
                "ORCHESTRATOR_BOX_TYPE": BOX_TYPE,
                "ORCHESTRATOR_BROKER_URL": s["broker_url"],
                "ORCHESTRATOR_REDIS_URL": s["redis_url"],
                "ORCHESTRATOR_KEY_PREFIX": s["prefix"],
                "ORCHESTRATOR_BIND_IP": ip,
                "ORCHESTRATOR_LOG_ROOT": str(self.tmp / box / "logs"),
                "ORCHESTRATOR_STATE_DIR": str(self.tmp / box / "state"),
                "ORCHESTRATOR_HAPROXY_SOCKET": s["haproxy_socket"],
                "ORCHESTRATOR_HAPROXY_SERVER": box,
                "ORCHESTRATOR_AWS_ENDPOINT_URL": s["moto_url"],
                "ORCHESTRATOR_EXTRA_LABELS": json.dumps({DEMO_LABEL: "1", RUN_LABEL: self.run}),
                **WORKER_TIMINGS,
            }
            self.spawn(box, [str(BIN / "orchestrator-worker"), "--loglevel", "INFO"],
                       stage=1, env=env)

    def wait_ready(self, s: dict[str, Any]) -> None:
        def moto_ready() -> bool:
            self.check_running("moto")
            # The app's setting, resolved by each box when its container starts.
            import boto3

            ssm = boto3.client("ssm", endpoint_url=s["moto_url"], region_name="us-east-1",
                               aws_access_key_id="demo", aws_secret_access_key="demo")
            try:
                ssm.put_parameter(Name=SSM_PARAMETER, Value=secrets.token_hex(8),
                                  Type="SecureString", Overwrite=True)
            finally:
                ssm.close()
            return True

        def registry_ready() -> bool:
            self.check_running("registry")
            return http_get(f"http://{self.registry_host}/v2/") is not None

        def haproxy_ready() -> bool:
            self.check_running("haproxy")
            return "Name: HAProxy" in haproxy_command(s["haproxy_socket"], "show info")

        def flower_ready() -> bool:
            self.check_running("flower")
            auth = (FLOWER_USER, s["flower_password"])
            return http_get(f"http://127.0.0.1:{s['flower_port']}/healthcheck", auth) == "OK"

        wait_for(registry_ready, f"docker-registry (log {self.log('registry')})")
        wait_for(haproxy_ready, f"HAProxy (log {self.log('haproxy')})")
        wait_for(moto_ready, f"moto server (log {self.log('moto')})")
        wait_for(flower_ready, f"Flower (log {self.log('flower')})")
        for box in self.boxes:

            def worker_ready(box: str = box) -> bool:
                return self.check_running(box) and b" ready." in self.log(box).read_bytes()

            wait_for(worker_ready, f"worker {box} (log {self.log(box)})")

    # -- images ----------------------------------------------------------------------------------

    def build_images(self) -> None:
        if not (BUSYBOX.is_file() and is_static_elf(BUSYBOX)):
            raise DemoFailed(f"{BUSYBOX} must be Debian's static busybox (busybox-static)")
        client = self.docker()
        for version in ("v1", "v2"):
            with tempfile.TemporaryDirectory(prefix="orch-demo-build-") as ctx:
                root = Path(ctx)
                (root / "Dockerfile").write_text(DOCKERFILE)
                shutil.copy2(BUSYBOX, root / "busybox")
                (root / "www").mkdir()
                (root / "www" / "index.html").write_text(f"demo-web {version}\n")
                (root / "www" / "health").write_text("ok\n")
                try:
                    before = client.images.get(f"{IMAGE}:{version}").id
                except docker.errors.ImageNotFound:
                    before = None
                built, _ = client.images.build(path=ctx, tag=f"{IMAGE}:{version}", rm=True,
                                               forcerm=True, labels={DEMO_LABEL: "1"})
            if before and before != built.id:
                # The tag moved (the build cache was pruned): drop the image it left untagged,
                # unless it has another name or a container (a --keep run's) still uses it.
                with contextlib.suppress(docker.errors.APIError):
                    old = client.images.get(before)
                    if not old.tags and not old.attrs.get("RepoDigests"):
                        client.images.remove(before)

    def push_images(self) -> None:
        client = self.docker()
        remote = f"{self.registry_host}/{IMAGE}"
        for version in ("v1", "v2"):
            if not client.api.tag(f"{IMAGE}:{version}", remote, version):
                raise DemoFailed(f"could not tag {IMAGE}:{version} as {remote}:{version}")
            # docker-py's push does not raise: an error only shows in the stream.
            for line in client.api.push(remote, tag=version, stream=True, decode=True):
                if "error" in line:
                    raise DemoFailed(f"push of {remote}:{version} failed: {line['error']}")

    # -- the CLI ---------------------------------------------------------------------------------

    def cli_env(self, s: dict[str, Any]) -> dict[str, str]:
        return {
            "ORCHESTRATOR_BOXES_DIR": str(self.tmp / "boxes"),
            "ORCHESTRATOR_BROKER_URL": s["broker_url"],
            "ORCHESTRATOR_REDIS_URL": s["redis_url"],
            "ORCHESTRATOR_KEY_PREFIX": s["prefix"],
            # Any AWS call goes to the demo's moto server, never to a real account.
            "ORCHESTRATOR_AWS_ENDPOINT_URL": s["moto_url"],
            **AWS_ENV,
            **CLI_TIMINGS,
        }

    def orchestrator(self, s: dict[str, Any], *args: str, timeout: float = 120) -> int:
        """Run the CLI with the terminal as its output; returns its exit code."""
        shown = " ".join(f'"{a}"' if " " in a else a for a in args)
        print(f"\n$ orchestrator {shown}", flush=True)
        proc = subprocess.Popen([str(BIN / "orchestrator"), *args], cwd=self.tmp,
                                env={**self.base_env(), **self.cli_env(s)})
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
        s = self.start_services()
        self.docker()
        self.build_images()
        say(f"built {IMAGE}:v1 and {IMAGE}:v2 (busybox httpd FROM scratch, "
            f"label {DEMO_LABEL}=1)")
        self.wait_redis(s)
        self.start_flower(s)
        self.start_workers(s)
        self.wait_ready(s)
        self.push_images()
        s["flower_url"] = f"http://127.0.0.1:{s['flower_port']}/"
        s["lb_url"] = f"http://127.0.0.1:{s['haproxy_port']}/"
        say(f"redis 127.0.0.1:{s['redis_port']} (keys {s['prefix']}*), moto {s['moto_url']}, "
            f"registry {self.registry_host}, HAProxy {s['lb_url']}, Flower {s['flower_url']}")
        say("boxes: " + ", ".join(f"{b} on {ip}:{s['app_port']}"
                                  for b, ip in zip(self.boxes, s["bind_ips"], strict=True)))
        self.write_files(s)
        (self.tmp / "fleet.yml").write_text(FLEET_YML)  # found above boxes/
        (self.tmp / "boxes").mkdir(exist_ok=True)
        box_file = self.tmp / "boxes" / f"{BOX_TYPE}.yml"
        v1 = f"{self.registry_host}/{IMAGE}:v1"
        v2 = f"{self.registry_host}/{IMAGE}:v2"
        box_file.write_text(BOX_YML.format(image=v1, port=s["app_port"], app_port=APP_PORT,
                                           parameter=SSM_PARAMETER))

        say(f"deploying v1 to the 3 boxes ({box_file})")
        if self.orchestrator(s, "rollout", BOX_TYPE, "--reason", "demo: first deploy") != 0:
            raise DemoFailed("the first deploy (v1) failed")
        lb = HAProxyLB(s["haproxy_socket"], BACKEND)
        wait_for(lambda: all(lb.state(b).in_service for b in self.boxes),
                 "every box in service in HAProxy")
        wait_for(lambda: http_get(s["lb_url"]).strip() == f"{IMAGE} v1", "v1 through HAProxy")

        say(f"request loop: {THREADS} threads, at most {RATE * THREADS:.0f} req/s, "
            f"through HAProxy {s['lb_url']}")
        traffic = Traffic("127.0.0.1", s["haproxy_port"]).start()
        try:
            traffic.wait_total(2 * THREADS * int(RATE) // 5)
            started = time.monotonic()
            code = self.orchestrator(s, "rollout", BOX_TYPE, "--image", f"web={v2}",
                                     "--reason", "demo: v2 under traffic")
            took = time.monotonic() - started
            traffic.wait_total(traffic.total + 2 * THREADS * int(RATE) // 5)
        finally:
            traffic.stop()
        print(flush=True)
        say(f"rollout to v2 {'succeeded' if code == 0 else f'FAILED (exit {code})'} "
            f"in {took:.1f}s")
        status = self.orchestrator(s, "status", BOX_TYPE)
        bodies = ", ".join(f"{k!r}: {v}" for k, v in sorted(traffic.bodies.items()))
        print(flush=True)
        print(f"failed requests: {traffic.failed} of {traffic.total} "
              f"({traffic.elapsed:.1f}s; answers {bodies or 'none'})", flush=True)
        if traffic.failed:
            print(f"  by kind: {dict(traffic.failures)}; first: {traffic.samples}", flush=True)
        print(f"Flower: {s['flower_url']} (user {FLOWER_USER}, password "
              f"{s['flower_password']})" + ("" if self.keep else
                                             " - stops with the demo; --keep leaves it up"),
              flush=True)
        problems = [what for what, bad in (
            (f"the rollout to v2 exited {code}", code != 0),
            (f"{traffic.failed} requests failed", traffic.failed > 0),
            ("no request was made", traffic.total == 0),
            ("`orchestrator status web` reports boxes needing attention", status != 0),
        ) if bad]
        if problems:
            say("FAILED: " + "; ".join(problems))
        if self.keep:
            self.save_state(kept=True)
            stop = f"{BIN / 'python'} {Path(__file__).resolve()} --stop {self.tmp}"
            print(f"""
Kept running (--keep). Use it from a shell:
  source {self.tmp / 'env.sh'}
  orchestrator status web; orchestrator history web; curl {s['lb_url']}
  orchestrator rollout web --image web={v1}     # back to v1, or edit {box_file}
Stop everything it started:
  {stop}""", flush=True)
        return 1 if problems else 0

    def write_files(self, s: dict[str, Any]) -> None:
        lines = [f"# The demo's CLI settings (run {self.run}); AWS calls go to its moto server.",
                 f"export PATH={BIN}:$PATH"]
        lines += [f"export {k}={v}" for k, v in self.cli_env(s).items()]
        (self.tmp / "env.sh").write_text("\n".join(lines) + "\n")

    def clean_up(self, keep_logs: bool) -> None:
        """Stop every process the demo started (by PID), remove its boxes' containers."""
        say("stopping everything the demo started")
        killed = stop_pids(self.procs)
        for proc in self.popens:  # reap; the CLI runs are ours too
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        removed = 0
        if self.client is not None:
            try:
                removed = remove_containers(self.client, self.boxes, self.run)
                if self.registry_host:
                    forget_registry_refs(self.client, self.registry_host)
            except docker.errors.DockerException as exc:
                say(f"could not remove the demo's containers ({exc}): "
                    f"docker rm -f $(docker ps -aq --filter label={RUN_LABEL}={self.run})")
            finally:
                self.client.close()
        note = f"; had to SIGKILL {', '.join(killed)}" if killed else ""
        if keep_logs:
            shutil.rmtree(self.tmp / "registry-storage", ignore_errors=True)
            say(f"stopped {len(self.procs)} processes, removed {removed} containers{note}; "
                f"logs kept in {self.tmp / 'logs'}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
            say(f"stopped {len(self.procs)} processes, removed {removed} containers{note}")


def haproxy_config(port: int, socket_path: str, servers: list[tuple[str, str, int]]) -> str:
    lines = [
        "global",
        f"    stats socket {socket_path} mode 600 level admin",
        "    maxconn 2000",
        "defaults",
        "    mode http",
        # No retry, no redispatch: a request sent to a box that is gone fails, and counts.
        "    retries 0",
        "    timeout connect 1s",
        "    timeout client 10s",
        "    timeout server 10s",
        "    timeout http-request 5s",
        "    timeout check 1s",
        "frontend fe",
        f"    bind 127.0.0.1:{port}",
        f"    default_backend {BACKEND}",
        f"backend {BACKEND}",
        "    balance roundrobin",
        "    option httpchk GET /health",
        "    default-server inter 200ms fall 2 rise 1",
    ]
    lines += [f"    server {name} {host}:{p} check" for name, host, p in servers]
    return "\n".join(lines) + "\n"


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
        client = docker.from_env()
        try:
            removed = remove_containers(client, state["boxes"], state["run"])
            if state.get("registry"):
                forget_registry_refs(client, state["registry"])
        finally:
            client.close()
    except docker.errors.DockerException as exc:
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
            if any(alive(e["pid"], e["start"]) for e in state["procs"]):
                yield str(path.parent)


def interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


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
        say(f"note: an earlier demo still runs; stop it with "
            f"{BIN / 'python'} {Path(__file__).resolve()} --stop {directory}")
    # Installed explicitly: a shell starts background jobs with SIGINT ignored, and Python then
    # keeps it ignored.
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
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
    except DemoFailed as exc:
        say(f"FAILED: {exc}")
        code = 1
    finally:
        if not (args.keep and finished):
            # A second Ctrl-C must not cut the clean-up short (every wait in it is bounded).
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if code == 1 and IN_CI:
                for e in demo.procs:
                    print(f"--- {e['name']} log ({e['log']}), last lines:\n{tail(Path(e['log']))}")
            demo.clean_up(keep_logs=code == 1)
    say(f"done, exit {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
