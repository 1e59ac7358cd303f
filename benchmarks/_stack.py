"""What every benchmark starts for real, as processes: redis-server, the registry, HAProxy,
box workers, the CLI; the test images; a bounded request loop; tables and JSON results.

Adapted from tests/harness (benchmarks never import tests/). Every process started here is
stopped by its own PID when the stack closes (also on Ctrl-C or SIGTERM), and every container
carries BENCH_LABEL plus the owner's PID, so clean-up removes exactly what this run made.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import redis

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PYTHON = sys.executable
BIN = Path(PYTHON).parent
BUSYBOX = Path("/bin/busybox")

BENCH_LABEL = "orchestrator.bench"
OWNER_LABEL = "orchestrator.bench.owner-pid"
CONTAINER_LABELS = {BENCH_LABEL: "1", OWNER_LABEL: str(os.getpid())}
APP_PORT = 8080  # busybox httpd inside the container
HOST_PORT = 18080  # what every simulated box publishes, each on its own loopback address
BACKEND = "web"


# -- small helpers ----------------------------------------------------------------------------


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 20.0,
             interval: float = 0.02) -> T:
    """Poll `probe` until it returns something truthy; TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except Exception as exc:  # the service may not answer yet
            last, value = exc, None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last!r})")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def subnet() -> str:
    """A random 127.x.y prefix: simulated boxes bind 127.x.y.11, .12, ... (all loopback)."""
    return f"127.{random.randint(1, 250)}.{random.randint(1, 250)}"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def need(binary: str) -> str:
    # The venv's own first (ansible-playbook, py-spy), then PATH (redis-server, haproxy).
    path = str(BIN / binary) if (BIN / binary).exists() else shutil.which(binary)
    if path is None:
        raise SystemExit(f"{binary} is not installed: run `bash scripts/setup.sh` "
                         "(and `.venv/bin/pip install -e '.[bench]'`) first")
    return path


# -- processes --------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self, tail: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)


@dataclass
class RedisServer:
    port: int
    proc: Proc

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def client(self, db: int = 0) -> redis.Redis[bytes]:
        return redis.Redis.from_url(f"{self.url}/{db}")

    def commandstats(self) -> Counter[str]:
        """calls per command since start (or CONFIG RESETSTAT)."""
        with self.client() as c:
            stats = c.info("commandstats")
        return Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()})


@dataclass
class HAProxy:
    port: int
    socket_path: str
    proc: Proc

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def command(self, command: str, timeout: float = 5.0) -> str:
        chunks: list[bytes] = []
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(self.socket_path)
            sock.sendall(command.encode() + b"\n")
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self) -> dict[str, tuple[str, int]]:
        """server -> (status as `show stat` says: UP, DOWN, MAINT, DRAIN, ...; scur)."""
        header, *rows = self.command(f"show stat {BACKEND} 4 -1").lstrip("# ").splitlines()
        columns = header.split(",")
        out = {}
        for row in rows:
            if row:
                values = dict(zip(columns, row.split(","), strict=False))
                out[values["svname"]] = (values["status"], int(values["scur"] or 0))
        return out


@dataclass
class Registry:
    host: str
    proc: Proc

    def push(self, client: docker.DockerClient, local_tag: str, repo: str, tag: str) -> str:
        """Tag and push; "HOST/repo@sha256:..." (docker-py's push reports errors in-stream)."""
        remote = f"{self.host}/{repo}"
        client.api.tag(local_tag, remote, tag)
        digest = None
        for line in client.api.push(remote, tag=tag, stream=True, decode=True):
            if "error" in line:
                raise RuntimeError(f"push of {remote}:{tag} failed: {line['error']}")
            digest = line.get("aux", {}).get("Digest", digest)
        if digest is None:
            raise RuntimeError(f"push of {remote}:{tag} reported no digest")
        return f"{remote}@{digest}"


@dataclass
class CliRun:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    wall: float
    max_rss_mb: float  # the CLI process's peak resident set (getrusage of that child)
    cpu_s: float = 0.0  # its user + system CPU seconds

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
        self.dir = Path(tempfile.mkdtemp(prefix=f"orch-bench-{name}-"))
        self.procs: list[Proc] = []
        self.registry_hosts: list[str] = []
        self._docker: docker.DockerClient | None = None
        self.callback(self._cleanup)

    def __enter__(self) -> Stack:
        super().__enter__()
        # SIGTERM ends the run like Ctrl-C: the exit stack still stops every process.
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        remove_containers(self.docker, only_orphans=True)
        return self

    @property
    def docker(self) -> docker.DockerClient:
        if self._docker is None:
            self._docker = docker.from_env(timeout=120)
        return self._docker

    def _cleanup(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop()
        if self._docker is not None:
            with contextlib.suppress(Exception):
                remove_containers(self._docker, only_orphans=False)
            with contextlib.suppress(Exception):
                # This run's registry is gone: so are the references to it.
                for image in self._docker.images.list(filters={"label": BENCH_LABEL}):
                    refs = (image.attrs.get("RepoTags") or []) + (
                        image.attrs.get("RepoDigests") or [])
                    forget_local(self._docker, *(r for r in refs if r.split("/")[0]
                                                 in self.registry_hosts))
            self._docker.close()
        if os.environ.get("BENCH_KEEP_LOGS"):
            print(f"logs kept in {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        log_path = self.dir / f"{name}.log"
        with log_path.open("ab") as log:
            popen = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=ROOT, stdin=subprocess.DEVNULL)
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    # -- services ------------------------------------------------------------------------

    def redis(self, name: str = "redis") -> RedisServer:
        port = free_port()
        proc = self.spawn(name, [need("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                                 "--save", "", "--appendonly", "no", "--dir", str(self.dir),
                                 "--maxclients", "10000"])
        server = RedisServer(port, proc)

        def answers() -> bool:
            with server.client() as c:
                return bool(c.ping())

        wait_for(lambda: proc.alive() and answers(), f"{name} on port {port}")
        return server

    def registry(self) -> Registry:
        port = free_port()
        config = self.dir / "registry.yml"
        config.write_text(json.dumps({
            "version": 0.1, "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(self.dir / "registry")}},
            "http": {"addr": f"127.0.0.1:{port}"},
        }))
        proc = self.spawn("registry", [need("docker-registry"), "serve", str(config)])

        def answers() -> bool:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            try:
                conn.request("GET", "/v2/")
                return conn.getresponse().status == 200
            finally:
                conn.close()

        wait_for(lambda: proc.alive() and answers(), f"docker-registry on port {port}")
        self.registry_hosts.append(f"127.0.0.1:{port}")
        return Registry(f"127.0.0.1:{port}", proc)

    def haproxy(self, servers: list[tuple[str, str, int]], check_inter_ms: int = 200) -> HAProxy:
        """One backend `web`; no retries and no redispatch: a request sent to a box that is
        gone fails, so a swap that is not drained shows up as failed requests."""
        port = free_port()
        # A unix socket path must fit in 108 bytes.
        sock_dir = Path(tempfile.mkdtemp(prefix="orch-bench-hap-"))
        self.callback(shutil.rmtree, sock_dir, True)
        socket_path = str(sock_dir / "admin.sock")
        lines = [
            "global", f"    stats socket {socket_path} mode 600 level admin", "    maxconn 4000",
            "defaults", "    mode http", "    retries 0", "    timeout connect 1s",
            "    timeout client 10s", "    timeout server 10s", "    timeout http-request 5s",
            "    timeout check 1s",
            "frontend fe", f"    bind 127.0.0.1:{port}", f"    default_backend {BACKEND}",
            f"backend {BACKEND}", "    balance roundrobin", "    option httpchk GET /health",
            f"    default-server inter {check_inter_ms}ms fall 2 rise 1",
        ]
        lines += [f"    server {name} {host}:{p} check" for name, host, p in servers]
        config = self.dir / "haproxy.cfg"
        config.write_text("\n".join(lines) + "\n")
        proc = self.spawn("haproxy", [need("haproxy"), "-f", str(config), "-db"])
        hap = HAProxy(port, socket_path, proc)
        wait_for(lambda: proc.alive() and "Name: HAProxy" in hap.command("show info"),
                 "HAProxy's runtime API")
        return hap

    def worker(self, box_id: str, env: dict[str, str], name: str | None = None,
               loglevel: str = "INFO") -> Proc:
        """`orchestrator-worker` at the systemd unit's log level (INFO: a line per task)."""
        return self.spawn(name or f"worker-{box_id}",
                          [PYTHON, "-m", "worker.main", "--loglevel", loglevel], env)

    def wait_ready(self, procs: Sequence[Proc], timeout: float = 120.0) -> None:
        """Celery logs ` ready.` (at INFO) once it consumes its queues."""
        for proc in procs:
            wait_for(lambda p=proc: (not p.alive()) or b" ready." in p.log_path.read_bytes(),
                     f"{proc.name} ready (log {proc.log_path})", timeout=timeout, interval=0.1)
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited:\n{proc.log()}")

    # -- the CLI -------------------------------------------------------------------------

    def cli(self, env: dict[str, str], *args: str, timeout: float = 600.0,
            profile_to: Path | None = None) -> CliRun:
        """Run `orchestrator ARGS`; wall time and the process's own peak RSS (wait4).
        With `profile_to`, under pyinstrument (its text report goes there)."""
        argv = [PYTHON, "-m", "orchestrator.cli", *args]
        if profile_to is not None:
            argv[1:1] = ["-m", "pyinstrument", "-r", "text", "-o", str(profile_to)]
        n = sum(1 for p in self.dir.glob("cli-*.out"))
        out_path, err_path = self.dir / f"cli-{n}.out", self.dir / f"cli-{n}.err"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            started = time.perf_counter()
            popen = subprocess.Popen(argv, env=env,
                                     stdout=out, stderr=err, cwd=ROOT, stdin=subprocess.DEVNULL)
            timer = threading.Timer(timeout, popen.kill)
            timer.start()
            try:
                _, status, usage = os.wait4(popen.pid, 0)
            finally:
                timer.cancel()
            wall = time.perf_counter() - started
        popen.returncode = os.waitstatus_to_exitcode(status)
        return CliRun(list(args), popen.returncode, out_path.read_text(), err_path.read_text(),
                      wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime)


def remove_containers(client: docker.DockerClient, only_orphans: bool) -> None:
    """This run's labelled containers (or those of dead runs); sparse: no inspect each."""
    for c in client.containers.list(all=True, sparse=True, filters={"label": BENCH_LABEL}):
        owner = (c.attrs.get("Labels") or {}).get(OWNER_LABEL, "")
        mine = owner == str(os.getpid())
        if (mine and not only_orphans) or (not mine and not _alive(owner)):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                c.remove(force=True)


def _alive(pid: str) -> bool:
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, every core."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / tick, sum(values) / tick


class CpuMeter:
    """CPU seconds each named process and the whole machine used between start and stop."""

    def __init__(self, procs: dict[str, int]) -> None:
        self.procs = procs
        self.before = {name: cpu_seconds(pid) for name, pid in procs.items()}
        self.machine0 = machine_busy()
        self.used: dict[str, float] = {}
        self.machine_busy_s = self.machine_total_s = 0.0

    def stop(self) -> CpuMeter:
        self.used = {n: cpu_seconds(p) - self.before[n] for n, p in self.procs.items()}
        busy, total = machine_busy()
        self.machine_busy_s = busy - self.machine0[0]
        self.machine_total_s = total - self.machine0[1]
        return self


# -- environments -----------------------------------------------------------------------------


def worker_env(box_id: str, box_type: str, broker_url: str, redis_url: str, prefix: str,
               **extra: str) -> dict[str, str]:
    """A box worker's settings: the product's defaults unless a benchmark says otherwise."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update({
        "ORCHESTRATOR_BOX_ID": box_id,
        "ORCHESTRATOR_BOX_TYPE": box_type,
        "ORCHESTRATOR_BROKER_URL": broker_url,
        "ORCHESTRATOR_REDIS_URL": redis_url,
        "ORCHESTRATOR_KEY_PREFIX": prefix,
        "ORCHESTRATOR_EXTRA_LABELS": json.dumps(CONTAINER_LABELS),
        "ORCHESTRATOR_HAPROXY_SERVER": box_id,
    })
    env.update({f"ORCHESTRATOR_{k.upper()}": v for k, v in extra.items()})
    return env


def cli_env(boxes_dir: Path, broker_url: str, redis_url: str, prefix: str,
            **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update({
        "ORCHESTRATOR_BOXES_DIR": str(boxes_dir),
        "ORCHESTRATOR_BROKER_URL": broker_url,
        "ORCHESTRATOR_REDIS_URL": redis_url,
        "ORCHESTRATOR_KEY_PREFIX": prefix,
        # The fleet is the live heartbeats: no AWS credentials are looked for (nor IMDS).
        "ORCHESTRATOR_FLEET_SOURCE": "heartbeats",
    })
    env.update({f"ORCHESTRATOR_{k.upper()}": v for k, v in extra.items()})
    return env


# -- images -----------------------------------------------------------------------------------

_WEB_DOCKERFILE = f"""\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
COPY www /www
LABEL {BENCH_LABEL}=1
EXPOSE {APP_PORT}
CMD ["busybox", "httpd", "-f", "-p", "{APP_PORT}", "-h", "/www"]
"""


def build_web_images(client: docker.DockerClient) -> dict[str, str]:
    """orch-bench/web:v1 and :v2, busybox httpd FROM scratch (2 MB): GET / says the version,
    GET /health says ok. The engine caches them across runs."""
    if not BUSYBOX.is_file():
        raise SystemExit("/bin/busybox missing: apt-get install busybox-static")
    tags = {}
    for version in ("v1", "v2"):
        tag = f"orch-bench/web:{version}"
        with tempfile.TemporaryDirectory(prefix="orch-bench-build-") as ctx:
            root = Path(ctx)
            (root / "Dockerfile").write_text(_WEB_DOCKERFILE)
            shutil.copy2(BUSYBOX, root / "busybox")
            (root / "www").mkdir()
            (root / "www" / "index.html").write_text(f"{version}\n")
            (root / "www" / "health").write_text("ok\n")
            client.images.build(path=ctx, tag=tag, rm=True, forcerm=True,
                                labels={BENCH_LABEL: "1"})
        tags[version] = tag
    return tags


def forget_local(client: docker.DockerClient, *refs: str) -> None:
    """Untag these references; once none is left the engine deletes the image (unless a
    container uses it), so the next pull really downloads its own layers."""
    for ref in refs:
        with contextlib.suppress(docker.errors.ImageNotFound, docker.errors.APIError):
            client.images.remove(ref)


def wait_heartbeats(product: redis.Redis[bytes], prefix: str, boxes: Sequence[str],
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


# -- the event stream -------------------------------------------------------------------------


def read_events(client: redis.Redis[bytes], prefix: str, box_type: str,
                rollout: str | None = None) -> list[dict[str, str]]:
    """Every event of the box type (of one rollout if given), in order, with its stream id."""
    rows = client.xrange(f"{prefix}events:{box_type}")
    out = []
    for sid, data in rows:
        e = {k.decode(): v.decode() for k, v in data.items()}
        e["id"] = sid.decode()
        if rollout is None or e.get("rollout") == rollout:
            out.append(e)
    return out


def ms(event: dict[str, str]) -> int:
    return int(event["id"].split("-")[0])


def find(events: list[dict[str, str]], box: str, step: str, phase: str) -> dict[str, str] | None:
    return next((e for e in events if e.get("box") == box and e.get("step") == step
                 and e.get("phase") == phase), None)


def windows(events: list[dict[str, str]]) -> dict[str, dict[str, float]]:
    """Per box, from stream ids (one clock): out of service from leave_lb's start (the drain
    begins) to join_lb's end (back in, healthy), with the pull and drain inside or not."""
    out: dict[str, dict[str, float]] = {}
    for box in sorted({e["box"] for e in events if e.get("box")}):
        leave = find(events, box, "deploy.leave_lb", "start")
        left = find(events, box, "deploy.leave_lb", "end")
        joined = find(events, box, "deploy.join_lb", "end")
        pull_end = find(events, box, "deploy.pull", "end")
        if not (leave and left and joined):
            continue
        out[box] = {
            "window_s": (ms(joined) - ms(leave)) / 1000,
            "drain_s": (ms(left) - ms(leave)) / 1000,
            "pull_ends_before_window_s": (ms(leave) - ms(pull_end)) / 1000 if pull_end else 0.0,
        }
    return out


def breakdown(events: list[dict[str, str]], box: str) -> dict[str, float]:
    """Seconds of the window in each step (leave_lb, swap, restore, join_lb) and between
    them (Celery's hand-over from one step to the next), from stream ids."""
    steps = ("deploy.leave_lb", "deploy.swap", "deploy.restore", "deploy.join_lb")
    out: dict[str, float] = {"hops": 0.0}
    prev_end: int | None = None
    for step in steps:
        start, end = find(events, box, step, "start"), find(events, box, step, "end")
        if not (start and end):
            continue
        out[step.removeprefix("deploy.")] = (ms(end) - ms(start)) / 1000
        if prev_end is not None:
            out["hops"] += (ms(start) - prev_end) / 1000
        prev_end = ms(end)
    return out


# -- who sent which Redis command --------------------------------------------------------------

_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_SOURCE = re.compile(r"^[0-9.]+ \[\d+ ([^\]]+)\] ")


class Monitor:
    """`redis-cli monitor` into a file, then every command attributed to a process by its
    client port (read from /proc while the processes live); `lua` marks a script's own calls."""

    def __init__(self, stack: Stack, server: RedisServer, name: str = "monitor") -> None:
        self.path = stack.dir / f"{name}.txt"
        self._out = self.path.open("wb")
        self.popen = subprocess.Popen([need("redis-cli"), "-p", str(server.port), "monitor"],
                                      stdout=self._out, stderr=subprocess.DEVNULL)
        self.port = server.port
        wait_for(lambda: self.path.stat().st_size > 0 or None, "redis-cli monitor answering",
                 timeout=10)

    def stop(self) -> None:
        self.popen.terminate()
        self.popen.wait(10)
        self._out.close()

    def commands(self) -> Iterator[tuple[str, str, list[str]]]:
        """(source "ip:port" or "lua", COMMAND, args) for each line."""
        with self.path.open("rb") as f:
            for raw in f:
                line = raw.decode(errors="replace")
                m = _SOURCE.match(line)
                if not m:
                    continue
                words = _QUOTED.findall(line[m.end():])
                if words:
                    yield m.group(1), words[0].upper(), words[1:]


def client_ports(pids: Sequence[int], server_port: int) -> dict[int, int]:
    """local port -> pid of each TCP connection these processes hold to `server_port`."""
    inodes: dict[str, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes[target[8:-1]] = pid
    out: dict[int, int] = {}
    for table_path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table_path).read_text().splitlines()[1:]:
                cols = row.split()
                local, remote, inode = cols[1], cols[2], cols[9]
                if int(remote.rsplit(":", 1)[1], 16) == server_port and inode in inodes:
                    out[int(local.rsplit(":", 1)[1], 16)] = inodes[inode]
    return out


# -- a bounded, rate-capped request loop (loopback only) ------------------------------------


@dataclass
class TrafficStats:
    ok: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    bodies: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def total(self) -> int:
        return self.ok + self.failed


class TrafficLoop:
    """`threads` clients, each at most `rate` req/s, fresh connection each, until a bound."""

    def __init__(self, url: str, threads: int = 4, rate: float = 100.0,
                 max_requests: int = 50_000, max_seconds: float = 180.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not ipaddress.ip_address(parts.hostname or "").is_loopback:
            raise ValueError(f"traffic goes to http:// on loopback only, not {url!r}")
        self.host, self.port, self.path = parts.hostname or "", parts.port or 80, parts.path or "/"
        self.threads, self.rate = threads, rate
        self.max_requests, self.max_seconds = max_requests, max_seconds
        self.stats = TrafficStats()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._claimed = 0
        self._workers: list[threading.Thread] = []
        self._t0 = 0.0

    def __enter__(self) -> TrafficLoop:
        self._t0 = time.monotonic()
        for i in range(self.threads):
            t = threading.Thread(target=self._run, name=f"traffic-{i}", daemon=True)
            self._workers.append(t)
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> TrafficStats:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=15)
        self.stats.elapsed = time.monotonic() - self._t0
        return self.stats

    def _claim(self) -> bool:
        with self._lock:
            if self._claimed >= self.max_requests:
                return False
            self._claimed += 1
            return True

    def _run(self) -> None:
        interval, deadline = 1.0 / self.rate, self._t0 + self.max_seconds
        next_at = time.monotonic()
        while not self._stop.is_set() and time.monotonic() < deadline and self._claim():
            kind, body = self._request()
            with self._lock:
                if kind is None:
                    self.stats.ok += 1
                    self.stats.bodies[body] += 1
                else:
                    self.stats.failures[kind] += 1
                    if len(self.stats.samples) < 10:
                        self.stats.samples.append(f"{time.monotonic() - self._t0:.2f}s {kind}")
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)

    def _request(self) -> tuple[str | None, str]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            conn.request("GET", self.path, headers={"Connection": "close"})
            resp = conn.getresponse()
            body = resp.read().decode(errors="replace").strip()
        except ConnectionRefusedError:
            return "refused", ""
        except (ConnectionResetError, BrokenPipeError):
            return "reset", ""
        except TimeoutError:
            return "timeout", ""
        except (OSError, http.client.HTTPException) as exc:
            return type(exc).__name__, ""
        finally:
            conn.close()
        return (None, body) if 200 <= resp.status < 300 else (f"http_{resp.status}", body)


class StateSampler:
    """Samples HAProxy's server states every `interval`: when each server was not UP."""

    def __init__(self, hap: HAProxy, interval: float = 0.01) -> None:
        self.hap, self.interval = hap, interval
        self.samples: list[tuple[float, dict[str, tuple[str, int]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hap-sampler", daemon=True)

    def __enter__(self) -> StateSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self.samples.append((time.monotonic(), self.hap.servers()))
            self._stop.wait(self.interval)

    def out_of_service(self) -> dict[str, list[float]]:
        """server -> lengths of each stretch it was not UP (drain and maint count as out)."""
        out: dict[str, list[float]] = {}
        since: dict[str, float] = {}
        for at, servers in self.samples:
            for name, (status, _) in servers.items():
                up = status.startswith("UP")
                if not up and name not in since:
                    since[name] = at
                elif up and name in since:
                    out.setdefault(name, []).append(at - since.pop(name))
        for name, at in since.items():  # still out at the end
            out.setdefault(name, []).append(self.samples[-1][0] - at)
        return out


# -- output -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the numbers ran on."""
    def first_line(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "unknown"

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis": first_line(["redis-server", "--version"]),
        "haproxy": first_line(["haproxy", "-v"]),
        "load_average_1m_at_save": round(os.getloadavg()[0], 2),
    }
    with contextlib.suppress(Exception):
        client = docker.from_env()
        info["docker_engine"] = client.version()["Version"]
        client.close()
    with contextlib.suppress(Exception):
        import celery
        import kombu

        info["celery"], info["kombu"] = celery.__version__, kombu.__version__
    return info


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[_cell(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [title, line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                      enumerate(zip(r, widths, strict=True))) for r in cells]
    text = "\n".join(out)
    print("\n" + text, flush=True)
    return text


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def verdict(measured: float, target: float, smaller_is_better: bool = True) -> str:
    met = measured <= target if smaller_is_better else measured >= target
    return "met" if met else "NOT MET"


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    data = {"benchmark": name, "at": stamp, "machine": machine(), **data}
    text = json.dumps(data, indent=2, default=str)
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_text(text)
    (RESULTS / f"{name}-latest.json").write_text(text)
    print(f"\nresult: {path.relative_to(ROOT)}", flush=True)
    return path


@contextlib.contextmanager
def timed(label: str) -> Iterator[None]:
    t0 = time.perf_counter()
    print(f"... {label}", flush=True)
    yield
    print(f"    {label}: {time.perf_counter() - t0:.1f} s", flush=True)
