"""The exporter under a real Prometheus: PromQL after a rollout under traffic."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

from devstack.net import free_port, http
from devstack.prometheus import Prometheus
from devstack.traffic import TrafficLoop
from orchestrator.engine.events import Events
from schemas.contract import Keys
from tests.harness.common import started, wait_for
from tests.harness.redis_fx import ProductRedis
from tests.harness.rollout_fx import Fleet
from tests.integration.test_rollout import out_of_service_windows

# A loaded CI machine can stall a swap for seconds: this test is about counting, not liveness.
LOOSE = {"ORCHESTRATOR_SLOT_TTL": "15", "ORCHESTRATOR_LEASE_TTL": "15"}


def test_prometheus_counts_rollouts_and_out_of_service_windows(
    fleet_factory: Callable[..., Fleet], product_redis: ProductRedis,
) -> None:
    fleet = fleet_factory(3, extra_env=LOOSE)
    fleet.env.update(LOOSE)
    fleet.write(f"{fleet.images.repo}:v1")
    assert fleet.cli("rollout", fleet.box_type).returncode == 0
    fleet.wait_all_in_service()
    port = free_port()
    exporter = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "metrics", "--listen", f"127.0.0.1:{port}"],
        env=fleet.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: http(f"http://127.0.0.1:{port}/metrics").status == 200
                 if exporter.poll() is None else exporter.communicate()[1] == "", "exporter up")
        with TrafficLoop(fleet.proxy.url, threads=2, rate_per_thread=30, max_seconds=60) as loop:
            loop.wait_total(20, timeout=10)
            run = fleet.cli("rollout", fleet.box_type, "--image", f"web={fleet.images.repo}:v2")
        assert run.returncode == 0, run.stderr
        assert loop.stop().failed == 0

        rows = Events(product_redis.client, Keys(product_redis.prefix)).read(
            fleet.box_type, count=100_000)
        windows = out_of_service_windows([{"id": sid, **e} for sid, e in rows])
        assert len(windows) == 6  # 3 boxes, 2 rollouts
        total = sum(b - a for _, a, b in windows) / 1000

        with started(Prometheus(fleet.tmp / "prom", [f"127.0.0.1:{port}"])) as prom:
            sel = f'{{box_type="{fleet.box_type}"}}'
            # The first scrape lands ~5 s after Prometheus starts.
            count = wait_for(lambda: prom.value(f"sum(orchestrator_rollouts_total{sel})"),
                             "a scrape with the rollouts", timeout=30)
            assert count == 2
            ok = prom.value(f'orchestrator_rollouts_total{{box_type="{fleet.box_type}",'
                            'outcome="succeeded"}')
            assert ok == 2
            n = prom.value(f"orchestrator_box_out_of_service_seconds_count{sel}")
            s = prom.value(f"orchestrator_box_out_of_service_seconds_sum{sel}")
            assert n == len(windows)
            assert s is not None and abs(s - total) < 1e-6, (s, total, windows)
            # A gauge of live heartbeats: a loaded machine can let one lapse for a scrape.
            wait_for(lambda: prom.value(f"sum(orchestrator_boxes{sel})") == 3,
                     "three live boxes in Prometheus", timeout=30)
            assert prom.value(f"orchestrator_lease_held{sel}") == 0
            steps = prom.query(f'orchestrator_step_duration_seconds_count{{box_type='
                               f'"{fleet.box_type}",step="deploy.swap",outcome="ok"}}')
            assert steps and float(steps[0]["value"][1]) == 6
    finally:
        exporter.terminate()
        exporter.communicate(timeout=10)


def test_a_box_worker_serves_its_own_metrics_and_logs_json(
    fleet_factory: Callable[..., Fleet],
) -> None:
    port = free_port()
    fleet = fleet_factory(1, extra_env={**LOOSE, "ORCHESTRATOR_METRICS_LISTEN":
                                        f"127.0.0.1:{port}", "ORCHESTRATOR_LOG_FORMAT": "json"})
    fleet.env.update(LOOSE)
    fleet.write(f"{fleet.images.repo}:v1")
    assert fleet.cli("rollout", fleet.box_type).returncode == 0
    (box,) = (w.box_id for w in fleet.workers)
    text = http(f"http://127.0.0.1:{port}/metrics").text
    assert (f'orchestrator_worker_steps_total{{box="{box}",outcome="ok",step="deploy.swap"}} 1.0'
            in text), text
    beat = [line for line in text.splitlines()
            if line.startswith("orchestrator_worker_last_heartbeat_timestamp_seconds ")]
    assert beat and float(beat[0].split()[1]) > 0
    assert f'orchestrator_worker_container_restarts{{app="web",box="{box}"' in text

    # Its log: one JSON object per line, each task's lines naming box, rollout and step.
    lines = [json.loads(x) for x in fleet.workers[0].log().splitlines() if x.startswith("{")]
    swap = [x for x in lines if x["step"] == "deploy.swap" and x["rollout"]]
    assert swap and all(x["box"] == box and x["level"] for x in swap), lines[-20:]
    assert {"time", "level", "box", "rollout", "step", "message"} <= set(swap[0])
