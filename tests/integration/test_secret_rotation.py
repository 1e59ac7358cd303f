"""A rotated SSM parameter reaches exactly the apps that use it: each box compares a keyed
hash of the values it resolved (the key never leaves the box) and only names apps.

Real parts: moto's SSM (the parameter's value changes between two rollouts), box workers,
Docker, Redis, HAProxy, the CLI.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import docker

from devstack.moto import DUMMY_ENV
from schemas.contract import Label
from tests.harness.aws_fx import AwsAccount
from tests.harness.common import wait_for
from tests.harness.redis_fx import ProductRedis
from tests.harness.rollout_fx import PORT, Fleet, json_lines
from tests.integration.test_registry_auth import product_values

SIDE_PORT = PORT + 1
BOX_YML = """\
apps:
  web:
    elb: web
    lb_kind: haproxy
    image: {image}
    containers:
      web:
        ports: ["{port}:8080"]
        env: {{DB_PASSWORD: {{secret: "ssm:/orch/db"}}, PLAIN: "1"}}
        health: {{http: /health, interval: 0.1, timeout: 1, retries: 30}}
  side:
    image: {image}
    containers:
      side:
        ports: ["{side}:8080"]
        env: {{API_KEY: {{secret: "ssm:/orch/api"}}}}
        health: {{http: /health, interval: 0.1, timeout: 1, retries: 30}}
"""
# A loaded machine (5 suites on 2 cores): steps, slots and leases get room; no timing asserts.
LOADED = {"ORCHESTRATOR_SLOT_TTL": "20", "ORCHESTRATOR_LEASE_TTL": "20",
          "ORCHESTRATOR_STEP_DEADLINE": "30", "ORCHESTRATOR_VISIBILITY_TIMEOUT": "60"}


def _env_of(client: docker.DockerClient, box: str, app: str) -> dict[str, str]:
    (found,) = client.containers.list(filters={"label": [f"{Label.BOX}={box}",
                                                          f"{Label.APP}={app}"]})
    pairs = (e.partition("=") for e in found.attrs["Config"]["Env"])
    return {k: v for k, _, v in pairs}


def _swaps(lines: list[dict[str, object]]) -> dict[tuple[object, object], object]:
    return {(e.get("box"), e.get("app")): e.get("outcome") for e in lines
            if e.get("step") == "deploy.swap" and e.get("phase") == "end"}


def test_rotated_ssm_parameter_swaps_exactly_its_app_then_nothing(
    fleet_factory: Callable[..., Fleet], aws: AwsAccount, docker_client: docker.DockerClient,
    product_redis: ProductRedis,
) -> None:
    ssm = aws.client("ssm")
    ssm.put_parameter(Name="/orch/db", Value="db-value-1", Type="SecureString")
    ssm.put_parameter(Name="/orch/api", Value="api-value-1", Type="SecureString")
    reach = {"ORCHESTRATOR_AWS_ENDPOINT_URL": aws.endpoint_url,
             "ORCHESTRATOR_AWS_REGION": aws.region, **DUMMY_ENV, **LOADED}
    fleet = fleet_factory(2, extra_env=reach)
    fleet.env.update(reach)
    (fleet.boxes_dir / f"{fleet.box_type}.yml").write_text(
        BOX_YML.format(image=f"{fleet.images.repo}:v1", port=PORT, side=SIDE_PORT))
    boxes = sorted(w.box_id for w in fleet.workers)

    first = fleet.cli("rollout", fleet.box_type)
    assert first.returncode == 0, first.stdout + first.stderr
    fleet.wait_all_in_service()
    assert all(_env_of(docker_client, b, "web")["DB_PASSWORD"] == "db-value-1" for b in boxes)
    same = fleet.cli("plan", fleet.box_type, "--json")
    assert same.returncode == 0, same.stdout + same.stderr

    ssm.put_parameter(Name="/orch/db", Value="db-value-2", Type="SecureString", Overwrite=True)
    planned = fleet.cli("plan", fleet.box_type, "--json")
    assert planned.returncode == 5, planned.stdout + planned.stderr
    doc = json.loads(planned.stdout)
    assert doc["skipped"] == {}, doc
    assert {b["box"]: [(a["app"], a["spec"]) for a in b["apps"]] for b in doc["boxes"]} == {
        b: [("web", ["secret changed"])] for b in boxes
    }
    assert all(b["leaves"] == ["haproxy web"] for b in doc["boxes"]), doc
    # The boxes said so in their heartbeats too: `status` shows it (names only).
    wait_for(lambda: fleet.cli("status", fleet.box_type).stdout.count("secret changed") == 2,
             "status showing the rotated secret on both boxes")

    run = fleet.cli("rollout", fleet.box_type, "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    swaps = _swaps(json_lines(run.stdout))
    assert swaps == {**{(b, "web"): "ok" for b in boxes}, **{(b, "side"): "noop" for b in boxes}}
    for b in boxes:
        assert _env_of(docker_client, b, "web")["DB_PASSWORD"] == "db-value-2"
        assert _env_of(docker_client, b, "side")["API_KEY"] == "api-value-1"
    assert "secret changed" not in fleet.cli("status", fleet.box_type).stdout

    again = fleet.cli("rollout", fleet.box_type, "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    lines = json_lines(again.stdout)
    assert set(_swaps(lines).values()) == {"noop"}, _swaps(lines)
    left = [e for e in lines if e.get("step") == "deploy.leave_lb" and e.get("outcome") == "ok"]
    assert left == []  # no box left its load balancer
    assert fleet.cli("plan", fleet.box_type).returncode == 0

    # Neither a value nor a hash of one reached Redis: names only.
    hashes = {c.labels.get(Label.SECRET_HASH) for c in docker_client.containers.list(
        filters={"label": f"{Label.BOX}={boxes[0]}"})} - {None}
    assert hashes, "the containers carry no secret hash label"
    stored = list(product_values(product_redis))
    assert stored
    for value in ("db-value-1", "db-value-2", "api-value-1", *hashes):
        assert not [v for v in stored if str(value) in v], f"{str(value)[:12]}… in Redis"
