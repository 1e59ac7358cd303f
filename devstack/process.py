"""A service as a process: start it, wait until it is ready (with a deadline), stop it by PID."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

T = TypeVar("T")

# The venv's own scripts (moto_server, celery, orchestrator-worker) before PATH's.
BIN = Path(sys.executable).parent


class ServiceError(RuntimeError):
    """A service could not start or has exited; the message ends with its log's last lines."""


class MissingTool(ServiceError):
    """A program a service needs is not installed; the message says how to install it."""


def find_binary(name: str, hint: str = "run `bash scripts/setup.sh`") -> str:
    path = BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        raise MissingTool(f"{name} is not installed: {hint}")
    return found


def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 15.0,
             interval: float = 0.05) -> T:
    """Poll `probe` until it returns something truthy; TimeoutError naming `what` at the
    deadline. A ServiceError (the process waited on has exited) ends the wait at once."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except ServiceError:
            raise
        except Exception as exc:  # the service may not answer yet
            last, value = exc, None
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what} (last error: {last!r})")


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "    (no log)"
    return "\n".join("    " + line for line in text[-lines:])


# -- by PID: what another process (`demo.py --stop`) can stop too -----------------------------


def start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (/proc/PID/stat field 22): a PID reused later differs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return None if fields[0] == "Z" else fields[19]  # a zombie has ended


def pid_alive(pid: int, started: str) -> bool:
    return start_time(pid) == started


def _signal(pid: int, started: str, sig: int) -> None:
    if pid_alive(pid, started):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def stop_pids(records: Sequence[dict[str, Any]], grace: float = 8.0) -> list[str]:
    """SIGTERM stage by stage (clients of the broker first, the broker last), wait up to
    `grace`, then SIGKILL; the names of the processes that had to be killed."""
    killed: list[str] = []
    for stage in sorted({int(r["stage"]) for r in records}):
        group = [r for r in records if int(r["stage"]) == stage]
        for r in group:
            _signal(r["pid"], r["start"], signal.SIGTERM)
        for wait, sig in ((grace, signal.SIGKILL), (5.0, None)):
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and any(pid_alive(r["pid"], r["start"])
                                                      for r in group):
                time.sleep(0.05)
            for r in group:
                if sig is not None and pid_alive(r["pid"], r["start"]):
                    _signal(r["pid"], r["start"], sig)
                    killed.append(f"{r['name']} (pid {r['pid']})")
    return killed


def stop_popen(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Terminate, wait with a deadline, then kill: never leave a zombie or a ResourceWarning."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


# -- the base of every service ------------------------------------------------------------------


class Service:
    """One real service as a process: argv(), ready() and url say what it is; start() runs it
    and waits until ready() with a deadline; stop() by PID (SIGTERM, then SIGKILL); kill9()
    and restart() (same port, same files) for fault tests. Log: WORKDIR/NAME.log (appended)."""

    ready_timeout = 30.0
    stop_stage = 1  # stop_pids() order: 0 the broker's clients, 1 the rest, 2 the broker

    def __init__(self, workdir: Path, name: str, *, detach: bool = False) -> None:
        self.name = name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{name}.log"
        # detach: its own session, so that Ctrl-C reaches the caller only, which stops it.
        self.detach = detach
        self.cwd: Path = self.workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0  # where this run's output starts in the (appended) log

    # -- what each service says about itself ---------------------------------------------------

    def argv(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        return None  # this process's own

    def prepare(self) -> None:
        """Write what the process reads (configs, directories): before every start."""

    def ready(self) -> bool:
        raise NotImplementedError

    @property
    def url(self) -> str:
        raise NotImplementedError

    # -- life cycle -----------------------------------------------------------------------------

    def launch(self) -> Self:
        """Start the process without waiting for it (start several, then wait for each)."""
        if self.running:
            raise ServiceError(f"{self.name} already runs (pid {self.pid})")
        self.prepare()
        argv = self.argv()
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self._log_offset = log.tell()
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=self.environment(),
                                         cwd=self.cwd, start_new_session=self.detach)
        return self

    def wait_ready(self, timeout: float | None = None) -> Self:
        wait_for(lambda: self.check_running() and self.ready(),
                 f"{self.name} ready (log {self.log_path})", timeout or self.ready_timeout)
        return self

    def start(self, timeout: float | None = None) -> Self:
        """Launch and wait until ready; a start that fails leaves no process behind."""
        self.launch()
        try:
            return self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is not None:
            stop_popen(self.proc, timeout)

    def kill9(self) -> None:
        """SIGKILL, as a crash or an OOM kill would: no clean-up, no final write."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self, timeout: float | None = None) -> Self:
        """Stop if it runs, then start again: the same port, data and config files."""
        self.stop()
        return self.start(timeout)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ServiceError(f"{self.name} was never started")
        return self.proc.pid

    def check_running(self) -> bool:
        """True while it runs; ServiceError with the end of its log once it has exited."""
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise ServiceError(f"{self.name} exited (status {code}); the end of its log "
                               f"({self.log_path}):\n{tail(self.log_path)}")
        return True

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def output(self) -> bytes:
        """What the process has logged since its last launch (not a previous run's lines)."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(self._log_offset)
                return f.read()
        except FileNotFoundError:
            return b""

    def record(self) -> dict[str, Any]:
        """What stop_pids() needs to stop it from another process."""
        return {"name": self.name, "pid": self.pid, "start": start_time(self.pid) or "",
                "stage": self.stop_stage, "log": str(self.log_path)}

    def __enter__(self) -> Self:
        return self if self.running else self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
