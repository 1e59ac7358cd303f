"""Box types in AWS, without AWS: the planner's facts-in/actions-out table, and the user data."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.aws.desired import desired_state
from orchestrator.aws.plan import changed_fields, make_plan, plan_delete
from orchestrator.aws.provision import substitute
from orchestrator.aws.state import (
    NEW_SECURITY_GROUP,
    Desired,
    Facts,
    GroupFacts,
    Rule,
    SecurityGroupFacts,
    TemplateFacts,
    rules_of,
    template_description,
)
from orchestrator.aws.userdata import (
    ENV_FILE,
    LOCK_FILE,
    LOCK_SUM_FILE,
    REFS_FILE,
    REQUIREMENTS_FILE,
    UNIT_PATH,
    WORKER_ENV_COMMAND,
    cloud_config,
    decode,
)
from orchestrator.config import load_box
from schemas.boxfile import BoxSpec
from schemas.contract import BOX_TYPE_TAG
from schemas.workerboot import WorkerBoot

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SG = "sg-0aaa1111bbbb2222c"
LB_SG = "sg-0bbb2222cccc3333d"
LT = "lt-0aaa1111bbbb2222c"
VPC = "vpc-0aaa1111bbbb2222c"
SUBNETS = ["subnet-0aaa1111bbbb2222c", "subnet-0bbb2222cccc3333d"]

WHEEL_URL = "https://artifacts.example.com/gc_box_orchestrator-0.1.0-py3-none-any.whl"
WHEEL_SHA = "ab" * 32
LOCK_URL = "https://artifacts.example.com/worker-0.1.0.lock"
LOCK_SHA = "cd" * 32
PINNED = {"wheel": {"url": WHEEL_URL, "sha256": WHEEL_SHA},
          "lock": {"url": LOCK_URL, "sha256": LOCK_SHA}}

BOX = f"""
apps:
  mongos:
    image: registry.example.com/mongos
    containers:
      mongos: {{ports: {{27017: 27017}}}}
  gcweb:
    image: registry.example.com/gcweb
    containers:
      gcweb: {{ports: ['8000:8000', '8125:8125/udp', '127.0.0.1:9999:9999']}}
provision:
  ami: ami-0abc1234def567890
  subnets: {SUBNETS}
  min: 1
  max: 4
  desired: 2
  sources:
    8000: [10.0.0.0/16, {LB_SG}]
    8125: [self]
  scaling:
    cpu_target: 60
    alarms:
      - {{name: memory-high, namespace: CWAgent, metric: mem_used_percent, comparison: ">=",
          threshold: 80, adjustment: 1}}
  worker:
    broker_url: {{secret: "ssm:/orchestrator/broker-url"}}
    wheel: {{url: "{WHEEL_URL}", sha256: "{WHEEL_SHA}"}}
    lock: {{url: "{LOCK_URL}", sha256: "{LOCK_SHA}"}}
"""


def spec_of(text: str = BOX, **provision: Any) -> BoxSpec:
    data = yaml.safe_load(text)
    data["provision"].update(provision)
    return BoxSpec.model_validate(data)


def desired(text: str = BOX, **provision: Any) -> Desired:
    spec = spec_of(text, **provision)
    assert spec.provision is not None
    return desired_state("web", spec, spec.provision, "us-east-1")


def policy_arn(group: str, policy: str) -> str:
    return f"arn:aws:autoscaling:us-east-1:1:scalingPolicy:x:autoScalingGroupName/{group}:policyName/{policy}"  # noqa: E501


def as_built(d: Desired, version: int = 1) -> Facts:
    """The facts AWS reports right after `d` was applied, with the extras AWS adds."""
    rules = frozenset(
        dataclasses.replace(r, source=SG) if r.source == "self" else r for r in d.rules
    )
    data = {**d.template, "SecurityGroupIds": [SG, *d.extra_groups]}
    # moto echoes the template's own tags inside its data; the planner must not care.
    echoed = {**data, "TagSpecifications": [*data["TagSpecifications"], {"ResourceType": "x"}]}
    return Facts(
        vpc_id=VPC,
        security_group=SecurityGroupFacts(SG, rules, VPC),
        template=TemplateFacts(LT, version, template_description(data), echoed),
        group=GroupFacts(
            d.min_size,
            d.max_size,
            d.desired_capacity,
            d.subnets,
            LT,
            str(version),
            {BOX_TYPE_TAG: "web"},
        ),
        policies={
            n: {
                "PolicyName": n,
                "PolicyARN": policy_arn(d.name, n),
                **p.params,
                "PredictiveScalingConfiguration": {},
            }
            for n, p in d.policies.items()
        },
        alarms={
            n: {
                "AlarmName": n,
                **a.params,
                "AlarmActions": [policy_arn(d.name, a.policy)],
                "StateValue": "OK",
                "OKActions": [],
            }
            for n, a in d.alarms.items()
        },
    )


def lines(facts: Facts, d: Desired | None = None) -> list[str]:
    return [str(a) for a in make_plan(d or desired(), facts).actions]


# -- the planner's table ------------------------------------------------------------------------


def test_empty_account_creates_everything_in_order() -> None:
    plan = make_plan(desired(), Facts(vpc_id=VPC))
    assert [(a.verb, a.kind, a.name) for a in plan.actions] == [
        ("create", "security group", "orchestrator-web"),
        ("create", "ingress rule", "orchestrator-web"),
        ("create", "ingress rule", "orchestrator-web"),
        ("create", "ingress rule", "orchestrator-web"),
        ("create", "launch template", "orchestrator-web"),
        ("create", "auto scaling group", "orchestrator-web"),
        ("create", "scaling policy", "orchestrator-web-cpu"),
        ("create", "scaling policy", "orchestrator-web-memory-high"),
        ("create", "alarm", "orchestrator-web-memory-high"),
    ]
    rules = [a.detail for a in plan.actions if a.kind == "ingress rule"]
    assert rules == [
        "tcp 8000 from 10.0.0.0/16",
        f"tcp 8000 from {LB_SG}",
        f"udp 8125 from {NEW_SECURITY_GROUP} (boxes of this type)",
    ]
    group = next(a for a in plan.actions if a.kind == "auto scaling group").params
    assert "TargetGroupARNs" not in group and "LoadBalancerNames" not in group
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (1, 4, 2)
    assert group["Tags"] == [{"Key": BOX_TYPE_TAG, "Value": "web", "PropagateAtLaunch": True}]
    assert plan.notes == [
        "port 27017 is published but has no sources, so it stays closed "
        "(add provision.sources.27017 to open it)"
    ]


def test_as_built_needs_nothing() -> None:
    d = desired()
    plan = make_plan(d, as_built(d))
    assert plan.actions == []


def test_instance_type_change_is_one_new_version_and_the_group_follows() -> None:
    built = as_built(desired())
    assert lines(built, desired(instance_type="m5.large")) == [
        "~ launch template orchestrator-web: new version 2 (instance type m3.large -> m5.large)",
        "~ auto scaling group orchestrator-web: launch template version 1 -> 2",
    ]


def test_group_on_an_older_version_moves_to_the_latest() -> None:
    d = desired()
    built = as_built(d, version=3)
    assert built.group is not None
    built = dataclasses.replace(built, group=dataclasses.replace(built.group, template_version="2"))
    assert lines(built, d) == [
        "~ auto scaling group orchestrator-web: launch template version 2 -> 3"
    ]


def test_user_data_change_is_named() -> None:
    built = as_built(desired())
    d = desired(worker={"broker_url": "redis://10.0.0.9:6379/0", **PINNED})
    assert lines(built, d)[0] == "~ launch template orchestrator-web: new version 2 (user data)"


def test_a_template_version_not_made_by_us_is_replaced() -> None:
    d = desired()
    built = as_built(d)
    assert built.template is not None
    foreign = dataclasses.replace(built.template, description="edited in the console")
    plan = make_plan(d, dataclasses.replace(built, template=foreign))
    assert [a.call for a in plan.actions] == ["create_template_version", "update_group"]


def test_rules_not_in_box_yml_are_revoked_and_missing_ones_granted() -> None:
    d = desired()
    built = as_built(d)
    assert built.security_group is not None
    by_hand = Rule("tcp", 22, 22, "0.0.0.0/0")
    kept = frozenset(r for r in built.security_group.rules if r.source != LB_SG) | {by_hand}
    sg = dataclasses.replace(built.security_group, rules=kept)
    assert lines(dataclasses.replace(built, security_group=sg), d) == [
        f"+ ingress rule orchestrator-web: tcp 8000 from {LB_SG}",
        "- ingress rule orchestrator-web: tcp 22 from 0.0.0.0/0 (not in box.yml)",
    ]


def test_world_is_open_only_when_written_and_then_said_so() -> None:
    assert all(r.source not in ("0.0.0.0/0", "::/0") for r in desired().rules)
    d = desired(sources={8000: ["0.0.0.0/0"]})
    assert d.rules == {Rule("tcp", 8000, 8000, "0.0.0.0/0")}
    assert d.closed_ports == (8125, 27017)
    assert "tcp 8000 from 0.0.0.0/0 (open to the world, as written)" in [
        a.detail for a in make_plan(d, Facts(vpc_id=VPC)).actions
    ]


def test_loopback_ports_get_no_rule_and_no_note() -> None:
    d = desired(sources={})
    assert d.rules == frozenset()
    assert 9999 not in d.closed_ports


def test_sizes_change_and_desired_capacity_is_only_fitted() -> None:
    d = desired()
    built = as_built(d)
    assert built.group is not None
    scaled = dataclasses.replace(built, group=dataclasses.replace(built.group, desired_capacity=3))
    plan = make_plan(d, scaled)
    assert plan.actions == []
    assert any("desired capacity stays 3" in n for n in plan.notes)
    assert lines(scaled, desired(max=2)) == [
        "~ auto scaling group orchestrator-web: max 4 -> 2; "
        "desired capacity 3 -> 2 (to fit min and max)"
    ]


def test_scaling_policy_changes_and_stale_ones_go() -> None:
    d = desired()
    built = as_built(d)
    fewer = desired(scaling={"cpu_target": 70})
    assert lines(built, fewer) == [
        "~ scaling policy orchestrator-web-cpu: target tracking, average CPU 70%",
        "- alarm orchestrator-web-memory-high: not in provision.scaling",
        "- scaling policy orchestrator-web-memory-high: not in provision.scaling",
    ]


def test_an_alarm_keeps_the_arn_of_its_existing_policy() -> None:
    d = desired()
    built = as_built(d)
    changed = desired(
        scaling={
            "cpu_target": 60,
            "alarms": [
                {
                    "name": "memory-high",
                    "namespace": "CWAgent",
                    "metric": "mem_used_percent",
                    "comparison": ">=",
                    "threshold": 90,
                    "adjustment": 1,
                }
            ],
        }
    )
    plan = make_plan(changed, built)
    [alarm] = plan.actions
    assert alarm.params["AlarmActions"] == [policy_arn(d.name, "orchestrator-web-memory-high")]
    assert alarm.params["Threshold"] == 90.0


def test_alarms_of_another_box_type_with_our_prefix_are_left_alone() -> None:
    d = desired()
    built = as_built(d)
    theirs: dict[str, Any] = {
        "AlarmName": "orchestrator-web-api-memory",
        "AlarmActions": [policy_arn("orchestrator-web-api", "orchestrator-web-api-memory")],
    }
    facts = dataclasses.replace(built, alarms={**built.alarms, theirs["AlarmName"]: theirs})
    assert make_plan(d, facts).actions == []
    assert "orchestrator-web-api-memory" not in [a.name for a in plan_delete("web", facts).actions]


def test_group_attached_to_a_load_balancer_is_flagged_not_detached() -> None:
    d = desired()
    built = as_built(d)
    assert built.group is not None
    attached = dataclasses.replace(built.group, load_balancers=("web-production-vpc",))
    plan = make_plan(d, dataclasses.replace(built, group=attached))
    assert plan.actions == []
    assert any("attached to web-production-vpc" in n for n in plan.notes)


def test_delete_runs_alarms_policies_group_template_security_group() -> None:
    built = as_built(desired())
    assert [(a.kind, a.name) for a in plan_delete("web", built).actions] == [
        ("alarm", "orchestrator-web-memory-high"),
        ("scaling policy", "orchestrator-web-cpu"),
        ("scaling policy", "orchestrator-web-memory-high"),
        ("auto scaling group", "orchestrator-web"),
        ("launch template", "orchestrator-web"),
        ("security group", "orchestrator-web"),
    ]
    assert plan_delete("web", Facts(vpc_id="")).actions == []


def test_placeholders_are_substituted_deeply() -> None:
    params = {"IpPermissions": [{"UserIdGroupPairs": [{"GroupId": NEW_SECURITY_GROUP}]}]}
    assert substitute(params, {NEW_SECURITY_GROUP: SG}) == {
        "IpPermissions": [{"UserIdGroupPairs": [{"GroupId": SG}]}]
    }


def test_rules_round_trip_through_ip_permissions() -> None:
    rules = {
        Rule("tcp", 8000, 8000, "10.0.0.0/16"),
        Rule("udp", 53, 53, SG),
        Rule("tcp", 443, 443, "2001:db8::/32"),
    }
    assert rules_of([r.permission() for r in rules]) == rules


def test_changed_fields_words() -> None:
    old = {"ImageId": "ami-1", "InstanceType": "m3.large", "KeyName": "a"}
    new = {"ImageId": "ami-2", "InstanceType": "m3.large"}
    assert changed_fields(old, new) == "ami ami-1 -> ami-2, key name removed"


# -- user data --------------------------------------------------------------------------------


def test_user_data_is_a_cloud_init_document_that_starts_the_worker() -> None:
    d = desired()
    text = decode(d.template["UserData"])
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert "docker.io" in doc["packages"]
    files = {f["path"]: f for f in doc["write_files"]}
    unit = (EXAMPLES / "systemd" / "orchestrator-worker.service").read_text()
    assert files[UNIT_PATH]["content"] == unit
    refs = json.loads(files[REFS_FILE]["content"])
    assert files[REFS_FILE]["permissions"] == "0600"
    assert refs == {
        "ORCHESTRATOR_BOX_TYPE": "web",
        "ORCHESTRATOR_AWS_REGION": "us-east-1",
        "ORCHESTRATOR_BROKER_URL": {"secret": "ssm:/orchestrator/broker-url"},
    }
    assert doc["runcmd"][-1] == "systemctl enable --now orchestrator-worker"
    assert doc["runcmd"].index("systemctl enable --now docker") < len(doc["runcmd"]) - 1


def test_user_data_is_deterministic() -> None:
    assert desired().template["UserData"] == desired().template["UserData"]


def test_the_box_resolves_its_settings_at_boot_with_the_worker_package_command() -> None:
    # No Python in the user data: the installed console script writes worker.env (mode 600;
    # tests/unit/test_bootenv.py runs it), after the package is installed, before the unit.
    doc = yaml.safe_load(decode(desired().template["UserData"]))
    command = f"{WORKER_ENV_COMMAND} {REFS_FILE} {ENV_FILE}"
    runcmd = doc["runcmd"]
    assert command in runcmd
    install = next(i for i, c in enumerate(runcmd) if " install --quiet " in c)
    start = runcmd.index("systemctl enable --now orchestrator-worker")
    assert install < runcmd.index(command) < start
    assert [f["path"] for f in doc["write_files"]] == [
        REFS_FILE, UNIT_PATH, LOCK_SUM_FILE, REQUIREMENTS_FILE
    ]


def test_worker_settings_and_redis_url_are_written() -> None:
    boot = WorkerBoot.model_validate(
        {
            "broker_url": "redis://10.0.0.5:6379/0",
            "redis_url": {"secret": "ssm:/orchestrator/redis-url"},
            "settings": {"log_root": "/var/log/o", "step_deadline": 90},
            **PINNED,
        }
    )
    refs = json.loads(
        yaml.safe_load(cloud_config("web", "eu-west-1", boot))["write_files"][0]["content"]
    )
    assert refs["ORCHESTRATOR_REDIS_URL"] == {"secret": "ssm:/orchestrator/redis-url"}
    assert refs["ORCHESTRATOR_LOG_ROOT"] == "/var/log/o"
    assert refs["ORCHESTRATOR_STEP_DEADLINE"] == "90"
    assert refs["ORCHESTRATOR_AWS_REGION"] == "eu-west-1"


# -- the provision section in box.yml ---------------------------------------------------------


def test_provision_is_not_stored_in_releases() -> None:
    # Releases hash the dumped spec: files with a provision section hash as before.
    with_it = spec_of()
    assert "provision" not in with_it.model_dump(mode="json")
    example = load_box(EXAMPLES / "boxes" / "web-aws.yml").spec
    assert example.provision is not None
    assert example.provision.instance_type == "m3.large"
    assert example.model_dump() == load_box(EXAMPLES / "boxes" / "web.yml").spec.model_dump()


def test_defaults() -> None:
    spec = spec_of(BOX.replace("  desired: 2\n", ""))
    assert spec.provision is not None
    assert spec.provision.instance_type == "m3.large"
    assert spec.provision.desired_capacity == 1


@pytest.mark.parametrize(
    "profile, expected",
    [
        ("web-box", {"Name": "web-box"}),
        (
            "arn:aws:iam::123456789012:instance-profile/boxes/web-box",
            {"Arn": "arn:aws:iam::123456789012:instance-profile/boxes/web-box"},
        ),
    ],
)
def test_instance_profile_by_name_or_arn(profile: str, expected: dict[str, str]) -> None:
    assert desired(iam_instance_profile=profile).template["IamInstanceProfile"] == expected


# (id, replacement in BOX, field path in the output, a fragment of the message)
BAD_PROVISION = [
    (
        "desired above max",
        ("desired: 2", "desired: 5"),
        "provision.desired",
        "desired 5 is more than max 4",
    ),
    ("max below min", ("min: 1", "min: 5"), "provision.max", "max 4 is less than min 5"),
    (
        "missing ami",
        ("  ami: ami-0abc1234def567890\n", ""),
        "provision.ami",
        "required key is missing",
    ),
    ("not an ami", ("ami-0abc1234def567890", "ubuntu"), "provision.ami", "is not an AMI id"),
    ("unknown key", ("min: 1", "min: 1\n  minimum: 1"), "provision.minimum", "unknown key"),
    (
        "password in broker url",
        ('{secret: "ssm:/orchestrator/broker-url"}', "redis://:hunter2@10.0.0.5:6379/0"),
        "provision.worker.broker_url",
        "carries a password",
    ),
    (
        "password parameter in redis url",
        ('{secret: "ssm:/orchestrator/broker-url"}', "redis://10.0.0.5:6379/0?password=hunter2"),
        "provision.worker.broker_url",
        "carries a password",
    ),
    (
        "sentinel password in a sentinels url",
        ('{secret: "ssm:/orchestrator/broker-url"}',
         "sentinels://s1:26379,s2:26379/0?master_name=m&sentinel_password=hunter2"),
        "provision.worker.broker_url",
        "carries a password",
    ),
    (
        "tls checks off in a sentinels url",
        ('{secret: "ssm:/orchestrator/broker-url"}',
         "sentinels://s1:26379/0?master_name=m&ssl_cert_reqs=none"),
        "provision.worker.broker_url",
        "turns off TLS certificate checks",
    ),
    (
        "tls checks off in broker url",
        ('{secret: "ssm:/orchestrator/broker-url"}', "rediss://10.0.0.5:6380/0?ssl_cert_reqs=none"),
        "provision.worker.broker_url",
        "turns off TLS certificate checks",
    ),
    (
        "insecure tls setting",
        (
            'broker_url: {secret: "ssm:/orchestrator/broker-url"}',
            "broker_url: rediss://r:6380/0\n    settings: {insecure_redis_tls: true}",
        ),
        "provision.worker.settings",
        "turns off Redis certificate checks",
    ),
    (
        "secret-looking setting",
        (
            'broker_url: {secret: "ssm:/orchestrator/broker-url"}',
            "broker_url: redis://r:6379/0\n    settings: {api_token: x}",
        ),
        "provision.worker.settings",
        "looks secret",
    ),
    (
        "a bare package name",
        ("    wheel: {", '    package: orchestrator==0.1.0\n    wheel: {'),
        "provision.worker",
        "'package' is gone",
    ),
    (
        "wheel over http",
        ('wheel: {url: "https:', 'wheel: {url: "http:'),
        "provision.worker.wheel.url",
        "must be an https:// URL",
    ),
    (
        "wheel URL not a wheel",
        ("py3-none-any.whl", "tar.gz"),
        "provision.worker.wheel",
        "must end in a wheel's file name",
    ),
    (
        "lock hash too short",
        (LOCK_SHA, "cdcd"),
        "provision.worker.lock.sha256",
        "must be 64 hex digits",
    ),
    (
        "lock URL with a password",
        ("https://artifacts.example.com/worker", "https://u:pw@artifacts.example.com/worker"),
        "provision.worker.lock.url",
        "carries credentials",
    ),
    (
        "no lock",
        (f'    lock: {{url: "{LOCK_URL}", sha256: "{LOCK_SHA}"}}\n', ""),
        "provision.worker.lock",
        "required key is missing",
    ),
    (
        "cidr with host bits",
        ("10.0.0.0/16", "10.0.0.1/16"),
        "provision.sources.8000[0]",
        "write '10.0.0.0/16'",
    ),
    ("source not a cidr", ("10.0.0.0/16", "office"), "provision.sources.8000[0]", "is not a CIDR"),
    (
        "unpublished port",
        ("    8125: [self]", "    8443: [self]"),
        "provision.sources.8443",
        "not published by this box type",
    ),
    (
        "loopback port",
        ("    8125: [self]", "    9999: [self]"),
        "provision.sources.9999",
        "loopback address only",
    ),
    (
        "reserved alarm name",
        ("name: memory-high", "name: cpu"),
        "provision.scaling.alarms[0].name",
        "'cpu' is the target tracking",
    ),
    (
        "bad comparison",
        ('comparison: ">="', 'comparison: "=>"'),
        "provision.scaling.alarms[0].comparison",
        "Input should be",
    ),
    (
        "subnet twice",
        (f"{SUBNETS}", f"['{SUBNETS[0]}', '{SUBNETS[0]}']"),
        "provision.subnets",
        "listed twice",
    ),
]


@pytest.mark.parametrize(
    ("what", "change", "path", "fragment"), BAD_PROVISION, ids=[r[0] for r in BAD_PROVISION]
)
def test_bad_provision_is_exit_2_with_path(
    what: str,
    change: tuple[str, str],
    path: str,
    fragment: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from orchestrator.cli import main

    old, new = change
    assert old in BOX
    box = tmp_path / "web.yml"
    box.write_text(BOX.replace(old, new))
    assert main(["validate", str(box)]) == 2
    err = capsys.readouterr().err
    assert f": {path}: " in err and fragment in err, err
    assert "Traceback" not in err


# -- the worker is installed pinned -----------------------------------------------------------


def test_user_data_installs_only_pinned_files_with_require_hashes() -> None:
    text = decode(desired().template["UserData"])
    doc = yaml.safe_load(text)
    files = {f["path"]: f["content"] for f in doc["write_files"]}
    (install,) = [c for c in doc["runcmd"] if " install " in c]
    # one shell line: a lock whose sha256 does not match stops it before pip runs
    fetch, check, pip = install.split(" && ")[1:]
    assert fetch.endswith(f"--output {LOCK_FILE} {LOCK_URL}") and "--proto =https" in fetch
    assert check == f"sha256sum --check --strict {LOCK_SUM_FILE}"
    assert files[LOCK_SUM_FILE] == f"{LOCK_SHA}  {LOCK_FILE}\n"
    assert pip.endswith(f"pip install --quiet --no-input --require-hashes -r {REQUIREMENTS_FILE}")
    requirements = files[REQUIREMENTS_FILE]
    assert f"-r {LOCK_FILE}\n" in requirements
    assert f"gc-box-orchestrator @ {WHEEL_URL} \\\n    --hash=sha256:{WHEEL_SHA}\n" in requirements
    assert "pip install orchestrator" not in text and "install --quiet orchestrator" not in text
    # every pip line installs from the hashed files only: no name, no URL on the command line
    for line in text.splitlines():
        if " install " in line:
            assert "--require-hashes -r " + REQUIREMENTS_FILE in line


def test_readme_installs_the_worker_pinned() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "pip install orchestrator" not in readme
    assert "pip install --require-hashes -r /opt/orchestrator/worker-requirements.txt" in readme
    assert "-r /opt/orchestrator/worker.lock\ngc-box-orchestrator @ https://" in readme
    assert "    --hash=sha256:" in readme
