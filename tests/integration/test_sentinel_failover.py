"""Redis Sentinel failover (the master killed -9) mid-rollout, under traffic through HAProxy:
the rollout finishes or halts cleanly and `resume` finishes it; no box is left out; the lease
and the fencing tokens survive; the broker and the state both follow the new master. Both
swaps: stop-first (the box leaves HAProxy) and start-first (its member moves, it never leaves:
no DOWN, DRAIN or maintenance in HAProxy's log, each member on the port of what runs).

The fault is injected at a recorded event: the first box's `join_lb` end in the event stream
(after its swap: a start-first member has moved by then).
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import IO, Any

import pytest

from devstack.sentinel import SentinelStack
from devstack.traffic import TrafficLoop
from orchestrator.engine.events import Events
from orchestrator.engine.redisconn import connect
from schemas.contract import Keys, TaskName
from tests.harness.common import wait_for
from tests.harness.redis_fx import ProductRedis, isolated_product_redis
from tests.harness.rollout_fx import PORT, Fleet, json_lines
from tests.harness.start_first_fx import ALT, out_of_service_changes, ports, write

# A failover takes down-after-milliseconds (1 s here) and an election: leases, slots and step
# deadlines must outlast it (README: Redis Sentinel), or every box in flight is counted dead.
OUTLAST_FAILOVER = {
    "ORCHESTRATOR_LEASE_TTL": "15",
    "ORCHESTRATOR_SLOT_TTL": "15",
    "ORCHESTRATOR_STEP_DEADLINE": "20",
    "ORCHESTRATOR_VISIBILITY_TIMEOUT": "30",
    # Heartbeats every 0.5 s as in every test, but a late one (a loaded CI machine, a tick
    # that reconnected through the sentinels) must not make `status` forget a box.
    "ORCHESTRATOR_HEARTBEAT_TTL": "5",
}


@pytest.fixture
def broker_url(sentinel_stack: SentinelStack) -> str:
    return sentinel_stack.url(0)


@pytest.fixture
def product_redis(sentinel_stack: SentinelStack) -> Iterator[ProductRedis]:
    with isolated_product_redis(sentinel_stack.url(1)) as product:
        yield product


def first_join(events: Events, box_type: str, after: str) -> dict[str, str] | None:
    for _, event in events.read(box_type, after):
        if event.get("step") == TaskName.JOIN_LB.value and event.get("phase") == "end":
            return event
    return None


def who_holds_what(master: Any, keys: Keys, fleet: Fleet) -> dict[str, Any]:
    """The lease, the fencing counter and every box's owner token, read on `master`."""
    return {
        "lease": master.get(keys.lease(fleet.box_type)),
        "fence": master.hgetall(keys.fence(fleet.box_type)),
        "owners": {w.box_id: master.hget(keys.box_token(w.box_id), "token")
                   for w in fleet.workers},
    }


@pytest.mark.parametrize("strategy", ["stop-first", "start-first"])
def test_sentinel_failover_mid_rollout_loses_no_lease_token_or_box(
    fleet_factory: Callable[..., Fleet], sentinel_stack: SentinelStack,
    product_redis: ProductRedis, strategy: str,
) -> None:
    fleet = fleet_factory(3, extra_env=OUTLAST_FAILOVER)
    fleet.env.update(OUTLAST_FAILOVER, ORCHESTRATOR_REDIS_WAIT="30")
    if strategy == "start-first":
        write(fleet, "v1")
    else:
        fleet.write(f"{fleet.images.repo}:v1")
    assert fleet.cli("rollout", fleet.box_type).returncode == 0
    fleet.wait_all_in_service()
    out_before = len(out_of_service_changes(fleet))  # DOWN until each box's first deploy
    keys = Keys(product_redis.prefix)
    state = connect(product_redis.url)
    events = Events(state, keys)
    mark = events.read(fleet.box_type)[-1][0]

    with TrafficLoop(fleet.proxy.url, threads=4, rate_per_thread=25, max_seconds=180) as loop:
        loop.wait_total(20, timeout=10)
        run = fleet.start_cli("rollout", fleet.box_type, "--image",
                              f"web={fleet.images.repo}:v2", "--json")
        joined = wait_for(lambda: first_join(events, fleet.box_type, mark),
                          "the first box's join_lb end", timeout=60, interval=0.01)
        rollout_id, canary = joined["rollout"], joined["box"]

        old = sentinel_stack.master()
        with old.client(1, decode_responses=True) as master:
            before = who_holds_what(master, keys, fleet)
        _, promotion = sentinel_stack.kill_master()
        with sentinel_stack.master().client(1, decode_responses=True) as promoted:
            after = who_holds_what(promoted, keys, fleet)

        # Who holds what survived the failover: the lease, the fencing epoch, the canary's
        # token (acknowledged by the replica before it acted).
        assert before["lease"] == rollout_id and after["lease"] in (rollout_id, None), after
        assert after["fence"]["epoch"] == before["fence"]["epoch"], (before, after)
        assert int(after["fence"]["n"]) >= int(before["fence"]["n"]), (before, after)
        assert after["owners"][canary] == before["owners"][canary] is not None, (before, after)

        # The CLI ends (the rollout finished or halted), or its watcher says it waits for a
        # replica: e.g. the failover lost a box's slot, the box is counted dead and its
        # revocation waits for a replica to acknowledge it (none until the old master is back).
        seen = Output(run)

        def ended_or_waiting() -> str | None:
            if run.poll() is not None:
                return "ended"
            return "waits" if UNREPLICATED in seen.err() else None

        try:
            replica_back = wait_for(ended_or_waiting, "the CLI's end, or its watcher waiting "
                                    "for a replica", timeout=60) == "waits"
        except TimeoutError:  # waiting on something else: the old master comes back anyway
            replica_back = True
        if replica_back:
            old.start()
            sentinel_stack.wait_settled()
        run.wait(timeout=120)
        out, err = seen.finish()
        assert "Traceback" not in err, err
        lines = json_lines(out)
        assert lines and "summary" in lines[-1], (out[-2000:], err[-3000:])
        summary: dict[str, Any] = lines[-1]["summary"]  # type: ignore[assignment]
        first_end = summary["state"]
        print(f"first run: {summary}")
        if first_end != "succeeded":
            # Halted cleanly: the claim after the failover had no replica to acknowledge it,
            # or a box whose slot the failover lost was counted dead.
            assert first_end == "halted", (summary, err)
            assert "NotReplicated" in summary["reason"] or replica_back, summary
            fleet.wait_all_in_service()  # halted cleanly: every box back in HAProxy
            if not replica_back:
                old.start()  # the old master comes back; sentinel settles on one master
                sentinel_stack.wait_settled()
            resumed = fleet.cli("resume", rollout_id)
            assert resumed.returncode == 0, resumed.stdout + resumed.stderr
            watched = fleet.cli("watch", rollout_id)
            assert watched.returncode == 0, watched.stdout + watched.stderr
        loop.wait_total(loop.stats.total + 20, timeout=10)
    stats = loop.stop()
    assert stats.failed == 0, stats.summary()
    assert_converged(fleet)
    if strategy == "start-first":  # every box moved once (v1 -> v2), none ever out
        assert out_of_service_changes(fleet)[out_before:] == []
        assert set(ports(fleet).values()) == {ALT}, ports(fleet)
    else:
        assert set(ports(fleet).values()) == {PORT}, ports(fleet)
    with sentinel_stack.master().client(1, decode_responses=True) as master:
        final = who_holds_what(master, keys, fleet)
    assert final["fence"]["epoch"] == before["fence"]["epoch"], final
    assert final["owners"][canary] == before["owners"][canary], final  # not claimed again
    print(f"promotion {promotion:.2f}s after kill -9; first run ended {first_end}")


# What the watcher says while no replica acknowledges its writes (orchestrator/watch.py).
UNREPLICATED = "no Redis replica acknowledges writes"


class Output:
    """A running CLI's stdout and stderr, each read by a thread as it comes."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._out: list[str] = []
        self._err: list[str] = []
        self._threads = [threading.Thread(target=self._read, args=(f, into), daemon=True)
                         for f, into in ((proc.stdout, self._out), (proc.stderr, self._err))]
        for t in self._threads:
            t.start()

    @staticmethod
    def _read(stream: IO[str] | None, into: list[str]) -> None:
        assert stream is not None
        for line in stream:
            into.append(line)

    def err(self) -> str:
        return "".join(self._err)

    def finish(self) -> tuple[str, str]:
        """Both streams, whole, once the process closed them."""
        for t in self._threads:
            t.join(timeout=30)
        return "".join(self._out), "".join(self._err)


def assert_converged(fleet: Fleet) -> None:
    """Every box in HAProxy on v2, the lease free, `status` exit 0."""
    fleet.wait_all_in_service()
    status = fleet.status_at_rest()
    rows = json_lines(status.stdout)
    print(status.stdout)  # whole, in the report of a failure (an assertion's text is cut)
    assert status.returncode == 0, status.stdout + status.stderr
    assert len(rows) == len(fleet.workers)
    assert len({r["apps"]["web"]["release"] for r in rows}) == 1, rows  # type: ignore[index]
    assert all(r["apps"]["web"]["lb"] == "in" for r in rows), rows  # type: ignore[index]
    lock = fleet.cli("lock", "status", fleet.box_type)
    assert lock.stdout.strip().endswith("free"), lock.stdout
