"""Flower (Celery's web monitor) on a broker, with basic auth, on a loopback port."""

from __future__ import annotations

import secrets
import sys
import urllib.parse
from pathlib import Path

from devstack.net import LOCALHOST, free_port, http
from devstack.process import Service
from devstack.workers import check_celery_redis, python_env


class Flower(Service):
    """`celery -b BROKER flower --basic-auth=USER:PASSWORD`; /healthcheck answers OK. It shows
    task arguments (never put secrets there); its task list lives in memory."""

    stop_stage = 0

    def __init__(self, workdir: Path, broker_url: str, name: str = "flower", *,
                 user: str = "dev", password: str | None = None, port: int | None = None,
                 detach: bool = False) -> None:
        super().__init__(workdir, name, detach=detach)
        self.broker_url = broker_url
        self.auth = (user, password or secrets.token_urlsafe(9))
        self.port = port or free_port()

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def argv(self) -> list[str]:
        check_celery_redis()
        return [sys.executable, "-m", "celery", "-b", self.broker_url, "flower",
                f"--address={LOCALHOST}", f"--port={self.port}",
                f"--basic-auth={self.auth[0]}:{self.auth[1]}"]

    def environment(self) -> dict[str, str]:
        return python_env()

    def get(self, path: str, **params: str) -> str:
        """The body of GET PATH (with the credentials); an HTTP error status raises."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        reply = http(f"{self.url}{path}{query}", auth=self.auth)
        if reply.status != 200:
            raise RuntimeError(f"flower {path}: HTTP {reply.status}")
        return reply.text

    def ready(self) -> bool:
        return self.get("/healthcheck") == "OK"

    def sees_worker(self, node: str) -> bool:
        """Its event receiver got this worker's events (online or heartbeat): it listens."""
        self.check_running()
        return f'flower_worker_online{{worker="{node}"}} 1.0' in self.get("/metrics")
