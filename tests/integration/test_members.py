"""Known members: a dead worker's box is named at once, skipped on request, flagged by status,
caught up by itself once back, and never while its type's latest rollout is halted. Real
Docker, Redis, Celery and HAProxy, under traffic."""

from __future__ import annotations

import json
from collections.abc import Callable

from devstack.traffic import TrafficLoop
from tests.harness.common import TIMINGS, wait_for
from tests.harness.redis_fx import ProductRedis
from tests.harness.rollout_fx import Fleet, json_lines, with_fault


def beat(product: ProductRedis, box: str) -> dict | None:
    raw = product.client.get(f"{product.prefix}box:{box}")
    return json.loads(raw) if raw else None


def runs(product: ProductRedis, box: str) -> str | None:
    """The release of the box's web app, as its heartbeat says."""
    hb = beat(product, box)
    return hb["apps"]["web"]["release"] if hb and "web" in hb["apps"] else None


# Roomier than the harness's CI timings: on a loaded machine a step slower than its deadline
# halts a rollout, which is not what these tests are about.
ROOMY = {"ORCHESTRATOR_LEASE_TTL": "10", "ORCHESTRATOR_SLOT_TTL": "10",
         "ORCHESTRATOR_STEP_DEADLINE": "20", "ORCHESTRATOR_VISIBILITY_TIMEOUT": "30"}


def summary(out: str) -> dict:
    return json_lines(out)[-1]["summary"]  # type: ignore[return-value]


def test_a_dead_worker_is_named_skipped_flagged_and_catches_up_unless_held(
    fleet_factory: Callable[..., Fleet], product_redis: ProductRedis,
) -> None:
    fleet = fleet_factory(3, extra_env=ROOMY)
    fleet.env.update(ROOMY)
    dead = sorted(fleet.workers, key=lambda w: w.box_id)[-1]  # never the canary
    fleet.write(f"{fleet.images.repo}:v1")
    first = fleet.cli("rollout", fleet.box_type, "--json")
    assert first.returncode == 0, first.stderr
    v1 = summary(first.stdout)["release"]
    fleet.wait_all_in_service()

    # The box's worker dies (kill -9) at a recorded point: on receiving the next preflight.
    with_fault(dead, "deploy.preflight:start=kill", 60)  # a loaded machine starts Python slowly

    with TrafficLoop(fleet.proxy.url, threads=4, rate_per_thread=25, max_seconds=600) as loop:
        loop.wait_total(40, timeout=10)
        # 1. During the rollout: preflight stops waiting for it once its heartbeat is gone,
        # naming it, long before the preflight timeout.
        during = fleet.cli("rollout", fleet.box_type, "--image", f"web={fleet.images.repo}:v2")
        assert during.returncode != 0, during.stdout
        assert f"{dead.box_id}: no live worker: last heartbeat" in during.stderr, during.stderr
        assert "no answer in" not in during.stderr, during.stderr
        assert not dead.running  # it did die at the fault point

        # Before the next one: a missing member fails the start at once, before any preflight.
        refused = fleet.cli("rollout", fleet.box_type, "--image",
                            f"web={fleet.images.repo}:v2")
        assert refused.returncode != 0, refused.stdout
        assert f"{dead.box_id} (last heartbeat" in refused.stderr, refused.stderr
        assert "preflight failed" not in refused.stderr, refused.stderr

        # 2. --skip-missing deploys the others; status flags the missing box, exit 1.
        skipped = fleet.cli("rollout", fleet.box_type, "--image",
                            f"web={fleet.images.repo}:v2", "--skip-missing", "--json")
        assert skipped.returncode == 0, skipped.stderr
        done = summary(skipped.stdout)
        v2 = done["release"]
        assert done["state"] == "succeeded" and done["ok"] == 2, done
        status = fleet.cli("status", fleet.box_type)
        assert status.returncode == 1, status.stdout
        assert f"{dead.box_id}" in status.stdout and "missing" in status.stdout, status.stdout

        # 3. A rollout halts (its canary fails); the box comes back while it is the type's
        # latest: it is not caught up.
        fleet.write(f"{fleet.images.repo}:broken")
        halted = fleet.cli("rollout", fleet.box_type, "--skip-missing", "--json")
        assert halted.returncode == 1 and summary(halted.stdout)["state"] == "halted", (
            halted.stdout + halted.stderr)
        halted_id = str(summary(halted.stdout)["rollout"])
        dead.env.pop("ORCHESTRATOR_FAULT_POINT")
        dead.start(60)
        wait_for(lambda: "held" in ((beat(product_redis, dead.box_id) or {}).get("catch_up")
                                    or ""), "the box saying its catch-up is held")
        assert runs(product_redis, dead.box_id) == v1
        assert halted_id in beat(product_redis, dead.box_id)["catch_up"]  # type: ignore[index]

        # 4. Once a person ends the halted rollout, the box catches up by itself, through
        # its load balancer, with no coordinator attached.
        assert fleet.cli("abort", halted_id).returncode == 0
        wait_for(lambda: runs(product_redis, dead.box_id) == v2, "the box caught up to v2",
                 timeout=120)
        fleet.wait_all_in_service()
        loop.wait_total(loop.stats.total + 40, timeout=10)
    stats = loop.stop()
    assert stats.failed == 0, stats.summary()

    def catchups() -> list[str]:
        history = fleet.cli("history", fleet.box_type).stdout
        return [line for line in history.splitlines() if " catchup " in line]

    # v2 runs and the box is in service before its chain's last steps end the catch-up.
    wait_for(lambda: any("succeeded" in line for line in catchups()), "the catch-up succeeded")
    (line,) = catchups()
    assert v2 in line, line
    wait_for(lambda: fleet.cli("status", fleet.box_type).returncode == 0, "status clean")


def test_boxes_forget_removes_a_member_and_refuses_a_live_one(
    fleet_factory: Callable[..., Fleet], product_redis: ProductRedis,
) -> None:
    fleet = fleet_factory(2)
    live, gone = sorted(fleet.workers, key=lambda w: w.box_id)
    members = f"{product_redis.prefix}members:{fleet.box_type}"
    wait_for(lambda: product_redis.client.hlen(members) == 2, "both boxes members")

    refused = fleet.cli("boxes", "forget", live.box_id)
    assert refused.returncode == 2 and "still heartbeats" in refused.stderr, refused.stderr
    unknown = fleet.cli("boxes", "forget", "no-such-box")
    assert unknown.returncode == 2 and "not a member" in unknown.stderr, unknown.stderr

    gone.kill9()
    wait_for(lambda: beat(product_redis, gone.box_id) is None, "its heartbeat gone",
             timeout=TIMINGS.heartbeat_ttl * 4 + 5)
    wait_for(lambda: fleet.cli("status", fleet.box_type).returncode == 1, "status flags it")
    forgot = fleet.cli("boxes", "forget", gone.box_id)
    assert forgot.returncode == 0, forgot.stderr
    assert product_redis.client.hkeys(members) == [live.box_id]
    assert "missing" not in fleet.cli("status", fleet.box_type).stdout
