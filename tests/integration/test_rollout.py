"""`orchestrator rollout` end to end: real workers, Docker, Redis, HAProxy, under traffic."""

from __future__ import annotations

from collections.abc import Callable

from devstack.traffic import TrafficLoop
from tests.harness.redis_fx import ProductRedis
from tests.harness.rollout_fx import Fleet, json_lines


def test_three_box_rollout_under_traffic_has_no_failed_request(
    fleet_factory: Callable[..., Fleet],
) -> None:
    fleet = fleet_factory(3)
    fleet.write(f"{fleet.images.repo}:v1")
    first = fleet.cli("rollout", fleet.box_type, "--reason", "first deploy")
    assert first.returncode == 0, first.stderr
    fleet.wait_all_in_service()

    with TrafficLoop(fleet.proxy.url, threads=4, rate_per_thread=40, max_seconds=60) as loop:
        loop.wait_total(40, timeout=10)
        run = fleet.cli("rollout", fleet.box_type, "--image", f"web={fleet.images.repo}:v2",
                        "--json", "--reason", "v2")
        loop.wait_total(loop.stats.total + 40, timeout=10)
    stats = loop.stop()
    assert run.returncode == 0, run.stderr + run.stdout
    assert stats.failed == 0, stats.summary()
    assert stats.bodies["v2\n"] > 0, stats.bodies  # the body as served, newline included
    lines = json_lines(run.stdout)
    summary = lines[-1]["summary"]
    assert summary["state"] == "succeeded" and summary["ok"] == 3, summary  # type: ignore[index]
    steps = [e.get("step") for e in lines[:-1] if e.get("phase") == "end"]
    assert steps.count("deploy.join_lb") == 3 and steps.count("deploy.finish") == 3

    status = fleet.cli("status", fleet.box_type, "--json")
    assert status.returncode == 0, status.stderr
    rows = json_lines(status.stdout)
    assert {r["apps"]["web"]["release"] for r in rows} == {summary["release"]}  # type: ignore[index]
    history = fleet.cli("history", fleet.box_type)
    assert "v2" in history.stdout and "first deploy" in history.stdout
    assert history.stdout.count("succeeded") == 2


def test_failing_canary_halts_and_stays_on_v1(fleet_factory: Callable[..., Fleet]) -> None:
    fleet = fleet_factory(3)
    fleet.write(f"{fleet.images.repo}:v1")
    assert fleet.cli("rollout", fleet.box_type).returncode == 0
    fleet.wait_all_in_service()

    run = fleet.cli("rollout", fleet.box_type, "--image", f"web={fleet.images.repo}:broken",
                    "--json")
    assert run.returncode == 1, run.stdout + run.stderr
    events = json_lines(run.stdout)
    summary = events[-1]["summary"]
    assert summary["state"] == "halted" and summary["failed"] == 1, summary  # type: ignore[index]
    canary = sorted(w.box_id for w in fleet.workers)[0]
    left = {e["box"] for e in events[:-1] if e.get("step") == "deploy.leave_lb"
            and e.get("phase") == "end" and e.get("outcome") == "ok"}
    assert left == {canary}  # no other box left its load balancer
    failed = [e for e in events[:-1] if e.get("step") == "deploy.swap" and
              e.get("outcome") == "failed"]
    assert failed and "HealthCheckFailed" in str(failed[0]["reason"])
    # Order of events, not timings: the canary rejoined after its restore.
    order = [e["step"] for e in events[:-1] if e.get("box") == canary and e.get("phase") == "end"]
    assert order.index("deploy.restore") < order.index("deploy.join_lb") < order.index(
        "deploy.finish")
    fleet.wait_all_in_service()
    status = json_lines(fleet.cli("status", fleet.box_type, "--json").stdout)
    assert len({r["apps"]["web"]["release"] for r in status}) == 1  # type: ignore[index]


# Its swap takes two seconds: the container answers only after a sleep.
SLOW = {"retries": 40, "command": '[sh, -c, "sleep 2; exec httpd -f -p 8080 -h /www"]'}


def test_second_concurrent_rollout_names_the_holder(
    fleet_factory: Callable[..., Fleet], product_redis: ProductRedis,
) -> None:
    from schemas.contract import Keys
    from tests.harness.common import wait_for

    fleet = fleet_factory(1)
    fleet.write(f"{fleet.images.repo}:v1", **SLOW)  # its swap takes two seconds
    first = fleet.start_cli("rollout", fleet.box_type, "--reason", "the first one")
    lease = Keys(product_redis.prefix).lease(fleet.box_type)
    wait_for(lambda: product_redis.client.get(lease), "the first rollout's lease")
    waiting = fleet.start_cli("rollout", fleet.box_type, "--wait", "--reason", "the waiter")

    second = fleet.cli("rollout", fleet.box_type)
    assert second.returncode == 3, second.stderr  # README "Exit codes": the lease is held
    assert "is being rolled out by" in second.stderr and "the first one" in second.stderr
    _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    _, err = waiting.communicate(timeout=60)  # it waited, then ran
    assert waiting.returncode == 0, err
    assert "the waiter" in fleet.cli("history", fleet.box_type).stdout


def out_of_service_windows(events: list[dict[str, object]]) -> list[tuple[str, int, int]]:
    """(box, left ms, rejoined ms) from stream ids: one clock for every box."""
    left: dict[str, int] = {}
    out = []
    for e in events:
        if e.get("phase") != "end":
            continue
        ms = int(str(e["id"]).split("-")[0])
        if e.get("step") == "deploy.leave_lb" and e.get("outcome") == "ok":
            left[str(e["box"])] = ms
        if e.get("step") == "deploy.join_lb" and str(e.get("box")) in left:
            out.append((str(e["box"]), left.pop(str(e["box"])), ms))
    return out


def max_overlap(windows: list[tuple[str, int, int]]) -> int:
    edges = sorted([(a, 1) for _, a, _ in windows] + [(b, -1) for _, _, b in windows])
    peak = now = 0
    for _, d in edges:
        now += d
        peak = max(peak, now)
    return peak


def test_six_boxes_batch_two_never_three_out(fleet_factory: Callable[..., Fleet]) -> None:
    import threading

    fleet = fleet_factory(6)
    fleet.write(f"{fleet.images.repo}:v1")
    assert fleet.cli("rollout", fleet.box_type, "--batch", "3").returncode == 0
    fleet.wait_all_in_service()

    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(sum(1 for ok in fleet.in_service().values() if not ok))
            stop.wait(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        run = fleet.cli("rollout", fleet.box_type, "--image", f"web={fleet.images.repo}:v2",
                        "--canary", "1", "--batch", "2", "--json")
    finally:
        stop.set()
        sampler.join()
    assert run.returncode == 0, run.stderr
    assert max(samples) == 2, f"HAProxy samples of boxes out: max {max(samples)}"
    windows = out_of_service_windows(json_lines(run.stdout)[:-1])
    assert len(windows) == 6 and max_overlap(windows) == 2
    canary = min(windows, key=lambda w: w[1])
    assert all(w[1] >= canary[2] for w in windows if w != canary)  # the barrier


def test_rollback_on_third_box_returns_the_first_two(fleet_factory: Callable[..., Fleet]) -> None:
    fleet = fleet_factory(3)
    third = sorted(w.box_id for w in fleet.workers)[2]
    fleet.write(f"{fleet.images.repo}:v1")
    assert fleet.cli("rollout", fleet.box_type).returncode == 0
    fleet.wait_all_in_service()
    box3 = next(w for w in fleet.workers if w.box_id == third)
    box3.stop()
    box3.env["ORCHESTRATOR_FAULT_STEP"] = "deploy.swap:web"  # only the third box fails
    box3.start()

    with TrafficLoop(fleet.proxy.url, threads=4, rate_per_thread=40, max_seconds=60) as loop:
        loop.wait_total(40, timeout=10)
        run = fleet.cli("rollout", fleet.box_type, "--image", f"web={fleet.images.repo}:v2",
                        "--on-failure", "rollback", "--json")
        fleet.wait_all_in_service()
        loop.wait_total(loop.stats.total + 40, timeout=10)
    stats = loop.stop()
    assert run.returncode == 1, run.stderr
    assert stats.failed == 0, stats.summary()
    events = json_lines(run.stdout)
    rollback = [e for e in events if "summary" in e][-1]["summary"]
    # The third box still fails every swap (the injected fault): the rollback returns the
    # other two; the third never changed.
    assert "rollback" in str(rollback["rollout"]) and rollback["ok"] >= 2, rollback
    # What the rollback announced is what it ran: no box joined it on the way.
    started = [e for e in events if e.get("rollout") == rollback["rollout"]
               and e.get("step") == "rollout" and e.get("phase") == "start"]
    assert started and f"on {rollback['boxes']} boxes" in str(started[0]["reason"]), started
    first_two = sorted(w.box_id for w in fleet.workers)[:2]
    for box in first_two:  # left and rejoined twice: the rollout, then its rollback
        joins = [e for e in events if e.get("box") == box and e.get("step") == "deploy.join_lb"
                 and e.get("phase") == "end"]
        assert len(joins) == 2, joins
    status = json_lines(fleet.cli("status", fleet.box_type, "--json").stdout)
    releases = {r["box"]: r["apps"]["web"]["release"] for r in status}  # type: ignore[index]
    assert len(set(releases.values())) == 1, releases  # everyone back on v1
    assert stats.bodies.get("v1\n", 0) > 0


def test_back_to_back_rollouts_decide_from_what_runs_now(
    fleet_factory: Callable[..., Fleet],
) -> None:
    """A rollout started right after another must not trust a seconds-old heartbeat."""
    from tests.harness.box_fx import wait_http

    fleet = fleet_factory(2)
    fleet.write(f"{fleet.images.repo}:v1")
    for image in ("v1", "v2", "v1", "v2"):  # each right after the previous one
        run = fleet.cli("rollout", fleet.box_type, "--image", f"web={fleet.images.repo}:{image}",
                        "--batch", "2")
        assert run.returncode == 0, run.stderr
    for w in fleet.workers:
        wait_http(f"http://{w.bind_ip}:18080/", "v2", timeout=5)
    fleet.wait_all_in_service()
