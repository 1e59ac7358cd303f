"""Fixtures: real HAProxy processes in front of simulated boxes (threaded HTTP servers)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.harness.common import TIMINGS, free_port, need_binary, wait_for

BACKEND = "web"
# The longest /slow request a test may ask for: every request ends by itself.
MAX_SLOW_SECONDS = 10.0

# (server name, host, port) of one simulated box behind HAProxy.
ServerSpec = tuple[str, str, int]


def box_address(index: int) -> str:
    """Each simulated box binds its own loopback address, so all can use one port."""
    return f"127.0.0.{11 + index}"


# -- simulated boxes --------------------------------------------------------------------------


class _BoxServer(ThreadingHTTPServer):
    daemon_threads = True  # a /slow request in flight must not hold up stop()
    body: str

    def handle_error(self, request: Any, client_address: Any) -> None:
        # HAProxy resets a health check's connection once it has read the status line:
        # normal, and not worth a traceback per check.
        if isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            return
        super().handle_error(request, client_address)


class _BoxHandler(BaseHTTPRequestHandler):
    # HTTP/1.0 (the default) closes after each response: no idle keep-alive connection in
    # HAProxy's pool can be cut by a stop and be counted as a swap failure.
    server: _BoxServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/health":
            self._reply(b"ok")
            return
        if url.path == "/slow":
            query = urllib.parse.parse_qs(url.query)
            seconds = min(float(query.get("seconds", ["1"])[0]), MAX_SLOW_SECONDS)
            time.sleep(seconds)  # the point of /slow: a request that is in flight for a while
        self._reply(self.server.body.encode())

    def _reply(self, payload: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return None  # thousands of requests per test: keep the output readable


class HttpBackend:
    """One simulated box: GET /health → ok, GET / → body, GET /slow?seconds=N → body later."""

    def __init__(self, host: str, port: int, body: str) -> None:
        self.host = host
        self.port = port
        self.body = body
        self._server: _BoxServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self, body: str | None = None) -> HttpBackend:
        if self._server is not None:
            raise RuntimeError(f"backend {self.url} already runs")
        if body is not None:
            self.body = body
        server = _BoxServer((self.host, self.port), _BoxHandler)
        server.body = self.body
        # A short poll interval: shutdown() waits for it, and a swap should be quick.
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"box-{self.host}:{self.port}", daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    def answers(self) -> str | None:
        """The body served at / directly (not through HAProxy), or None if it does not answer."""
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as sock:
                sock.sendall(b"GET / HTTP/1.0\r\nHost: box\r\n\r\n")
                reply = b""
                while chunk := sock.recv(65536):
                    reply += chunk
        except OSError:
            return None
        head, _, body = reply.partition(b"\r\n\r\n")
        return body.decode() if head.startswith(b"HTTP/1.0 200") else None


@dataclass
class HttpBackends:
    """The simulated boxes of one test; every one still running is stopped at teardown."""

    backends: list[HttpBackend] = field(default_factory=list)

    def start(self, host: str, port: int, body: str = "v1") -> HttpBackend:
        backend = HttpBackend(host, port, body).start()
        self.backends.append(backend)
        return backend

    def boxes(self, count: int, body: str = "v1") -> list[HttpBackend]:
        """`count` boxes on 127.0.0.11, .12, … all on one port, like a real fleet."""
        port = free_port(box_address(0))
        return [self.start(box_address(i), port, body) for i in range(count)]

    def stop_all(self) -> None:
        for backend in self.backends:
            backend.stop()


@pytest.fixture
def http_backends() -> Iterator[HttpBackends]:
    backends = HttpBackends()
    try:
        yield backends
    finally:
        backends.stop_all()


# -- HAProxy ----------------------------------------------------------------------------------


def admin_command(socket_path: str, command: str, timeout: float = 5.0) -> str:
    """One runtime API command (the harness's own client, independent of worker/lb)."""
    chunks: list[bytes] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        sock.sendall(command.encode() + b"\n")
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def render_config(
    servers: list[ServerSpec], port: int, socket_path: str, *, check_inter_ms: int = 200
) -> str:
    lines = [
        "global",
        f"    stats socket {socket_path} mode 600 level admin",
        "    maxconn 2000",
        "defaults",
        "    mode http",
        # No retry and no redispatch: a request sent to a box that is gone must fail, so
        # that a test of a swap without draining can see it.
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
        f"    default-server inter {check_inter_ms}ms fall 2 rise 1",
    ]
    lines += [f"    server {name} {host}:{srv_port} check" for name, host, srv_port in servers]
    return "\n".join(lines) + "\n"


@dataclass
class HAProxyHandle:
    """A running `haproxy -db` with one backend `web`."""

    url: str
    socket_path: str
    backend: str
    config_path: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    start_seconds: float = 0.0

    def command(self, command: str) -> str:
        return admin_command(self.socket_path, command)

    def server_checks(self) -> dict[str, str]:
        """check_status of each server in `show stat` (L7OK once a health check passed)."""
        reply = self.command(f"show stat {self.backend} 4 -1")
        header, *rows = reply.lstrip("# ").splitlines()
        columns = header.split(",")
        out = {}
        for row in rows:
            if row:
                values = dict(zip(columns, row.split(","), strict=False))
                out[values["svname"]] = values["check_status"]
        return out

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def haproxy_factory() -> Iterator[Callable[..., HAProxyHandle]]:
    binary = need_binary("haproxy")
    handles: list[HAProxyHandle] = []
    # A unix socket path must fit in 108 bytes: pytest's tmp_path can be longer than that.
    workdir = Path(tempfile.mkdtemp(prefix="orch-haproxy-"))

    def start(
        servers: list[ServerSpec], *, check_inter_ms: int = 200, wait_healthy: bool = True
    ) -> HAProxyHandle:
        directory = workdir / str(len(handles))
        directory.mkdir()
        socket_path = str(directory / "admin.sock")
        port = free_port()
        config_path = directory / "haproxy.cfg"
        config_path.write_text(
            render_config(servers, port, socket_path, check_inter_ms=check_inter_ms)
        )
        log_path = directory / "haproxy.log"
        started = time.monotonic()
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [binary, "-f", str(config_path), "-db"], stdout=log, stderr=subprocess.STDOUT
            )
        handle = HAProxyHandle(
            f"http://127.0.0.1:{port}/", socket_path, BACKEND, config_path, log_path, process
        )
        handles.append(handle)

        def answers_or_exited() -> bool:
            # An exited haproxy (a bad config, a port taken) ends the wait at once.
            return process.poll() is not None or "Name: HAProxy" in handle.command("show info")

        wait_for(answers_or_exited, "HAProxy's runtime API", timeout=TIMINGS.service_start)
        if process.poll() is not None:
            pytest.fail(f"haproxy exited with {process.returncode}: {handle.log()}", pytrace=False)
        handle.start_seconds = time.monotonic() - started
        if wait_healthy and servers:
            # Until its first check HAProxy assumes a server is up; tests want it proven.
            wait_for(
                lambda: all(s == "L7OK" for s in handle.server_checks().values()),
                "every HAProxy server to pass a health check",
            )
        return handle

    try:
        yield start
    finally:
        for handle in handles:
            handle.stop()
        shutil.rmtree(workdir, ignore_errors=True)
