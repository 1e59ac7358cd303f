"""Fixtures: real HAProxy processes in front of simulated boxes (threaded HTTP servers)."""

from __future__ import annotations

import shutil
import socket
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

from devstack.haproxy import HAProxy, ServerSpec
from tests.harness.common import free_port, started, wait_for

# The longest /slow request a test may ask for: every request ends by itself.
MAX_SLOW_SECONDS = 10.0


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


@pytest.fixture
def haproxy_factory() -> Iterator[Callable[..., HAProxy]]:
    """start(servers, *, check_inter_ms=200, wait_healthy=True, **options) -> a running HAProxy
    with one backend `web`; wait_healthy: until every server passed a health check; options:
    HAProxy's (reloadable, state_file)."""
    handles: list[HAProxy] = []
    # A unix socket path must fit in 108 bytes: pytest's tmp_path can be longer than that.
    workdir = Path(tempfile.mkdtemp(prefix="orch-haproxy-"))

    def start(
        servers: list[ServerSpec], *, check_inter_ms: int = 200, wait_healthy: bool = True,
        **options: bool,
    ) -> HAProxy:
        proxy = HAProxy(workdir / str(len(handles)), servers, check_inter_ms=check_inter_ms,
                        **options)
        handles.append(proxy)
        started(proxy)
        if wait_healthy and servers:
            # Until its first check HAProxy assumes a server is up; tests want it proven.
            wait_for(proxy.all_checked, "every HAProxy server to pass a health check")
        return proxy

    try:
        yield start
    finally:
        for proxy in handles:
            proxy.stop()
        shutil.rmtree(workdir, ignore_errors=True)
