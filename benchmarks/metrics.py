"""The exporter's memory over many rollouts: flat (±10 %) from the first hundred to the last.

A real redis-server and the real `orchestrator metrics` process, scraped over HTTP after every
ten rollouts. Each rollout is the event sequence a no-op box's chain writes (scheduled, pull,
claim, leave_lb, swap, join_lb, ensure_services, finish, start and end of each, then the
rollout's end), written through the engine's own `Events.emit` on a fleet of --boxes boxes
with live heartbeats: the exporter cannot tell it from real no-op rollouts, and 1,000 of them
take a minute instead of an hour. `python -m benchmarks.metrics [--rollouts 1000 --boxes 5]`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import redis

from benchmarks._report import machine, save, table, verdict
from benchmarks._stack import Stack
from devstack.net import free_port
from devstack.process import wait_for
from orchestrator.engine.events import Events
from schemas.contract import AppRunning, Heartbeat, Keys

STEPS = ["deploy.pull", "deploy.claim", "deploy.leave_lb", "deploy.swap", "deploy.join_lb",
         "deploy.ensure_services", "deploy.finish"]
BOX_TYPE = "bench"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def one_rollout(events: Events, client: redis.Redis[Any], keys: Keys, n: int,
                boxes: list[str]) -> None:
    rid = f"{BOX_TYPE}-bench-{n:06d}"
    client.hset(keys.rollout(rid), mapping={"state": "succeeded", "created": time.time(),
                                             "box_type": BOX_TYPE})
    client.zadd(keys.rollouts(BOX_TYPE), {rid: time.time()})
    events.emit(BOX_TYPE, rollout=rid, step="rollout", phase="start")
    for box in boxes:
        events.emit(BOX_TYPE, rollout=rid, box=box, step="scheduled", phase="end", outcome="ok")
        for step in STEPS:
            events.emit(BOX_TYPE, rollout=rid, box=box, step=step, phase="start")
            events.emit(BOX_TYPE, rollout=rid, box=box, step=step, phase="end",
                        outcome="noop" if step == "deploy.pull" else "ok", duration="0.001")
    events.emit(BOX_TYPE, rollout=rid, step="rollout", phase="end", outcome="succeeded")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=1000)
    parser.add_argument("--boxes", type=int, default=5)
    args = parser.parse_args()
    prefix = "bench:"
    keys = Keys(prefix)
    with Stack("metrics") as stack:
        server = stack.redis()
        client = server.client(1)
        boxes = [f"b{i:03d}" for i in range(args.boxes)]
        for box in boxes:
            hb = Heartbeat(box_id=box, box_type=BOX_TYPE, hostname="bench", worker_version="0",
                           docker_version="noop",
                           apps={"web": AppRunning(image="x", spec_hash="h", release="r1")},
                           state="ready", at=time.time())
            client.set(keys.heartbeat(box), hb.model_dump_json())
        port = free_port()
        env = {**os.environ, "ORCHESTRATOR_REDIS_URL": f"{server.url}/1",
               "ORCHESTRATOR_KEY_PREFIX": prefix}
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "metrics", "--listen",
                                 f"127.0.0.1:{port}", "--box-type", BOX_TYPE], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}/metrics"

        def scrape() -> str:
            with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310
                return str(r.read().decode())

        try:
            wait_for(lambda: scrape(), "the exporter", timeout=30)
            events = Events(client, keys)
            samples: list[tuple[int, float]] = []
            for n in range(1, args.rollouts + 1):
                one_rollout(events, client, keys, n, boxes)
                if n % 10 == 0:
                    body = scrape()
                    samples.append((n, rss_mb(proc.pid)))
            counted = [line for line in body.splitlines()
                       if line.startswith("orchestrator_rollouts_total{")]
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    warm = next(rss for n, rss in samples if n >= min(100, args.rollouts))
    last = samples[-1][1]
    peak = max(rss for _, rss in samples)
    change = (last - warm) / warm
    rows = [[n, f"{rss:.1f}"] for n, rss in samples if n % max(10, args.rollouts // 10) == 0]
    print(table("exporter RSS (MB) by rollouts folded", ["rollouts", "RSS MB"], rows))
    print(f"after 100: {warm:.1f} MB, after {args.rollouts}: {last:.1f} MB "
          f"({change:+.1%}), peak {peak:.1f} MB; "
          f"{verdict(abs(change) * 100, 10)} (flat within ±10 %)")
    print("exported:", *counted)
    save("metrics", {"machine": machine(), "rollouts": args.rollouts, "boxes": args.boxes,
                     "samples": samples, "change": change, "peak_mb": peak})
    return 0 if abs(change) <= 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())
