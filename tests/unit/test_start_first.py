"""start-first: what validate refuses, which ports each version takes, the intent note. Pure."""

from __future__ import annotations

import pytest

from schemas.boxfile import AppSpec, BoxSpec
from schemas.checks import check_box
from schemas.fleet import FleetSettings
from schemas.strategy import color_map, lb_host_port, other_port, port_now, strategy_problems
from worker.decide import SwapIntent

pytestmark = pytest.mark.unit


def app(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "elb": "web", "lb_kind": "haproxy", "strategy": "start-first",
        "alternate_ports": {8080: 8081}, "image": "web:1",
        "containers": {"web": {"ports": ["8080:80"]}},
    }
    base.update(over)
    return base


def problems(apps: dict[str, dict[str, object]], default: str = "elb") -> list[tuple[str, str]]:
    return strategy_problems(BoxSpec.model_validate({"apps": apps}), default)


def test_a_start_first_app_behind_haproxy_or_elbv2_validates() -> None:
    assert problems({"web": app()}) == []
    assert problems({"web": app(lb_kind=None)}, default="haproxy") == []
    assert problems({"web": app(lb_kind="elbv2", lb_port=8080)}) == []
    assert problems({"web": app(strategy="stop-first", alternate_ports={})}) == []


@pytest.mark.parametrize(("over", "path", "words"), [
    ({"elb": None}, "apps.web.strategy", "this app has none"),
    ({"lb_kind": "none"}, "apps.web.strategy", "this app has none"),
    ({"lb_kind": "elb"}, "apps.web.strategy", "fixed instance port"),
    ({"lb_kind": None}, "apps.web.strategy", "fixed instance port"),  # the default kind: elb
    ({"lb_kind": "elbv2"}, "apps.web.lb_port", "set lb_port"),
    ({"lb_port": 9000}, "apps.web.lb_port", "not a published host port"),
    ({"alternate_ports": {}}, "apps.web.alternate_ports", "8080 has no alternate"),
    ({"alternate_ports": {8080: 8080}}, "apps.web.alternate_ports.8080", "already published"),
    ({"alternate_ports": {8080: 0}}, "apps.web.alternate_ports.8080", "is not a port (1-65535)"),
    ({"alternate_ports": {8080: 70000}}, "apps.web.alternate_ports.8080", "is not a port"),
    ({"containers": {"w": {"ports": ["8080:80", "8443:443"]}},
      "alternate_ports": {8080: 9000, 8443: 9000}}, "apps.web.alternate_ports.8443",
     "the alternate of another port too"),
    ({"alternate_ports": {8080: 8081, 7000: 7001}}, "apps.web.alternate_ports.7000",
     "not a published host port"),
    ({"containers": {"w": {}}, "alternate_ports": {}}, "apps.web.strategy",
     "needs a published port"),
    ({"strategy": "stop-first"}, "apps.web.alternate_ports", "only by `strategy: start-first`"),
])
def test_validate_refuses_with_the_field_and_the_fix(
    over: dict[str, object], path: str, words: str
) -> None:
    found = problems({"web": app(**over)})
    assert any(p == path and words in why for p, why in found), found


def test_an_app_others_depend_on_cannot_start_first() -> None:
    found = problems({"web": app(), "api": {"image": "api:1", "depends": ["web"],
                                           "containers": {"api": {}}}})
    assert found == [("apps.web.strategy", found[0][1])] and "'api' depends on" in found[0][1]


def test_an_alternate_port_clashing_with_another_app_is_refused() -> None:
    found = problems({"web": app(alternate_ports={8080: 9090}),
                      "m": {"image": "m:1", "containers": {"m": {"ports": ["9090:9090"]}}}})
    assert ("apps.web.alternate_ports.8080" in {p for p, _ in found})


def test_check_box_uses_the_fleet_default_kind() -> None:
    spec = BoxSpec.model_validate({"apps": {"web": app(lb_kind=None)}})
    assert [str(p) for p in check_box(spec, FleetSettings(load_balancer="haproxy"))] == []
    assert any("fixed instance port" in str(p) for p in check_box(spec, None))


def test_the_two_port_sets_are_used_in_turn() -> None:
    spec = AppSpec.model_validate(app(alternate_ports={8080: 8081}))
    assert lb_host_port(spec) == 8080
    assert color_map(spec, {8080}) == {8080: 8081}  # blue runs: green next
    assert color_map(spec, {8081}) == {8080: 8080}  # green runs: blue next
    assert color_map(spec, set()) == {8080: 8081}
    assert port_now(spec, {8080}) == 8080 and port_now(spec, {8081}) == 8081
    assert port_now(spec, set()) is None
    assert other_port(spec, 8080) == 8081 and other_port(spec, 8081) == 8080
    assert other_port(spec, 1234) == 1234


def test_lb_port_names_the_member_port_among_several() -> None:
    spec = AppSpec.model_validate(app(
        lb_port=9000, alternate_ports={8080: 8081, 9000: 9001},
        containers={"web": {"ports": ["8080:80", "9000:9000"]}}))
    assert lb_host_port(spec) == 9000
    assert port_now(spec, {8081, 9001}) == 9001


def test_the_intent_note_keeps_the_strategy_and_an_old_note_reads_as_stop_first() -> None:
    intent = SwapIntent(new_hash="n", new_release="r2", previous_hash="o",
                        previous_release="r1", strategy="start-first")
    assert SwapIntent.from_note(intent.note()) == intent
    old = SwapIntent(new_hash="n", new_release="r2").note()
    assert "strategy" not in old  # a stop-first note is what it was before start-first
    assert SwapIntent.from_note(old).strategy == "stop-first"



def test_preflight_needs_memory_for_both_versions() -> None:
    from worker.overlap import MEMORY_MARGIN, memory_problem

    assert memory_problem(100 << 20, None) == ""  # the box does not say: not refused
    assert memory_problem(100 << 20, (100 << 20) + MEMORY_MARGIN) == ""
    why = memory_problem(100 << 20, 120 << 20)
    assert "both versions at once" in why and "100 MiB" in why and "120 MiB" in why


def test_preflight_sees_a_port_in_use() -> None:
    import socket

    from worker.overlap import port_in_use

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
    assert not port_in_use("127.0.0.1", port)
