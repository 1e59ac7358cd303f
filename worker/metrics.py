"""The box worker's own /metrics: steps run, its last heartbeat, its containers' restarts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from orchestrator.engine.exporter import serve_registry
from schemas.contract import Label
from worker.facts import ContainerRuntime


class _Restarts(Collector):
    """Read on each scrape: one container listing per served box."""

    def __init__(self, runtime: ContainerRuntime, box_ids: list[str]) -> None:
        self.runtime, self.box_ids = runtime, box_ids

    def collect(self) -> Iterator[Metric]:
        fam = GaugeMetricFamily("orchestrator_worker_container_restarts",
                                "Restarts by the restart policy (a rise means a crash)",
                                labels=["box", "app", "container"])
        for box in self.box_ids:
            for f in self.runtime.list(labels={Label.BOX: box}):
                fam.add_metric([box, f.labels.get(Label.APP, ""),
                                f.labels.get(Label.CONTAINER, f.name.lstrip("/"))],
                               f.restart_count)
        yield fam


class WorkerMetrics:
    def __init__(self, runtime: ContainerRuntime, box_ids: list[str]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.steps = Counter("orchestrator_worker_steps", "Steps this worker ran, by outcome",
                             ["box", "step", "outcome"], registry=self.registry)
        self.last_beat = Gauge("orchestrator_worker_last_heartbeat_timestamp_seconds",
                               "When this worker last wrote its heartbeat", registry=self.registry)
        self.registry.register(_Restarts(runtime, box_ids))

    def serve(self, listen: str) -> Any:
        return serve_registry(self.registry, listen, "ORCHESTRATOR_METRICS_LISTEN")

    def beat(self) -> None:
        self.last_beat.set(time.time())

    def count(self, task: Any = None, args: Any = None, retval: Any = None, **_: Any) -> None:
        """Celery's task_postrun: every step returns its journalled result (a dict)."""
        if not isinstance(retval, dict) or "outcome" not in retval:
            return
        payload = args[0] if args and isinstance(args[0], dict) else {}
        self.steps.labels(str(payload.get("box_id", "")),
                          str(retval.get("step") or getattr(task, "name", "")),
                          str(retval["outcome"])).inc()
