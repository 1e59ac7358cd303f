"""HAProxy in front of simulated boxes: one backend, health checks, the runtime API socket."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from devstack.net import LOCALHOST, free_port
from devstack.process import Service, ServiceError, find_binary, wait_for

BACKEND = "web"
ServerSpec = tuple[str, str, int]  # (server name, host, port) of one box behind HAProxy
MAX_SOCKET_PATH = 100  # a unix socket path must fit in 108 bytes


def render_config(servers: Sequence[ServerSpec], port: int, socket_path: str, *,
                  backend: str = BACKEND, check_inter_ms: int = 200, maxconn: int = 2000,
                  state_file: str | None = None) -> str:
    """`state_file`: the README's recipe for reloads (server-state-file and
    load-server-state-from-file), the servers' ports and states kept across a reload."""
    lines = [
        "global",
        f"    stats socket {socket_path} mode 600 level admin",
        f"    maxconn {maxconn}",
        # Server state changes, timestamped to the microsecond, on stdout (the process log):
        # what a test reads to tell when a box left or rejoined (state_changes()).
        "    log stdout format rfc5424 local0 info",
        *([f"    server-state-file {state_file}"] if state_file else []),
        "defaults",
        "    mode http",
        "    log global",
        *(["    load-server-state-from-file global"] if state_file else []),
        "    option dontlog-normal",
        # No retry, no redispatch: a request sent to a box that is gone fails, so that a swap
        # without draining shows up as failed requests.
        "    retries 0",
        "    timeout connect 1s",
        "    timeout client 10s",
        "    timeout server 10s",
        "    timeout http-request 5s",
        "    timeout check 1s",
        "frontend fe",
        f"    bind {LOCALHOST}:{port}",
        f"    default_backend {backend}",
        f"backend {backend}",
        "    balance roundrobin",
        "    option httpchk GET /health",
        f"    default-server inter {check_inter_ms}ms fall 2 rise 1",
    ]
    lines += [f"    server {name} {host}:{srv_port} check" for name, host, srv_port in servers]
    return "\n".join(lines) + "\n"


def admin_command(socket_path: str, command: str, timeout: float = 5.0) -> str:
    """One runtime API command (the dev stack's own client, independent of worker/lb)."""
    chunks: list[bytes] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        sock.sendall(command.encode() + b"\n")
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


@dataclass(frozen=True)
class StateChange:
    at: datetime
    server: str  # the server's name (a box id)
    text: str  # HAProxy's words: "is going DOWN for maintenance", "enters drain state", ...


_STATE_LINE = re.compile(
    r"^<\d+>1 (?P<at>\S+) \S+ haproxy \d+ \S+ \S+ "
    r"Server (?P<backend>[^/\s]+)/(?P<server>\S+) (?P<text>.*)$"
)


def parse_state_changes(log: str) -> list[StateChange]:
    """The `Server <backend>/<server> ...` lines of an rfc5424 log."""
    out = []
    for line in log.splitlines():
        if m := _STATE_LINE.match(line):
            out.append(StateChange(datetime.fromisoformat(m["at"]), m["server"], m["text"]))
    return out


class HAProxy(Service):
    """`haproxy -f CFG -db` with `stats socket ... level admin`; until its first check it
    takes every server for up: wait_checked() waits for every server's check to pass.
    `reloadable`: master-worker (`-W`), reloaded by SIGUSR2 as `systemctl reload haproxy`
    does; `state_file`: with the README's server-state file, saved before each reload."""

    def __init__(self, workdir: Path, servers: Sequence[ServerSpec], name: str = "haproxy", *,
                 backend: str = BACKEND, check_inter_ms: int = 200, maxconn: int = 2000,
                 port: int | None = None, detach: bool = False, reloadable: bool = False,
                 state_file: bool = False) -> None:
        super().__init__(workdir, name, detach=detach)
        self.servers_spec = list(servers)
        self.backend, self.check_inter_ms, self.maxconn = backend, check_inter_ms, maxconn
        self.reloadable = reloadable or state_file
        self.state_path = self.workdir / f"{name}.state" if state_file else None
        self.port = port or free_port()
        self.config_path = self.workdir / f"{name}.cfg"
        sock_dir = self.workdir
        self._own_dir: Path | None = None
        if len(str(sock_dir / f"{name}.sock")) > MAX_SOCKET_PATH:  # pytest's tmp_path can be
            sock_dir = self._own_dir = Path(tempfile.mkdtemp(prefix="devstack-hap-"))
        self.socket_path = str(sock_dir / f"{name}.sock")

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}/"

    def prepare(self) -> None:
        Path(self.socket_path).parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(render_config(
            self.servers_spec, self.port, self.socket_path, backend=self.backend,
            check_inter_ms=self.check_inter_ms, maxconn=self.maxconn,
            state_file=str(self.state_path) if self.state_path else None))

    def argv(self) -> list[str]:
        master_worker = ["-W"] if self.reloadable else []
        return [find_binary("haproxy"), *master_worker, "-f", str(self.config_path), "-db"]

    def worker_pid(self) -> int:
        """The pid of the process that answers the runtime API (a new one after a reload)."""
        info = self.command("show info")
        return int(next(line.split(":", 1)[1] for line in info.splitlines()
                        if line.startswith("Pid:")))

    def reload(self, timeout: float = 10.0) -> None:
        """What an operator's reload does: the state file saved first (when configured, as
        the README says), then SIGUSR2 to the master; returns once a new worker answers."""
        if not self.reloadable:
            raise ServiceError(f"{self.name} was not started reloadable (master-worker)")
        if self.state_path is not None:
            self.state_path.write_text(self.command("show servers state"))
        before = self.worker_pid()
        os.kill(self.pid, signal.SIGUSR2)
        wait_for(lambda: self._answers_from_other(before), f"{self.name} reloaded "
                 f"(log {self.log_path})", timeout)

    def _answers_from_other(self, pid: int) -> bool:
        try:
            return self.worker_pid() != pid
        except OSError:  # the new worker is binding the socket
            return False

    def ready(self) -> bool:
        return "Name: HAProxy" in self.command("show info")

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)

    def command(self, command: str, timeout: float = 5.0) -> str:
        return admin_command(self.socket_path, command, timeout)

    def stat(self) -> list[dict[str, str]]:
        """`show stat` of the backend's servers, one dict a server (svname, status, scur, ...)."""
        header, *rows = self.command(f"show stat {self.backend} 4 -1").lstrip("# ").splitlines()
        columns = header.split(",")
        return [dict(zip(columns, row.split(","), strict=False)) for row in rows if row]

    def servers(self) -> dict[str, tuple[str, int]]:
        """server -> (status: UP, DOWN, MAINT, DRAIN, ...; current sessions)."""
        return {s["svname"]: (s["status"], int(s["scur"] or 0)) for s in self.stat()}

    def server_checks(self) -> dict[str, str]:
        """server -> check_status (L7OK once a health check passed)."""
        return {s["svname"]: s["check_status"] for s in self.stat()}

    def state_changes(self) -> list[StateChange]:
        """Every server state change HAProxy logged, oldest first (its own log, not samples)."""
        return parse_state_changes(self.log_path.read_text(errors="replace"))

    def all_up(self) -> bool:
        return all(status.startswith("UP") for status, _ in self.servers().values())

    def all_checked(self) -> bool:
        return all(check == "L7OK" for check in self.server_checks().values())
