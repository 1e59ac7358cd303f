"""`orchestrator boxtype` against a real moto server: create, idempotence, rules, bad input."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from orchestrator.cli import cli, main
from orchestrator.cli_boxtype import boxtype
from tests.harness.aws_fx import DUMMY_CREDENTIALS, AwsAccount

ROOT = Path(__file__).resolve().parents[2]
WEB = (ROOT / "examples" / "boxes" / "web.yml").read_text()
NAME = "orchestrator-web"
WHEEL_URL = "https://artifacts.example.com/gc_box_orchestrator-0.1.0-py3-none-any.whl"
BROKER_URL = "redis://:s3cret-broker-pw@10.0.0.5:6379/0"


@dataclass
class Account:
    """A moto account with a VPC, two subnets, an AMI and a load balancer's security group."""

    aws: AwsAccount
    boxes: Path
    ami: str
    vpc: str
    subnets: list[str]
    lb_group: str
    clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = self.aws.client(service)
        return self.clients[service]

    def write(self, **provision: Any) -> Path:
        data: dict[str, Any] = {
            "ami": self.ami,
            "subnets": self.subnets,
            "min": 1,
            "max": 4,
            "desired": 2,
            "sources": {8000: ["10.0.0.0/16", self.lb_group]},
            "scaling": {
                "cpu_target": 60,
                "alarms": [
                    {
                        "name": "memory-high",
                        "namespace": "CWAgent",
                        "metric": "mem_used_percent",
                        "comparison": ">=",
                        "threshold": 80,
                        "adjustment": 1,
                    },
                    {
                        "name": "memory-low",
                        "namespace": "CWAgent",
                        "metric": "mem_used_percent",
                        "comparison": "<",
                        "threshold": 30,
                        "adjustment": -1,
                    },
                ],
            },
            "worker": {
                "broker_url": {"secret": "ssm:/orchestrator/broker-url"},
                "wheel": {"url": WHEEL_URL, "sha256": "ab" * 32},
                "lock": {"url": "https://artifacts.example.com/worker.lock", "sha256": "cd" * 32},
            },
        }
        data.update(provision)
        path = self.boxes / "web.yml"
        path.write_text(WEB + yaml.safe_dump({"provision": data}, sort_keys=False))
        return path

    def run(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        code = main(["boxtype", *args])
        out, err = capsys.readouterr()
        return code, out, err

    # -- what moto holds ------------------------------------------------------------------
    def security_groups(self) -> list[dict[str, Any]]:
        return list(
            self.client("ec2").describe_security_groups(
                Filters=[{"Name": "group-name", "Values": [NAME]}]
            )["SecurityGroups"]
        )

    def template_versions(self) -> list[dict[str, Any]]:
        ec2 = self.client("ec2")
        found = ec2.describe_launch_templates(
            Filters=[{"Name": "launch-template-name", "Values": [NAME]}]
        )["LaunchTemplates"]
        if not found:
            return []
        versions = ec2.describe_launch_template_versions(
            LaunchTemplateId=found[0]["LaunchTemplateId"]
        )["LaunchTemplateVersions"]
        return sorted(versions, key=lambda v: v["VersionNumber"])

    def group(self) -> dict[str, Any] | None:
        found = self.client("autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[NAME]
        )["AutoScalingGroups"]
        return found[0] if found else None

    def policies(self) -> dict[str, dict[str, Any]]:
        found = self.client("autoscaling").describe_policies(AutoScalingGroupName=NAME)[
            "ScalingPolicies"
        ]
        return {p["PolicyName"]: p for p in found}

    def alarms(self) -> dict[str, dict[str, Any]]:
        found = self.client("cloudwatch").describe_alarms(AlarmNamePrefix=f"{NAME}-")[
            "MetricAlarms"
        ]
        return {a["AlarmName"]: a for a in found}

    def nothing_made(self) -> bool:
        return not (
            self.security_groups() or self.template_versions() or self.group() or self.alarms()
        )


@pytest.fixture
def account(aws: AwsAccount, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Account]:
    ec2 = aws.client("ec2")
    # One of moto's default AMIs; filtered, since listing all of them takes a second.
    ami = ec2.describe_images(
        Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn2-ami-hvm-*"]}]
    )["Images"][0]["ImageId"]
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(
            VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"us-east-1{zone}"
        )["Subnet"]["SubnetId"]
        for i, zone in enumerate("ab")
    ]
    lb_group = ec2.create_security_group(GroupName="web-lb", Description="the ALB", VpcId=vpc)[
        "GroupId"
    ]
    aws.client("ssm").put_parameter(
        Name="/orchestrator/broker-url", Value=BROKER_URL, Type="SecureString"
    )
    boxes = tmp_path / "boxes"
    boxes.mkdir()
    # The command reads its settings and credentials as it would anywhere: the environment.
    monkeypatch.setenv("ORCHESTRATOR_BOXES_DIR", str(boxes))
    monkeypatch.setenv("ORCHESTRATOR_AWS_ENDPOINT_URL", aws.endpoint_url)
    monkeypatch.setenv("ORCHESTRATOR_AWS_REGION", aws.region)
    monkeypatch.delenv("ORCHESTRATOR_FLEET_FILE", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DUMMY_CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY_CREDENTIALS["aws_secret_access_key"])
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    cli.add_command(boxtype)  # registered for these tests only (cli.py registers it itself)
    try:
        yield Account(aws, boxes, ami, vpc, subnets, lb_group)
    finally:
        cli.commands.pop("boxtype", None)


def test_create_makes_everything_and_a_second_run_changes_nothing(
    account: Account, capsys: pytest.CaptureFixture[str]
) -> None:
    account.write()
    code, out, err = account.run(capsys, "create", "web")
    assert code == 0, err
    assert "web: 10 changes made" in out

    [sg] = account.security_groups()
    assert sg["VpcId"] == account.vpc
    assert {"Key": "orchestrator:box-type", "Value": "web"} in sg["Tags"]
    [version] = account.template_versions()
    data = version["LaunchTemplateData"]
    assert (data["ImageId"], data["InstanceType"]) == (account.ami, "m3.large")
    assert data["SecurityGroupIds"] == [sg["GroupId"]]
    assert data["MetadataOptions"]["HttpTokens"] == "required"

    group = account.group()
    assert group is not None
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (1, 4, 2)
    assert set(group["VPCZoneIdentifier"].split(",")) == set(account.subnets)
    assert group["LaunchTemplate"]["Version"] == "1"
    assert {(t["Key"], t["Value"], t["PropagateAtLaunch"]) for t in group["Tags"]} == {
        ("orchestrator:box-type", "web", True)
    }
    # box.yml names an ELB, yet the group is not attached: a box joins once healthy.
    assert group["LoadBalancerNames"] == [] and group["TargetGroupARNs"] == []

    policies = account.policies()
    assert set(policies) == {f"{NAME}-cpu", f"{NAME}-memory-high", f"{NAME}-memory-low"}
    cpu = policies[f"{NAME}-cpu"]
    assert cpu["PolicyType"] == "TargetTrackingScaling"
    assert cpu["TargetTrackingConfiguration"]["TargetValue"] == 60.0
    assert policies[f"{NAME}-memory-high"]["StepAdjustments"] == [
        {"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}
    ]
    assert policies[f"{NAME}-memory-low"]["StepAdjustments"] == [
        {"MetricIntervalUpperBound": 0.0, "ScalingAdjustment": -1}
    ]
    alarms = account.alarms()
    assert set(alarms) == {f"{NAME}-memory-high", f"{NAME}-memory-low"}
    high = alarms[f"{NAME}-memory-high"]
    assert high["AlarmActions"] == [policies[f"{NAME}-memory-high"]["PolicyARN"]]
    assert (high["Namespace"], high["MetricName"], high["Threshold"]) == (
        "CWAgent",
        "mem_used_percent",
        80.0,
    )
    assert high["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert high["Dimensions"] == [{"Name": "AutoScalingGroupName", "Value": NAME}]

    code, out, err = account.run(capsys, "create", "web")
    assert code == 0, err
    assert out.startswith("web: no changes (")
    assert err == ""  # no action ran
    assert len(account.template_versions()) == 1
    assert len(account.security_groups()) == 1


def test_dry_run_prints_the_plan_and_changes_nothing(
    account: Account, capsys: pytest.CaptureFixture[str]
) -> None:
    account.write()
    code, out, err = account.run(capsys, "create", "web", "--dry-run")
    assert code == 0, err
    assert f"  + security group {NAME}: in {account.vpc}" in out
    assert f"  + launch template {NAME}: version 1: {account.ami}, m3.large" in out
    assert f"  + alarm {NAME}-memory-high: CWAgent mem_used_percent >= 80 for 2 x 60s" in out
    assert "port 27017 is published but has no sources, so it stays closed" in out
    assert out.rstrip().endswith("web: dry run: nothing was changed")
    assert account.nothing_made()


def test_changing_the_instance_type_makes_exactly_one_new_template_version(
    account: Account, capsys: pytest.CaptureFixture[str]
) -> None:
    account.write()
    assert account.run(capsys, "create", "web")[0] == 0
    account.write(instance_type="m5.large")
    code, out, err = account.run(capsys, "create", "web", "--dry-run")
    assert code == 0, err
    assert [line for line in out.splitlines() if line.startswith("  ~")] == [
        f"  ~ launch template {NAME}: new version 2 (instance type m3.large -> m5.large)",
        f"  ~ auto scaling group {NAME}: launch template version 1 -> 2",
    ]
    assert len(account.template_versions()) == 1

    assert account.run(capsys, "create", "web")[0] == 0
    versions = account.template_versions()
    assert [v["VersionNumber"] for v in versions] == [1, 2]
    assert versions[1]["LaunchTemplateData"]["InstanceType"] == "m5.large"
    group = account.group()
    assert group is not None and group["LaunchTemplate"]["Version"] == "2"

    code, out, _ = account.run(capsys, "create", "web")
    assert out.startswith("web: no changes (") and "version 2" in out
    assert len(account.template_versions()) == 2


def test_user_data_decodes_to_cloud_init_that_installs_and_starts_the_worker(
    account: Account, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    account.write()
    assert account.run(capsys, "create", "web")[0] == 0
    [version] = account.template_versions()
    text = base64.b64decode(version["LaunchTemplateData"]["UserData"]).decode()
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert "docker.io" in doc["packages"]
    files = {f["path"]: f["content"] for f in doc["write_files"]}
    unit = (ROOT / "examples" / "systemd" / "orchestrator-worker.service").read_text()
    assert files["/etc/systemd/system/orchestrator-worker.service"] == unit
    install = next(c for c in doc["runcmd"] if " install " in c)
    assert "--require-hashes" in install and "pip install --quiet orchestrator" not in text
    assert f"gc-box-orchestrator @ {WHEEL_URL}" in text and "--hash=sha256:" + "ab" * 32 in text
    assert doc["runcmd"][-1] == "systemctl enable --now orchestrator-worker"
    refs = json.loads(files["/etc/orchestrator/worker.refs.json"])
    assert refs["ORCHESTRATOR_BOX_TYPE"] == "web"
    assert refs["ORCHESTRATOR_BROKER_URL"] == {"secret": "ssm:/orchestrator/broker-url"}
    assert "s3cret-broker-pw" not in text  # the secret is referenced, never inline

    # `boxtype userdata` prints the same document, without calling AWS.
    code, out, _ = account.run(capsys, "userdata", "web")
    assert (code, out) == (0, text)

    # On the box, the reference is resolved from SSM into a root-only worker.env.
    refs_file = tmp_path / "worker.refs.json"
    refs_file.write_text(files["/etc/orchestrator/worker.refs.json"])
    target = tmp_path / "worker.env"
    env = {**os.environ, "AWS_ENDPOINT_URL": account.aws.endpoint_url}
    subprocess.run(  # what the user data's orchestrator-worker-env runs
        [sys.executable, "-m", "worker.bootenv", str(refs_file), str(target)],
        check=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert f"ORCHESTRATOR_BROKER_URL={BROKER_URL}\n" in target.read_text()
    assert os.stat(target).st_mode & 0o777 == 0o600


def _rules(sg: dict[str, Any]) -> set[tuple[str, int, str]]:
    out = set()
    for p in sg["IpPermissions"]:
        for r in p.get("IpRanges", []):
            out.add((p["IpProtocol"], p["FromPort"], r["CidrIp"]))
        for r in p.get("Ipv6Ranges", []):
            out.add((p["IpProtocol"], p["FromPort"], r["CidrIpv6"]))
        for g in p.get("UserIdGroupPairs", []):
            out.add((p["IpProtocol"], p["FromPort"], g["GroupId"]))
    return out


def test_security_group_rules_match_box_yml_and_nothing_is_open_to_the_world(
    account: Account, capsys: pytest.CaptureFixture[str]
) -> None:
    account.write()
    assert account.run(capsys, "create", "web")[0] == 0
    [sg] = account.security_groups()
    # 8000 from what box.yml declares; 27017 is published but declared for nobody: closed.
    assert _rules(sg) == {("tcp", 8000, "10.0.0.0/16"), ("tcp", 8000, account.lb_group)}

    # A rule added by hand is revoked; `self` lets the box type's boxes reach each other.
    account.client("ec2").authorize_security_group_ingress(
        GroupId=sg["GroupId"],
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
        ],
    )
    account.write(sources={8000: [account.lb_group], 27017: ["self"]})
    code, out, err = account.run(capsys, "create", "web")
    assert code == 0, err
    assert "- ingress rule orchestrator-web: tcp 22 from 0.0.0.0/0 (not in box.yml)" in out
    [sg] = account.security_groups()
    assert _rules(sg) == {("tcp", 8000, account.lb_group), ("tcp", 27017, sg["GroupId"])}

    # The world only when written, and the plan says so.
    account.write(sources={8000: ["0.0.0.0/0"]})
    code, out, err = account.run(capsys, "create", "web")
    assert code == 0, err
    assert (
        "+ ingress rule orchestrator-web: tcp 8000 from 0.0.0.0/0 (open to the world, as "
        "written)" in out
    )
    [sg] = account.security_groups()
    assert _rules(sg) == {("tcp", 8000, "0.0.0.0/0")}


BAD_INPUT = [
    (
        "unknown subnet",
        {"subnets": ["SUBNET0", "subnet-0123456789abcdef0"]},
        "provision.subnets[1]",
        "subnet subnet-0123456789abcdef0 does not exist in us-east-1",
    ),
    (
        "missing AMI",
        {"ami": "ami-0123456789abcdef0"},
        "provision.ami",
        "AMI ami-0123456789abcdef0 does not exist in us-east-1",
    ),
    ("desired above max", {"desired": 5}, "provision.desired", "desired 5 is more than max 4"),
    (
        "unknown source group",
        {"sources": {8000: ["sg-0123456789abcdef0"]}},
        "provision.sources.8000[0]",
        "security group sg-0123456789abcdef0 does not exist",
    ),
    (
        "unknown instance type",
        {"instance_type": "m9.huge"},
        "provision.instance_type",
        "instance type m9.huge is not offered",
    ),
    (
        "unknown key pair",
        {"key_name": "nobody"},
        "provision.key_name",
        "key pair nobody does not exist",
    ),
    (
        "unknown instance profile",
        {"iam_instance_profile": "nobody"},
        "provision.iam_instance_profile",
        "instance profile nobody does not exist",
    ),
]


@pytest.mark.parametrize(
    ("what", "provision", "path", "fragment"), BAD_INPUT, ids=[b[0] for b in BAD_INPUT]
)
def test_bad_provisioning_input_is_exit_2_before_any_change(
    account: Account,
    capsys: pytest.CaptureFixture[str],
    what: str,
    provision: dict[str, Any],
    path: str,
    fragment: str,
) -> None:
    if "subnets" in provision:
        provision = {"subnets": [account.subnets[0], provision["subnets"][1]]}
    box = account.write(**provision)
    code, out, err = account.run(capsys, "create", "web")
    assert code == 2, (out, err)
    assert err.startswith("ERROR (InvalidFile): ")
    assert f"{box}:" in err and f": {path}: {fragment}" in err, err
    assert "Traceback" not in err
    assert account.nothing_made()


def test_scale_stays_within_min_and_max(
    account: Account, capsys: pytest.CaptureFixture[str]
) -> None:
    account.write()
    assert account.run(capsys, "create", "web")[0] == 0
    code, out, err = account.run(capsys, "scale", "web", "--desired", "3")
    assert (code, out) == (0, "web: desired capacity 2 -> 3 (min 1, max 4)\n"), err
    group = account.group()
    assert group is not None and group["DesiredCapacity"] == 3

    code, _, err = account.run(capsys, "scale", "web", "--desired", "9")
    assert code == 2 and "--desired 9 is outside orchestrator-web's min 1 and max 4" in err
    group = account.group()
    assert group is not None and group["DesiredCapacity"] == 3

    # create leaves a capacity the policies or `scale` set alone, and says so.
    code, out, _ = account.run(capsys, "create", "web")
    assert code == 0 and out.startswith("web: no changes")
    assert "desired capacity stays 3" in out


def test_delete_asks_unless_yes(account: Account, capsys: pytest.CaptureFixture[str]) -> None:
    account.write()
    assert account.run(capsys, "create", "web")[0] == 0
    result = CliRunner().invoke(cli, ["boxtype", "delete", "web"], input="n\n")
    assert result.exit_code == 1 and "Delete these 8 resources of web?" in result.output
    assert account.group() is not None and account.security_groups()

    code, out, err = account.run(capsys, "delete", "web", "--yes")
    assert code == 0, err
    assert "web: 8 resources deleted" in out
    assert account.nothing_made()
    assert account.policies() == {}
    code, out, _ = account.run(capsys, "delete", "web", "--yes")
    assert (code, out) == (0, "web: nothing to delete in us-east-1\n")


def test_a_box_file_without_provision_section_is_exit_2(
    account: Account, capsys: pytest.CaptureFixture[str]
) -> None:
    (account.boxes / "web.yml").write_text(WEB)
    code, _, err = account.run(capsys, "create", "web")
    assert code == 2 and "provision: this box type has no provision section" in err
    code, _, err = account.run(capsys, "create", "nope")
    assert code == 2 and "no box type 'nope'" in err
    assert account.nothing_made()
