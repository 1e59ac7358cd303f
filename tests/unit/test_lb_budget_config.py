"""fleet.yml's `load_balancers` budgets: bad input exits 2 naming file and field path; the one
stable key of a load balancer, as fleet.yml and the box derive it."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from schemas.fleet import FleetSettings, LbBudget, lb_key

BOX = """
apps:
  web:
    image: registry.example.com/web:1
    elb: web
    lb_kind: haproxy
    containers:
      web: {ports: ['8080:80']}
"""

# (id, the load_balancers entries, field path expected, a fragment of the message)
BAD: list[tuple[str, str, str, str]] = [
    ("zero", "- {kind: elb, name: web, max_out: 0}", "load_balancers[0].max_out", ">= 1"),
    ("negative", "- {kind: elb, name: web, max_out: -2}", "load_balancers[0].max_out", ">= 1"),
    ("string", "- {kind: elb, name: web, max_out: 'one'}", "load_balancers[0].max_out",
     "whole number"),
    ("float", "- {kind: elb, name: web, max_out: 1.5}", "load_balancers[0].max_out",
     "whole number"),
    ("bool", "- {kind: elb, name: web, max_out: true}", "load_balancers[0].max_out",
     "whole number"),
    ("missing", "- {kind: elb, name: web}", "load_balancers[0].max_out", "required"),
    ("unknown kind", "- {kind: nginx, name: web, max_out: 1}", "load_balancers[0].kind", "elb"),
    ("none kind", "- {kind: none, name: web, max_out: 1}", "load_balancers[0].kind", "elb"),
    ("no name", "- {kind: elb, name: '', max_out: 1}", "load_balancers[0].name", "at least 1"),
    ("haproxy without socket", "- {kind: haproxy, name: web, max_out: 1}", "load_balancers[0]",
     "socket: /path/to/haproxy.sock"),
    ("socket on an elb", "- {kind: elb, name: web, socket: /s, max_out: 1}",
     "load_balancers[0]", "haproxy only"),
    ("haproxy backend with blanks", "- {kind: haproxy, name: 'bad name!!', socket: /run/h.sock, "
     "max_out: 1}", "load_balancers[0]", "HAProxy backend 'bad name!!' must be"),
    ("blank elb name", "- {kind: elb, name: '  ', max_out: 1}", "load_balancers[0]",
     "classic ELB name '' must be"),
    ("socket with a newline", '- {kind: haproxy, name: web, socket: "/run/x\\n.sock", '
     "max_out: 1}", "load_balancers[0]", "socket: /path/to/haproxy.sock"),
    ("unknown key", "- {kind: elb, name: web, max_out: 1, max_in: 2}",
     "load_balancers[0].max_in", "unknown key"),
    ("twice", "- {kind: haproxy, name: web, socket: /run/h.sock, max_out: 1}\n"
     "- {kind: haproxy, name: web, socket: /run/../run/h.sock, max_out: 2}",
     "load_balancers", "load_balancers[1] names the same load balancer as load_balancers[0]"),
]


@pytest.mark.parametrize(("entries", "path", "fragment"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_a_bad_budget_exits_2_naming_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], entries: str, path: str, fragment: str,
) -> None:
    fleet = tmp_path / "fleet.yml"
    fleet.write_text("load_balancers:\n" + "".join(f"  {line}\n" for line in
                                                   entries.splitlines()))
    box = tmp_path / "web.yml"
    box.write_text(BOX)
    assert main(["validate", str(box)]) == 2
    err = capsys.readouterr().err
    assert f"{fleet}:" in err and f": {path}: " in err and fragment in err, err
    assert "Traceback" not in err


def test_a_good_budget_validates_and_publishes_by_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "fleet.yml").write_text(
        "load_balancers:\n"
        "  - {kind: haproxy, name: web, socket: /run/haproxy/admin.sock, max_out: 1}\n"
        "  - {kind: elbv2, name: 'arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/w/a',"
        " max_out: 3}\n"
    )
    box = tmp_path / "web.yml"
    box.write_text(BOX)
    assert main(["validate", str(box)]) == 0, capsys.readouterr().err
    from orchestrator.config import load_fleet

    assert load_fleet(tmp_path / "fleet.yml").budgets() == {
        "haproxy:/run/haproxy/admin.sock#web": 1,
        "elbv2:arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/w/a": 3,
    }


def test_no_budget_by_default() -> None:
    assert FleetSettings().budgets() == {}


@pytest.mark.parametrize(("kind", "name", "socket", "key"), [
    ("elb", "web-elb", None, "elb:web-elb"),
    ("elb", " web-elb ", None, "elb:web-elb"),
    ("elbv2", "arn:aws:elasticloadbalancing:us-east-1:123:targetgroup/web/6d0ecf831eec9f09",
     None, "elbv2:arn:aws:elasticloadbalancing:us-east-1:123:targetgroup/web/6d0ecf831eec9f09"),
    ("elbv2", "web-tg", None, "elbv2:web-tg"),
    ("haproxy", "web", "/run/haproxy/admin.sock", "haproxy:/run/haproxy/admin.sock#web"),
    ("haproxy", "web", "/run//haproxy/./admin.sock", "haproxy:/run/haproxy/admin.sock#web"),
    ("haproxy", "api", "/run/haproxy/admin.sock", "haproxy:/run/haproxy/admin.sock#api"),
    ("haproxy", "web", "/run/other.sock", "haproxy:/run/other.sock#web"),
])
def test_the_load_balancer_key(kind: str, name: str, socket: str | None, key: str) -> None:
    assert lb_key(kind, name, socket) == key
    # fleet.yml's entry and the box's membership name the same balancer the same way.
    assert LbBudget.model_validate(
        {"kind": kind, "name": name, "socket": socket, "max_out": 1}).key() == key


def test_one_backend_behind_two_haproxies_is_two_balancers() -> None:
    assert lb_key("haproxy", "web", "/a.sock") != lb_key("haproxy", "web", "/b.sock")
    assert lb_key("elb", "web") != lb_key("elbv2", "web")


def test_a_deferred_leave_sends_the_box_back_not_counted_as_a_failure() -> None:
    from schemas.contract import Outcome, StepResult
    from worker.steps.rollout import box_outcome

    def r(step: str, outcome: Outcome) -> StepResult:
        return StepResult(step=step, rollout_id="r", box_id="b", outcome=outcome,
                          started=0.0, ended=0.0)

    claimed = {"deploy.claim:-": r("deploy.claim", Outcome.OK)}
    deferred = {**claimed, "deploy.leave_lb:-": r("deploy.leave_lb", Outcome.DEFERRED),
                "deploy.swap:web": r("deploy.swap", Outcome.DEFERRED)}
    assert box_outcome(deferred) == "deferred"
    left = {**claimed, "deploy.leave_lb:-": r("deploy.leave_lb", Outcome.OK)}
    assert box_outcome(left) == "ok"
    failed = {**deferred, "deploy.pull:-": r("deploy.pull", Outcome.FAILED)}
    assert box_outcome(failed) == "failed"


@pytest.mark.parametrize(("names", "words"), [
    ([""], "an alarm name is empty"),
    (["ok", "a\nb"], "has a control character"),
    (["x" * 256], "CloudWatch allows 255"),
])
def test_fleet_alarm_names_are_checked(names: list[str], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        FleetSettings.model_validate({"alarms": {"web": names}})
    assert FleetSettings.model_validate({"alarms": {"web": ["web-5xx"]}}).alarms


PASSWORD = {"secret": "ssm:/fleet/registry-password"}


@pytest.mark.parametrize(("fleet", "words"), [
    ({"registries": [{"registry": "https://reg:5000/", "username": "u", "password": PASSWORD}]},
     "write 'reg:5000'"),
    ({"registries": [{"registry": "", "username": "u", "password": PASSWORD}]},
     "not a registry host"),
    ({"registries": [{"registry": "reg:5000", "username": "", "password": PASSWORD}]},
     "username '' is empty"),
    ({"registries": [{"registry": "reg:5000", "username": "u", "password": PASSWORD},
                     {"registry": "reg:5000", "username": "v", "password": PASSWORD}]},
     "registries\\[1\\] is reg:5000 again"),
    ({"log_root": "/var/log/../../etc"}, "has a '..' part"),
    ({"log_root": "/var/log/a\nb"}, "control character"),
    ({"log_root": "/var/log:x"}, "a Docker bind .* can't carry"),
    ({"log_root": "var/log"}, "must be an absolute path"),
    ({"notifications": [{"sns": "arn:aws:sns:us-east-1:123456789012:t", "events": []}]},
     "events is empty"),
])
def test_fleet_file_mistakes_are_named(fleet: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        FleetSettings.model_validate(fleet)


def test_the_shipped_fleet_example_still_validates() -> None:
    import yaml

    root = Path(__file__).resolve().parents[2]
    text = (root / "examples" / "fleet.yml").read_text()
    assert FleetSettings.model_validate(yaml.safe_load(text))
