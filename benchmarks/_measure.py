"""What the benchmarks measure: the event stream's windows, who sent which Redis command,
CPU seconds, and HAProxy's server states over time."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import redis

from devstack.haproxy import HAProxy
from devstack.process import find_binary, wait_for
from devstack.redis import RedisServer


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


# Which process is whose, by its name (/proc/PID/comm: at most 15 characters); Python ones by
# their command line.
_GROUPS = (("docker engine", ("dockerd", "containerd", "containerd-shim", "runc", "docker-proxy",
                              "docker-init", "exe")),
           ("app containers (busybox httpd)", ("busybox", "httpd")), ("haproxy", ("haproxy",)),
           ("redis", ("redis-server",)), ("our workers", ()),
           ("benchmark (traffic, sampler)", ()))
COMMAND = "the command (our CLI, or the play and its forks)"  # the benchmark's reaped children


def _group(pid: str, comm: str) -> str:
    if comm.startswith(("python", "orchestrator", "celery")):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        return "our workers" if b"worker.main" in argv else "benchmark (traffic, sampler)"
    return next((g for g, names in _GROUPS if comm in names), "rest")


def cpu_by_process() -> dict[tuple[int, str], tuple[str, float]]:
    """(pid, start time) -> (group, CPU seconds of it and its reaped children) of every process."""
    tick, out = os.sysconf("SC_CLK_TCK"), {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            text = stat.read_text()
            comm, rest = text[text.index("(") + 1:text.rindex(")")], text.rsplit(")", 1)[1].split()
            # utime stime cutime cstime; this process's children are the command (CpuGroups)
            own = int(stat.parent.name) == os.getpid()
            used = sum(int(v) for v in rest[11:13 if own else 15]) / tick
            out[(int(stat.parent.name), rest[19])] = (_group(stat.parent.name, comm), used)
    return out


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


class CpuGroups:
    """CPU seconds each group of processes and the whole machine used between start and stop:
    what a rollout on this machine competes with (and what it costs the engine)."""

    def __init__(self) -> None:
        self.before, self.machine0 = cpu_by_process(), machine_busy()
        self.children0 = _children_cpu()
        self.groups: dict[str, float] = {}
        self.busy_s = self.total_s = 0.0

    def stop(self) -> CpuGroups:
        busy, total = machine_busy()
        self.busy_s, self.total_s = busy - self.machine0[0], total - self.machine0[1]
        for key, (group, used) in cpu_by_process().items():
            was = self.before.get(key, (group, 0.0))[1]
            self.groups[group] = self.groups.get(group, 0.0) + max(used - was, 0.0)
        self.groups[COMMAND] = _children_cpu() - self.children0
        self.groups.pop("rest", None)  # the machine's figure holds it, and exited processes
        self.groups[REST] = max(self.busy_s - sum(self.groups.values()), 0.0)
        return self

    def row(self) -> list[float]:
        """Busy CPU seconds, busy share of every core, then each group's seconds."""
        share = self.busy_s / self.total_s if self.total_s else 0.0
        return [self.busy_s, share, *(self.groups.get(g, 0.0) for g in CPU_COLUMNS[2:])]


REST = "rest (kernel, exited processes)"
CPU_COLUMNS = ["busy CPU s", "busy share of all cores", COMMAND, *(g for g, _ in _GROUPS), REST]


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

    def __init__(self, workdir: Path, server: RedisServer, name: str = "monitor") -> None:
        self.path = workdir / f"{name}.txt"
        self._out = self.path.open("wb")
        self.popen = subprocess.Popen([find_binary("redis-cli"), "-p", str(server.port), "monitor"],
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

