"""A moto server (AWS without AWS) on a loopback port, and boto3 clients pointed at it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from devstack.net import LOCALHOST, free_port, http
from devstack.process import BIN, MissingTool, Service

REGION = "us-east-1"
# moto accepts any key; set on every client so that nothing depends on the environment.
DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
# The same for child processes (the CLI, box workers): never a real account's.
DUMMY_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
             "AWS_DEFAULT_REGION": REGION}


class MotoServer(Service):
    """`moto_server -H 127.0.0.1 -p P`: answers in ~1 s; the first call to a service loads it
    (~1.5 s for EC2). Not modelled: health checks, draining, alarm actions (REAL-SERVICES)."""

    def __init__(self, workdir: Path, name: str = "moto", *, port: int | None = None,
                 detach: bool = False) -> None:
        super().__init__(workdir, name, detach=detach)
        self.port = port or free_port()

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    endpoint_url = url

    def argv(self) -> list[str]:
        args = ["-H", LOCALHOST, "-p", str(self.port)]
        script = BIN / "moto_server"
        if script.exists():
            return [str(script), *args]
        if shutil.which("moto_server"):
            return ["moto_server", *args]
        try:
            import moto.server  # noqa: F401
        except ImportError:
            raise MissingTool("moto[server] is not installed (pip install -e '.[dev]')") from None
        return [sys.executable, "-m", "moto.server", *args]

    def reset(self) -> None:
        """Every service's state cleared (3 ms): a clean account."""
        reply = http(f"{self.url}/moto-api/reset", method="POST", timeout=5)
        if reply.status != 200:
            raise RuntimeError(f"moto reset: HTTP {reply.status}")

    def ready(self) -> bool:
        self.reset()
        return True

    def client(self, service: str, region: str = REGION) -> Any:
        """A boto3 client of this server (close it when done: an open one warns)."""
        import boto3

        return boto3.session.Session().client(service, endpoint_url=self.url, region_name=region,
                                              **DUMMY_CREDENTIALS)
