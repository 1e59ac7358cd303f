"""Rolling v1 → v2 over three worker-driven boxes behind a real HAProxy, under live traffic.

Everything is real: HAProxy (no retries, no redispatch), the Docker engine, Redis, the local
registry and one `orchestrator-worker` subprocess per simulated box. The drained rollout
(leave → swap → join, one box at a time) must lose no request; the same rollout of an app
without `elb:` (a naive swap: HAProxy keeps sending to the box while its container is
replaced) must lose some, which proves the traffic loop can see a gap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from devstack.haproxy import HAProxy
from devstack.net import port_free_on
from devstack.traffic import TrafficLoop, TrafficStats
from devstack.workers import BoxWorker
from schemas.contract import Outcome, StepResult, TaskName
from schemas.release import Release
from tests.harness.box_fx import BoxWorkers, DeployKit, PushedImages, wait_http
from tests.harness.common import wait_for

BOXES = 3
THREADS = 4
RATE_PER_THREAD = 50.0
# Bounds of the loop: far above what a rollout takes, so it ends by stop(), not by a bound.
MAX_SECONDS = 45.0
MAX_REQUESTS = 20_000
CHAIN_TIMEOUT = 20.0

# An app behind HAProxy: the worker drains, maints, swaps, proves health and readies it.
BEHIND_HAPROXY = """
apps:
  web:
    image: {repo}
    elb: web
    lb_kind: haproxy
    containers:
      web:
        ports: ["{port}:8080"]
        health: {{http: /health, interval: 0.1, timeout: 1, retries: 20}}
"""

# The same app with no load balancer to leave: the worker swaps while HAProxy still sends.
NAIVE = """
apps:
  web:
    image: {repo}
    containers:
      web:
        ports: ["{port}:8080"]
        health: {{http: /health, interval: 0.1, timeout: 1, retries: 20}}
"""

ProxyFactory = Callable[..., HAProxy]


@dataclass(frozen=True)
class Fleet:
    proxy: HAProxy
    boxes: list[BoxWorker]
    port: int  # the app's published port, the same on every box


def start_fleet(box_workers: BoxWorkers, haproxy_factory: ProxyFactory) -> Fleet:
    """HAProxy first (its servers named after the box ids), then the workers, told its socket."""
    boxes = box_workers.start(BOXES, start=False)
    # Outside the ephemeral range and the other tests' 18080: tests run side by side on a
    # developer machine must not serve each other's boxes.
    port = port_free_on([box.bind_ip for box in boxes], span=(20_000, 30_000))
    proxy = haproxy_factory([(box.box_id, box.bind_ip, port) for box in boxes], wait_healthy=False)
    for box in boxes:
        box.env["ORCHESTRATOR_HAPROXY_SOCKET"] = proxy.socket_path
        box.start()
    return Fleet(proxy, boxes, port)


def servers_state(proxy: HAProxy) -> dict[str, tuple[int, int]]:
    """(srv_op_state, srv_admin_state) per server, read with the harness's own client."""
    reply = proxy.command(f"show servers state {proxy.backend}")
    header = next(line for line in reply.splitlines() if line.startswith("# "))
    columns = header[2:].split()
    out = {}
    for line in reply.splitlines():
        if line and not line.startswith("#") and " " in line:
            row = dict(zip(columns, line.split(), strict=False))
            out[row["srv_name"]] = (int(row["srv_op_state"]), int(row["srv_admin_state"]))
    return out


def all_ready(proxy: HAProxy, boxes: list[BoxWorker]) -> bool:
    """Every box's server running (op 2), not in maint or drain (admin 0), last check passed."""
    state = servers_state(proxy)
    checks = proxy.server_checks()
    return all(state.get(b.box_id) == (2, 0) and checks.get(b.box_id) == "L7OK" for b in boxes)


def web_release(
    deploy: DeployKit, box_yml: str, images: PushedImages, version: str, fleet: Fleet
) -> Release:
    image = getattr(images, version)
    return deploy.release(box_yml, {"web": image}, repo=images.repo, port=fleet.port)


def deploy_all(deploy: DeployKit, release: Release, fleet: Fleet) -> None:
    """The first release on every box at once (no traffic yet)."""
    reqs = [deploy.send(deploy.request(release, b.box_id)) for b in fleet.boxes]
    for req in reqs:
        entries = deploy.wait_end(req, timeout=CHAIN_TIMEOUT)
        swap = entries[f"{TaskName.SWAP.value}:web"]
        assert swap.outcome == Outcome.OK, swap
    for b in fleet.boxes:
        wait_http(f"http://{b.bind_ip}:{fleet.port}/", "v1")


def roll(
    deploy: DeployKit, release: Release, boxes: list[BoxWorker], traffic: TrafficLoop
) -> list[dict[str, StepResult]]:
    """One box at a time: send its chain, wait for its end, let traffic reach it again."""
    out = []
    for box in boxes:
        req = deploy.send(deploy.request(release, box.box_id))
        out.append(deploy.wait_end(req, timeout=CHAIN_TIMEOUT))
        traffic.wait_total(traffic.stats.total + 60)
    return out


def after_rollout(proxy: HAProxy) -> TrafficStats:
    with TrafficLoop(proxy.url, threads=2, rate_per_thread=100, max_requests=60) as after:
        after.wait_total(60)
    return after.stats


def bodies(stats: TrafficStats) -> dict[str, int]:
    """Bodies served, without the images' trailing newline."""
    out: dict[str, int] = {}
    for body, count in stats.bodies.items():
        out[body.strip()] = out.get(body.strip(), 0) + count
    return out


def step(entries: dict[str, StepResult], name: TaskName, app: str | None = None) -> StepResult:
    return entries[f"{name.value}:{app or '-'}"]


def test_drained_rolling_swap_behind_haproxy_loses_no_request(
    deploy: DeployKit,
    box_workers: BoxWorkers,
    pushed_images: PushedImages,
    haproxy_factory: ProxyFactory,
) -> None:
    fleet = start_fleet(box_workers, haproxy_factory)
    proxy, boxes = fleet.proxy, fleet.boxes
    v1 = web_release(deploy, BEHIND_HAPROXY, pushed_images, "v1", fleet)
    v2 = web_release(deploy, BEHIND_HAPROXY, pushed_images, "v2", fleet)
    deploy_all(deploy, v1, fleet)
    wait_for(lambda: all_ready(proxy, boxes), "HAProxy to see every box UP and ready")

    with TrafficLoop(proxy.url, THREADS, RATE_PER_THREAD, MAX_REQUESTS, MAX_SECONDS) as traffic:
        traffic.wait_total(100)
        chains = roll(deploy, v2, boxes, traffic)
    stats = traffic.stats

    for box, entries in zip(boxes, chains, strict=True):
        for name, app in (
            (TaskName.LEAVE_LB, None),
            (TaskName.SWAP, "web"),
            (TaskName.JOIN_LB, None),
        ):
            result = step(entries, name, app)
            assert result.outcome == Outcome.OK, (box.box_id, result)
        assert step(entries, TaskName.LEAVE_LB).details["left"] == "web"
        assert step(entries, TaskName.JOIN_LB).details["joined"] == "web"
    out_of_service = [
        step(e, TaskName.JOIN_LB).ended - step(e, TaskName.LEAVE_LB).started for e in chains
    ]
    print(
        f"drained: {stats.summary()}; out of service per box (s): "  # noqa: T201
        f"{[round(s, 2) for s in out_of_service]}"
    )
    assert stats.elapsed < MAX_SECONDS and stats.total < MAX_REQUESTS, stats.summary()
    assert stats.failed == 0, stats.summary()
    assert bodies(stats).keys() == {"v1", "v2"}, stats.summary()

    # Every box in service now (its chain ended after join_lb); HAProxy's own check of the
    # last box may be one interval behind its rejoin (the check is the harness's extra).
    assert {servers_state(proxy).get(b.box_id) for b in boxes} == {(2, 0)}, servers_state(proxy)
    wait_for(lambda: all_ready(proxy, boxes), "every box's HAProxy check passing", timeout=10)
    final = after_rollout(proxy)
    assert final.failed == 0, final.summary()
    assert bodies(final).keys() == {"v2"}, final.summary()


def test_naive_swap_behind_haproxy_loses_requests(
    deploy: DeployKit,
    box_workers: BoxWorkers,
    pushed_images: PushedImages,
    haproxy_factory: ProxyFactory,
) -> None:
    """The same harness and rollout without `elb:`: the test above can fail."""
    fleet = start_fleet(box_workers, haproxy_factory)
    proxy, boxes = fleet.proxy, fleet.boxes
    v1 = web_release(deploy, NAIVE, pushed_images, "v1", fleet)
    v2 = web_release(deploy, NAIVE, pushed_images, "v2", fleet)
    deploy_all(deploy, v1, fleet)
    wait_for(lambda: all_ready(proxy, boxes), "HAProxy to see every box UP by its checks")

    with TrafficLoop(proxy.url, THREADS, RATE_PER_THREAD, MAX_REQUESTS, MAX_SECONDS) as traffic:
        traffic.wait_total(100)
        chains = roll(deploy, v2, boxes, traffic)
        # HAProxy's own checks bring each box back; let the last one rejoin under traffic.
        wait_for(lambda: all_ready(proxy, boxes), "HAProxy to see every box UP again")
    stats = traffic.stats

    for box, entries in zip(boxes, chains, strict=True):
        assert step(entries, TaskName.LEAVE_LB).outcome == Outcome.NOOP, box.box_id
        assert step(entries, TaskName.SWAP, "web").outcome == Outcome.OK, box.box_id
        assert step(entries, TaskName.JOIN_LB).outcome == Outcome.NOOP, box.box_id
    print(f"naive: {stats.summary()}")  # noqa: T201
    assert stats.elapsed < MAX_SECONDS and stats.total < MAX_REQUESTS, stats.summary()
    assert stats.failed > 0, stats.summary()
    final = after_rollout(proxy)
    assert bodies(final).keys() == {"v2"}, final.summary()
