"""Debian's Prometheus server scraping given targets every second, on a loopback port."""

from __future__ import annotations

import json
import shutil
import urllib.parse
from pathlib import Path
from typing import Any

from devstack.net import LOCALHOST, free_port, http
from devstack.process import Service, find_binary


class Prometheus(Service):
    """`prometheus --config.file … --storage.tsdb.path …`; ready on /-/ready. The first scrape
    lands ~5 s after the start whatever the interval (REAL-SERVICES-2): poll a query."""

    def __init__(self, workdir: Path, targets: list[str], name: str = "prometheus", *,
                 port: int | None = None, job: str = "orchestrator") -> None:
        super().__init__(workdir, name)
        self.targets, self.job = targets, job
        self.port = port or free_port()
        self.data = self.workdir / f"{name}-data"
        self.config = self.workdir / f"{name}.yml"

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def prepare(self) -> None:
        shutil.rmtree(self.data, ignore_errors=True)  # a fresh database per start
        # JSON is YAML: no YAML writer needed.
        self.config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": self.job,
                                "static_configs": [{"targets": self.targets}]}],
        }))

    def argv(self) -> list[str]:
        return [find_binary("prometheus", "apt-get install prometheus (scripts/setup.sh)"),
                f"--config.file={self.config}", f"--storage.tsdb.path={self.data}",
                f"--web.listen-address={LOCALHOST}:{self.port}"]

    def ready(self) -> bool:
        return http(f"{self.url}/-/ready").status == 200

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector of a PromQL query: [{"metric": {...}, "value": [ts, "v"]}]."""
        reply = http(f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}",
                     timeout=5)
        body = json.loads(reply.text)
        if body.get("status") != "success":
            raise RuntimeError(f"PromQL {promql!r}: {reply.status} {reply.text[:300]}")
        return list(body["data"]["result"])

    def value(self, promql: str) -> float | None:
        """The single value of a query, or None while it has no sample."""
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None
