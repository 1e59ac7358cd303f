"""Property: any box.yml that validates builds a run spec for every container, and passes the
worker's health check, naming and load balancer rules, without error."""

from __future__ import annotations

import http.client
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from orchestrator.engine.lb.haproxy import HAProxyLB
from schemas.boxfile import BoxSpec
from schemas.checks import check_box
from worker.decide import is_previous
from worker.facts import ContainerFact
from worker.health import _published
from worker.runspec import build_run_request, container_name

pytestmark = pytest.mark.unit

# Each generator mixes values a box takes with the odd ones that once failed only on the box.
names = st.sampled_from(
    ["web", "api", "a", "b", "a.b", "b.c", "c", "svc", "web.prev", "prev", "web\n", "x-1", "é"]
)
paths = st.sampled_from(
    ["/data", "/data/", "/logs", "/a/logs", "/b/logs", "/var/log/web", "/x/../y", "/", "rel"]
)
volumes = st.builds(
    lambda src, dst, mode: f"{src}:{dst}{mode}",
    st.sampled_from(["/srv", "vol", ""]),
    paths,
    st.sampled_from(["", ":ro", ":rx"]),
)
http_paths = st.sampled_from(["/health", "/he alth", "/h\r\nX: 1", "/santé", "/ok?x=1", "h"])
ports = st.sampled_from(
    ["8080:80", "8081:81", "80", "127.0.0.1:8080:80", "999.999.999.999:1:1", "9090:90/udp", 70000]
)
health = st.one_of(
    st.none(),
    st.builds(lambda p, port: {"http": p, **({"port": port} if port else {})},
              http_paths, st.sampled_from([None, 80, 81, 9999])),
    st.builds(lambda port: {"tcp": port}, st.sampled_from([80, 81, 90, 9999])),
)
env_values = st.one_of(
    st.sampled_from(["prod", "", "x\x00y", 8080, True, None]),
    st.just("v" * 40_000),
)
elbs = st.sampled_from([None, "web-production", "", "web;x", "web\n", "web_1", "a" * 40,
                        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/"
                        "0123456789abcdef"])
images = st.sampled_from(["web:1", "reg.example.com:5000/web:1", "web:vé", "Web:1",
                          "web@sha256:" + "a" * 64, "web@sha256:abc0123456789abcdef0123456789ab"])


@st.composite
def containers(draw: Any) -> dict[str, Any]:
    return {
        "ports": draw(st.lists(ports, max_size=2)),
        "volumes": draw(st.lists(volumes, max_size=2)),
        "logs": draw(st.lists(paths, max_size=2)),
        "env": draw(st.dictionaries(st.sampled_from(["A", "B"]), env_values, max_size=2)),
        "health": draw(health),
    }


@st.composite
def box_files(draw: Any) -> dict[str, Any]:
    apps = {}
    for name in draw(st.lists(names, min_size=1, max_size=3, unique=True)):
        app: dict[str, Any] = {
            "image": draw(images),
            "containers": draw(st.dictionaries(names, containers(), min_size=1, max_size=2)),
        }
        if (elb := draw(elbs)) is not None:
            app["elb"] = elb
            app["lb_kind"] = draw(st.sampled_from(["elb", "elbv2", "haproxy", "none"]))
        apps[name] = app
    return {"apps": apps}


def validates(data: dict[str, Any]) -> BoxSpec | None:
    try:
        spec = BoxSpec.model_validate(data)
    except ValidationError:
        return None
    return None if check_box(spec) else spec


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(box_files())
def test_what_validates_runs_on_the_box(data: dict[str, Any]) -> None:
    spec = validates(data)
    if spec is None:
        return
    for app_name, app in spec.apps.items():
        if app.elb is not None and (app.lb_kind or "elb") == "haproxy":
            HAProxyLB("/nonexistent.sock", app.elb)  # refuses a name its CLI would split on
        for name, cs in app.containers.items():
            req = build_run_request(
                box_id="box-1", box_type="web", app=app_name, container=name, spec=cs,
                image=app.image, env={k: str(v) for k, v in cs.env.items()}, spec_hash="h",
                release="r", token="1.1", role="app", log_root="/var/log/orchestrator",
                bind_ip=None, hostname="box-1",
            )
            fact = ContainerFact(id="x", name=req.name, image=req.image, image_id="i",
                                 state="running", labels={}, created="")
            assert not is_previous(fact), req.name
            assert req.name == container_name("box-1", app_name, name)
            hc = cs.health
            bound = [(p.host_ip or "", p.host_port, p.container_port, p.protocol) for p in cs.ports]
            if hc is not None and hc.http is not None:
                http.client.HTTPConnection("h")._validate_path(hc.http)  # raises InvalidURL
                hc.http.encode("ascii")
                _published(bound, hc.port, "127.0.0.1")
            if hc is not None and hc.tcp is not None:
                _published(bound, hc.tcp, "127.0.0.1")
    names_seen = [f"{a}.{c}" for a, app in spec.apps.items() for c in app.containers]
    assert len(names_seen) == len(set(names_seen))


def test_the_generator_reaches_both_sides() -> None:
    """Some generated files validate and some do not: the property above is not vacuous."""
    seen = {True: 0, False: 0}

    @settings(deadline=None, max_examples=200)
    @given(box_files())
    def count(data: dict[str, Any]) -> None:
        seen[validates(data) is not None] += 1

    count()
    assert seen[True] > 0 and seen[False] > 0, seen
