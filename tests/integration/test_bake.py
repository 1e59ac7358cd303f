"""Gated bakes on real workers: HAProxy's error counters under traffic, CloudWatch alarms."""

from __future__ import annotations

from collections.abc import Callable

import docker
import pytest

from devstack import images
from devstack.moto import DUMMY_ENV
from devstack.registry import Registry
from devstack.traffic import HTTP_5XX, TrafficLoop
from orchestrator.engine.events import Events
from schemas.contract import Keys
from tests.harness.aws_fx import AwsAccount
from tests.harness.common import TEST_LABEL, wait_for
from tests.harness.redis_fx import ProductRedis
from tests.harness.rollout_fx import Fleet, json_lines

BAKE_S = 60  # long: the error-rate gate must stop the rollout well before the bake ends
SHARE = 5  # the flaky canary answers 500 on one request in five (20 %)
LOOSE = {"ORCHESTRATOR_SLOT_TTL": "15", "ORCHESTRATOR_LEASE_TTL": "15"}


@pytest.fixture(scope="module")
def cgi_refs(docker_client: docker.DockerClient, registry: Registry) -> dict[str, str]:
    """`ok` and `flaky` (20 % 500s on /cgi-bin/app, /health fine), pushed by digest."""
    out = {}
    for name, fail_one_in in (("ok", 0), ("flaky", SHARE)):
        tag = f"orch-test/web:cgi-{name}"
        images.build_flaky_image(docker_client, tag, name, fail_one_in, {TEST_LABEL: "1"})
        out[name] = registry.push(docker_client, tag, "orch-test-cgi", name)
    return out


def events_of(product_redis: ProductRedis, box_type: str) -> list[dict[str, str]]:
    rows = Events(product_redis.client, Keys(product_redis.prefix)).read(box_type, count=100_000)
    return [{"id": sid, **e} for sid, e in rows]


def test_error_rate_gate_stops_a_flaky_canary_and_rolls_back(
    fleet_factory: Callable[..., Fleet], cgi_refs: dict[str, str],
) -> None:
    fleet = fleet_factory(3, extra_env=LOOSE)
    fleet.env.update(LOOSE)
    fleet.write(cgi_refs["ok"])
    assert fleet.cli("rollout", fleet.box_type).returncode == 0
    fleet.wait_all_in_service()
    with TrafficLoop(fleet.proxy.url + images.CGI_PATH, threads=3, rate_per_thread=20,
                     max_seconds=BAKE_S * 3) as loop:
        loop.wait_total(30, timeout=15)
        run = fleet.cli("rollout", fleet.box_type, "--image", f"web={cgi_refs['flaky']}",
                        "--bake", f"{BAKE_S}s", "--on-failure", "rollback", "--json",
                        timeout=BAKE_S * 3)
    stats = loop.stop()
    assert run.returncode == 1, run.stdout + run.stderr
    events = json_lines(run.stdout)
    verdicts = [e for e in events if e.get("step") == "bake" and e.get("phase") == "end"]
    assert verdicts and verdicts[0]["outcome"] == "failed", verdicts
    assert "error rate" in str(verdicts[0]["reason"]), verdicts
    canary = sorted(w.box_id for w in fleet.workers)[0]
    swapped = {e.get("box") for e in events if str(e.get("step", "")).startswith("deploy.swap")
               and e.get("phase") == "end" and e.get("outcome") == "ok"}
    assert swapped == {canary}  # the canary, then its rollback: nobody else changed
    assert "rollback" in run.stderr
    fleet.wait_all_in_service()
    bodies = {w.box_id: w for w in fleet.workers}
    assert bodies
    # Without a gate the canary would have served its share for the whole bake.
    rate = stats.total / stats.elapsed
    ungated = rate * BAKE_S / len(fleet.workers) / SHARE
    print(f"gated: {stats.failures[HTTP_5XX]} failed requests; ungated bake: ~{ungated:.0f}")
    assert 0 < stats.failures[HTTP_5XX] < ungated / 2, (stats.summary(), ungated)


def test_an_alarm_in_alarm_during_the_bake_halts_the_rollout(
    fleet_factory: Callable[..., Fleet], aws: AwsAccount, product_redis: ProductRedis,
) -> None:
    env = {**LOOSE, **DUMMY_ENV, "ORCHESTRATOR_AWS_ENDPOINT_URL": aws.endpoint_url}
    fleet = fleet_factory(2, extra_env=env)
    fleet.env.update(LOOSE)
    fleet.write(f"{fleet.images.repo}:v1")
    assert fleet.cli("rollout", fleet.box_type).returncode == 0
    cw = aws.client("cloudwatch")
    cw.put_metric_alarm(AlarmName="web-5xx", MetricName="HTTPCode_Target_5XX_Count",
                        Namespace="AWS/ApplicationELB", Statistic="Sum", Period=60,
                        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold")
    run = fleet.start_cli("rollout", fleet.box_type, "--image", f"web={fleet.images.repo}:v2",
                          "--bake", f"{BAKE_S}s", "--alarm", "web-5xx", "--json")
    # The fault at a recorded event: the bake has started.
    wait_for(lambda: any(e.get("step") == "bake" and e.get("phase") == "start"
                         for e in events_of(product_redis, fleet.box_type)),
             "the bake's start", timeout=60)
    cw.set_alarm_state(AlarmName="web-5xx", StateValue="ALARM", StateReason="test")
    out, err = run.communicate(timeout=BAKE_S)
    assert run.returncode == 1, out + err
    events = json_lines(out)
    verdict = [e for e in events if e.get("step") == "bake" and e.get("phase") == "end"]
    assert verdict and verdict[0]["outcome"] == "failed"
    assert "web-5xx" in str(verdict[0]["reason"])
    assert '"state": "halted"' in out.splitlines()[-1]
    claimed = {e.get("box") for e in events if e.get("step") == "deploy.claim"}
    assert len(claimed) == 1  # the second box never started


def test_a_bake_whose_gates_pass_goes_on_after_its_time(
    fleet_factory: Callable[..., Fleet], product_redis: ProductRedis,
) -> None:
    fleet = fleet_factory(2, extra_env=LOOSE)
    fleet.env.update(LOOSE)
    fleet.write(f"{fleet.images.repo}:v1")
    assert fleet.cli("rollout", fleet.box_type).returncode == 0
    run = fleet.cli("rollout", fleet.box_type, "--image", f"web={fleet.images.repo}:v2",
                    "--bake", "2s", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    events = json_lines(run.stdout)
    order = [(e.get("step"), e.get("phase"), e.get("box")) for e in events]
    second = sorted(w.box_id for w in fleet.workers)[1]
    assert order.index(("bake", "end", None)) < order.index(("scheduled", "end", second))


def test_a_bake_after_each_wave_holds_every_wave(fleet_factory: Callable[..., Fleet]) -> None:
    fleet = fleet_factory(3, extra_env=LOOSE)
    fleet.env.update(LOOSE)
    fleet.write(f"{fleet.images.repo}:v1")
    assert fleet.cli("rollout", fleet.box_type).returncode == 0
    run = fleet.cli("rollout", fleet.box_type, "--image", f"web={fleet.images.repo}:v2",
                    "--bake", "1s", "--bake-each-wave", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    events = json_lines(run.stdout)
    order = [(e.get("step"), e.get("phase"), e.get("box")) for e in events]
    first, second, third = sorted(w.box_id for w in fleet.workers)
    bakes = [e for e in events if e.get("step") == "bake" and e.get("phase") == "start"]
    assert [str(b["reason"]).split(";")[0] for b in bakes] == ["1s after boxes 0:1",
                                                               "1s after boxes 1:2"]
    ends = [i for i, o in enumerate(order) if o == ("bake", "end", None)]
    assert len(ends) == 2  # none after the last wave: nothing is left to start
    finish = {b: order.index(("deploy.finish", "end", b)) for b in (first, second)}
    scheduled = {b: order.index(("scheduled", "end", b)) for b in (second, third)}
    assert finish[first] < ends[0] < scheduled[second] < finish[second] < ends[1] < scheduled[third]
