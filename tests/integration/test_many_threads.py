"""A worker with more threads than the broker's producer pool (Celery's 10) runs a rollout to
its end: real Redis, a real Celery worker serving 30 simulated boxes on 16 threads (the no-op
runtime), and the real CLI. A box's steps run in its first message (worker/inline.py); each
once held a pooled producer for its task events the whole chain long, and 16 chains in flight
held all 10 while their finish waited for one to send the next boxes' chains: every box after
the first wave was counted dead."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.redis import RedisServer
from devstack.workers import BoxWorker, cli_env, worker_env
from tests.harness.common import started, wait_for

pytestmark = pytest.mark.integration

BOX_YML = """\
apps:
  web:
    elb: web
    lb_kind: none
    image: registry.test.invalid:5000/web@sha256:{digest}
    containers:
      web:
        ports: ["18080:8080"]
        health: {{command: "true"}}
"""


def test_sixteen_threads_thirty_boxes_batch_twelve_all_deploy(tmp_path: Path) -> None:
    boxes = [f"t{i:02d}" for i in range(30)]
    with started(RedisServer(tmp_path / "redis")) as server:
        broker, state, prefix = f"{server.url}/0", f"{server.url}/1", "mt:"
        env = worker_env(boxes[0], "web", broker, state, prefix, runtime="noop",
                         extra_box_ids=json.dumps(boxes[1:]), concurrency="16",
                         log_root=str(tmp_path / "logs"))
        boxes_dir = tmp_path / "boxes"
        boxes_dir.mkdir()
        (boxes_dir / "web.yml").write_text(BOX_YML.format(digest="a" * 64))
        with started(BoxWorker(tmp_path, env, name="w16")) as worker:
            client = server.client(db=1)
            wait_for(lambda: len(list(client.scan_iter(f"{prefix}box:*"))) == len(boxes),
                     "a heartbeat from every box")
            run = subprocess.run(
                [sys.executable, "-m", "orchestrator.cli", "rollout", "web", "--batch", "12",
                 "--json"], env=cli_env(boxes_dir, broker, state, prefix,
                                        fleet_source="heartbeats"),
                capture_output=True, text=True, timeout=300)
            log = worker.output().decode(errors="replace")
    summary = json.loads(run.stdout.splitlines()[-1])["summary"]
    assert run.returncode == 0, (run.stderr[-2000:], log[-3000:])
    assert (summary["state"], summary["ok"]) == ("succeeded", len(boxes)), summary
