"""Fixtures: a real moto server process (session) and a clean AWS account per test."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.harness.common import TIMINGS, free_port, need, wait_for

REGION = "us-east-1"
# moto accepts any key; set on every client so nothing depends on the environment.
DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@dataclass
class MotoServer:
    """A running `moto_server` subprocess."""

    endpoint_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    start_seconds: float

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()

    def answers_or_exited(self) -> bool:
        # An exited server ends the wait at once; the caller reports it with its log.
        if self.process.poll() is None:
            self.reset()
        return True


@dataclass
class AwsAccount:
    """A clean moto account for one test: boto3 clients pointed at the moto server."""

    endpoint_url: str
    region: str = REGION
    _clients: list[Any] = field(default_factory=list)

    def client(self, service_name: str) -> Any:
        client = boto3.session.Session().client(
            service_name, endpoint_url=self.endpoint_url, region_name=self.region,
            **DUMMY_CREDENTIALS,
        )
        self._clients.append(client)
        return client

    @property
    def session_kwargs(self) -> dict[str, Any]:
        """What `make_load_balancer(boto_session_kwargs=...)` needs to reach this account."""
        return {"endpoint_url": self.endpoint_url, "region_name": self.region,
                **DUMMY_CREDENTIALS}

    def close(self) -> None:
        # Closing releases the clients' pooled sockets; left open they warn (and warnings fail).
        for client in self._clients:
            client.close()
        self._clients.clear()


def _moto_command(port: int) -> list[str] | None:
    script = Path(sys.executable).parent / "moto_server"
    if script.exists():
        return [str(script), "-H", "127.0.0.1", "-p", str(port)]
    if shutil.which("moto_server"):
        return ["moto_server", "-H", "127.0.0.1", "-p", str(port)]
    try:
        import moto.server  # noqa: F401
    except ImportError:
        return None
    return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    port = free_port()
    command = _moto_command(port)
    need(command is not None, "moto[server] is not installed (pip install -e .[dev])")
    assert command is not None
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    server = MotoServer(f"http://127.0.0.1:{port}", process, log_path, 0.0)
    try:
        wait_for(server.answers_or_exited, "moto_server to answer", timeout=TIMINGS.service_start)
        if process.poll() is not None:
            pytest.fail(f"moto_server exited with {process.returncode}: "
                        f"{log_path.read_text(errors='replace')[-2000:]}", pytrace=False)
        server.start_seconds = time.monotonic() - started
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def aws(moto_server: MotoServer) -> Iterator[AwsAccount]:
    moto_server.reset()
    account = AwsAccount(moto_server.endpoint_url)
    try:
        yield account
    finally:
        account.close()
