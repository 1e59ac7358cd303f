"""One budget per load balancer, across box types: two box types share one HAProxy backend
with `max_out: 1` in fleet.yml and are rolled at the same moment, batch 1, under traffic.
Never more than one server of the backend is out, shown twice: from the reservation events
(one clock: Redis stream ids) and from HAProxy's own state-change log. A box that found the
backend full went back to pending (a `deferred` event, not a failure), and the other type's
join started it again: both rollouts succeed, no request fails."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devstack.haproxy import HAProxy, StateChange
from devstack.images import web_box_yml
from devstack.traffic import TrafficLoop
from devstack.workers import BoxWorker, cli_env
from orchestrator.engine.budget import Budgets
from orchestrator.engine.events import Events
from orchestrator.engine.redisconn import connect
from schemas.contract import Keys
from schemas.fleet import lb_key
from tests.harness.box_fx import BoxWorkers, PushedImages
from tests.harness.common import started
from tests.harness.redis_fx import ProductRedis
from tests.harness.rollout_fx import PORT, Fleet, json_lines

# The new container answers only after a sleep: each box is out for seconds, so the two
# rollouts, started together, want the backend at the same time.
SLOW = '[sh, -c, "sleep 3; exec httpd -f -p 8080 -h /www"]'
# Slots and leases with room for a loaded machine (the swaps themselves take seconds).
SLACK = {"ORCHESTRATOR_LEASE_TTL": "10", "ORCHESTRATOR_SLOT_TTL": "10"}


def out_at_most(events: list[tuple[str, dict[str, str]]]) -> tuple[int, list[str]]:
    """The most places held at once, walking the reservation events in the load balancer's own
    order (`seq`: two box types' streams can share a millisecond)."""
    held: set[str] = set()
    most, trail = 0, []
    for sid, e in sorted(events, key=lambda x: int(x[1]["seq"])):
        if e["outcome"] == "reserved":
            held.add(e["box"])
        elif e["outcome"] == "released":
            held.discard(e["box"])
        most = max(most, len(held))
        trail.append(f"{e['seq']} {sid} {e['box']} {e['outcome']} {e['reason']}")
    return most, trail


def servers_out_at_most(changes: list[StateChange], servers: set[str]) -> tuple[int, list[str]]:
    """The most of `servers` (the whole backend) out of balancing at once, by HAProxy's own
    count: each drain or maintenance line says how many servers are still active. A count
    per line, not a tally of lines: a log line lost on the way (a box's UP/READY, once, under
    load) made the tally see two out while HAProxy counted three of four active."""
    most, trail = 0, []
    for c in changes:
        if c.server not in servers:
            continue
        if counted := ACTIVE.search(c.text):
            most = max(most, len(servers) - int(counted.group(1)))
        trail.append(f"{c.at.isoformat()} {c.server} {c.text}")
    return most, trail


ACTIVE = re.compile(r"(\d+) active and \d+ backup servers (?:online|left)")


@pytest.fixture
def two_types(
    box_workers: BoxWorkers, product_redis: ProductRedis, broker_url: str,
    pushed_images: PushedImages, haproxy_factory: Callable[..., HAProxy], tmp_path: Path,
) -> tuple[Fleet, Fleet]:
    """Box types A and B, two boxes each, all four servers of one HAProxy backend `web`;
    fleet.yml gives that backend `max_out: 1`."""
    timings = {**SLACK, "ORCHESTRATOR_HEARTBEAT_TTL": "5", "ORCHESTRATOR_STEP_DEADLINE": "20",
               "ORCHESTRATOR_VISIBILITY_TIMEOUT": "30"}
    type_b = f"webb{uuid.uuid4().hex[:6]}"
    a = box_workers.start(2, start=False, extra_env=timings)
    b = box_workers.start(2, start=False, extra_env={**timings, "ORCHESTRATOR_BOX_TYPE": type_b})
    workers: list[BoxWorker] = a + b
    proxy = haproxy_factory([(w.box_id, w.bind_ip, PORT) for w in workers], wait_healthy=False)
    for w in workers:
        w.env["ORCHESTRATOR_HAPROXY_SOCKET"] = proxy.socket_path
        started(w)
    boxes = tmp_path / "boxes"
    boxes.mkdir()
    (boxes / "fleet.yml").write_text(
        "load_balancers:\n"
        f"  - {{kind: haproxy, name: web, socket: {proxy.socket_path}, max_out: 1}}\n"
    )
    env = cli_env(boxes, broker_url, product_redis.url, product_redis.prefix,
                  preflight_timeout="30", watch_interval="0.05",
                  haproxy_socket=proxy.socket_path)
    env.update(SLACK)
    fleets = (
        Fleet(box_workers.box_type, boxes, a, proxy, env, pushed_images, tmp_path),
        Fleet(type_b, boxes, b, proxy, env, pushed_images, tmp_path),
    )
    return fleets


def test_two_box_types_behind_one_backend_never_take_out_more_than_max_out(
    two_types: tuple[Fleet, Fleet], product_redis: ProductRedis,
) -> None:
    fa, fb = two_types
    for f in (fa, fb):
        f.write(f"{f.images.repo}:v1")
        first = f.cli("rollout", f.box_type, "--reason", "first deploy")
        assert first.returncode == 0, first.stdout + first.stderr
    fa.wait_all_in_service()
    fb.wait_all_in_service()
    servers = {w.box_id for w in fa.workers + fb.workers}
    for f in (fa, fb):
        (f.boxes_dir / f"{f.box_type}.yml").write_text(
            web_box_yml(f"{f.images.repo}:v2", PORT, retries=80, command=SLOW))

    since = datetime.now(UTC)
    with TrafficLoop(fa.proxy.url, threads=4, rate_per_thread=25, max_seconds=180) as loop:
        loop.wait_total(20, timeout=10)
        runs = [f.start_cli("rollout", f.box_type, "--batch", "1", "--json", "--reason",
                            "v2 at the same moment") for f in (fa, fb)]
        outs = [run.communicate(timeout=150) for run in runs]
        loop.wait_total(loop.stats.total + 20, timeout=10)
    stats = loop.stop()

    v2 = set()
    for run, (stdout, stderr) in zip(runs, outs, strict=True):
        assert run.returncode == 0, stdout + stderr
        summary = json_lines(stdout)[-1]["summary"]
        assert summary["state"] == "succeeded" and summary["ok"] == 2, summary  # type: ignore[index]
        v2.add(summary["rollout"])  # type: ignore[index]
    assert stats.failed == 0, stats.summary()

    keys = Keys(product_redis.prefix)
    client = connect(product_redis.url)
    try:
        events = [(sid, e) for f in (fa, fb) for sid, e in Events(client, keys).read(f.box_type)
                  if e.get("step") == "lb_budget"]
        deferred = [e for f in (fa, fb) for _, e in Events(client, keys).read(f.box_type)
                    if e.get("step") == "deploy.leave_lb" and e.get("outcome") == "deferred"]
        published = client.hgetall(keys.lb_budget())
        still_out = Budgets(client, keys).holders(lb_key("haproxy", "web", fa.proxy.socket_path))
    finally:
        client.close()
    assert published == {lb_key("haproxy", "web", fa.proxy.socket_path).encode(): b"1"}
    most, trail = out_at_most(events)
    assert most == 1, "\n".join(trail)
    reserved = [e["box"] for _, e in events if e["outcome"] == "reserved" and e["rollout"] in v2]
    # Four boxes left the backend, each once: the second-comers waited instead of leaving.
    assert sorted(reserved) == sorted(servers), "\n".join(trail)
    assert any(e["outcome"] == "full" for _, e in events), (
        "the two rollouts never wanted the backend at the same time: nothing was shown\n"
        + "\n".join(trail))
    assert deferred and all("full" in e["reason"] for e in deferred), deferred
    assert still_out == {}, still_out

    changes = [c for c in fa.proxy.state_changes() if c.at >= since]
    most, trail = servers_out_at_most(changes, servers)
    assert most == 1, "\n".join(trail)
    left = {c.server for c in changes if "enters drain" in c.text}
    assert left == servers, "\n".join(trail)  # HAProxy saw every box leave, one at a time
