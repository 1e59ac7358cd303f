"""The Prometheus exporter: rollouts, durations, out-of-service windows and boxes, from events."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from orchestrator.engine.events import Events, stream_ms
from orchestrator.engine.redisconn import RedisClient
from schemas.contract import Heartbeat, Keys

# Bounds: what one scrape may read, and what the exporter may remember between scrapes.
EVENTS_PER_SCRAPE = 5_000
MAX_OPEN_WINDOWS = 10_000  # boxes out of their load balancer, awaiting their rejoin
BOX_MEMORY_S = 3600.0  # a box not seen for an hour is forgotten (and no longer "missing")
DISCOVER_EVERY_S = 60.0  # the keyspace is scanned at most this often, never per scrape

OOS_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
ROLLOUT_BUCKETS = (5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class EventFold:
    """Folds a box type's events into counters and histograms; memory bounded by the caps."""

    def __init__(self) -> None:
        self.rollouts = Counter(
            "orchestrator_rollouts", "Rollouts ended, by box type and outcome",
            ["box_type", "outcome"], registry=None,
        )
        self.rollout_seconds = Histogram(
            "orchestrator_rollout_duration_seconds", "From a rollout's creation to its end",
            ["box_type"], buckets=ROLLOUT_BUCKETS, registry=None,
        )
        self.out_of_service = Histogram(
            "orchestrator_box_out_of_service_seconds",
            "Per box and rollout: from leaving its load balancer to rejoining (stream ids)",
            ["box_type"], buckets=OOS_BUCKETS, registry=None,
        )
        self.steps = Histogram(
            "orchestrator_step_duration_seconds", "Each step's duration, by step and outcome",
            ["box_type", "step", "outcome"], buckets=STEP_BUCKETS, registry=None,
        )
        self.open: OrderedDict[tuple[str, str], int] = OrderedDict()  # (rollout, box) -> ms

    def feed(self, box_type: str, sid: str, e: dict[str, str], created: float | None) -> None:
        """One event. `created`: the rollout's creation time, for a rollout's end only."""
        if e.get("phase") != "end":
            return
        step, outcome = e.get("step", ""), e.get("outcome", "")
        key = (e.get("rollout", ""), e.get("box", ""))
        if step == "rollout":
            self.rollouts.labels(box_type, outcome).inc()
            if created is not None:
                self.rollout_seconds.labels(box_type).observe(
                    max(0.0, stream_ms(sid) / 1000 - created))
            for k in [k for k in self.open if k[0] == key[0]]:
                del self.open[k]  # nothing rejoins after its rollout ended
            return
        if step.startswith("deploy.") and e.get("duration"):
            self.steps.labels(box_type, step, outcome).observe(float(e["duration"]))
        if step == "deploy.leave_lb" and outcome == "ok":
            self.open[key] = stream_ms(sid)
            while len(self.open) > MAX_OPEN_WINDOWS:
                self.open.popitem(last=False)
        elif step == "deploy.join_lb" and key in self.open:
            left = self.open.pop(key)
            self.out_of_service.labels(box_type).observe((stream_ms(sid) - left) / 1000)

    def collect(self) -> Iterator[Metric]:
        for m in (self.rollouts, self.rollout_seconds, self.out_of_service, self.steps):
            yield from m.collect()


class Exporter(Collector):
    """Each scrape: up to EVENTS_PER_SCRAPE new events per box type, one MGET of the known
    boxes' heartbeats, one GET per lease. Box types and boxes are found by a SCAN at most
    once a minute."""

    def __init__(self, client: RedisClient, keys: Keys, box_types: Iterable[str] = ()) -> None:
        self.client, self.keys = client, keys
        self.events = Events(client, keys)
        self.fixed_types = sorted(box_types)
        self.types: list[str] = list(self.fixed_types)
        self.cursor: dict[str, str] = {}  # box type -> the last event id folded
        self.boxes: dict[str, float] = {}  # box id -> last seen (time.time())
        self.box_types: dict[str, str] = {}  # box id -> its box type, once known
        self.fold = EventFold()
        self.lock = threading.Lock()
        self.discovered = 0.0

    def discover(self, now: float) -> None:
        if now - self.discovered < DISCOVER_EVERY_S:
            return
        self.discovered = now
        if not self.fixed_types:
            pattern = self.keys.rollouts("*")
            head, tail = pattern.split("*")
            found = {_text(k)[len(head):-len(tail)] for k in self.client.scan_iter(
                match=pattern, count=1000)}
            self.types = sorted(found)
        for k in self.client.scan_iter(match=self.keys.heartbeat_pattern(), count=1000):
            self.boxes[_text(k)[len(self.keys.heartbeat("")):]] = now

    def read_events(self, box_type: str) -> None:
        after = self.cursor.get(box_type, "0")
        rows = self.events.read(box_type, after=after, count=EVENTS_PER_SCRAPE)
        ends = [e.get("rollout", "") for _, e in rows if e.get("step") == "rollout"
                and e.get("phase") == "end"]
        created: dict[str, float] = {}
        if ends:
            pipe = self.client.pipeline()
            for rid in ends:
                pipe.hget(self.keys.rollout(rid), "created")
            created = {rid: float(_text(v)) for rid, v in zip(ends, pipe.execute(), strict=True)
                       if v is not None}
        now = time.time()
        for sid, e in rows:
            is_end = e.get("step") == "rollout"
            self.fold.feed(box_type, sid, e, created.get(e.get("rollout", "")) if is_end else None)
            if e.get("box"):
                self.boxes[e["box"]] = now
                self.box_types[e["box"]] = box_type
        if rows:
            self.cursor[box_type] = rows[-1][0]

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            now = time.time()
            self.discover(now)
            for t in self.types:
                self.read_events(t)
            yield from self.fold.collect()
            yield from self.gauges(now)

    def gauges(self, now: float) -> Iterator[Metric]:
        boxes = GaugeMetricFamily("orchestrator_boxes", "Boxes with a live heartbeat",
                                  labels=["box_type", "release", "state"])
        missing = GaugeMetricFamily("orchestrator_boxes_missing",
                                    "Boxes seen in the last hour with no live heartbeat",
                                    labels=["box_type"])
        lease = GaugeMetricFamily("orchestrator_lease_held", "1 while a rollout holds the lease",
                                  labels=["box_type"])
        self.boxes = {b: t for b, t in self.boxes.items() if now - t < BOX_MEMORY_S}
        self.box_types = {b: t for b, t in self.box_types.items() if b in self.boxes}
        ids = sorted(self.boxes)
        raws = self.client.mget([self.keys.heartbeat(b) for b in ids]) if ids else []
        counts: dict[tuple[str, str, str], int] = {}
        lost: dict[str, int] = dict.fromkeys(self.types, 0)
        for box, raw in zip(ids, raws, strict=True):
            if raw is None:
                t = self.box_types.get(box)
                if t is not None:
                    lost[t] = lost.get(t, 0) + 1
                continue
            hb = Heartbeat.model_validate_json(raw)
            self.boxes[box], self.box_types[box] = now, hb.box_type
            releases = {a.release for a in hb.apps.values()} or {""}
            key = (hb.box_type, ",".join(sorted(releases)), hb.state)
            counts[key] = counts.get(key, 0) + 1
        for (t, rel, st), n in sorted(counts.items()):
            boxes.add_metric([t, rel, st], n)
        for t, n in sorted(lost.items()):
            missing.add_metric([t], n)
        if self.types:
            held = self.client.mget([self.keys.lease(t) for t in self.types])
            for t, h in zip(self.types, held, strict=True):
                lease.add_metric([t], 1 if h else 0)
        yield from (boxes, missing, lease)


def serve(client: RedisClient, keys: Keys, listen: str, box_types: Iterable[str] = ()) -> Any:
    """Start the HTTP server on `host:port` (a thread); returns (server, thread)."""
    from prometheus_client import CollectorRegistry

    from orchestrator.engine.exporter import serve_registry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Exporter(client, keys, box_types))
    return serve_registry(registry, listen, "--listen")
