"""Box types in AWS (moto server): the ASG as the fleet, suspended processes, boot convergence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from devstack.workers import dev_keys
from schemas.contract import Outcome
from tests.harness.aws_fx import DUMMY_CREDENTIALS, AwsAccount
from tests.harness.box_fx import BoxWorkers, DeployKit, PushedImages
from tests.harness.common import wait_for
from tests.harness.redis_fx import ProductRedis


def aws_env(aws: AwsAccount) -> dict[str, str]:
    return {
        "ORCHESTRATOR_AWS_ENDPOINT_URL": aws.endpoint_url,
        "ORCHESTRATOR_AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIALS["aws_secret_access_key"],
    }


def image_id(ec2: Any) -> str:
    images = ec2.describe_images(
        Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn2-ami-hvm-*"]}]
    )["Images"] or ec2.describe_images()["Images"]
    return str(images[0]["ImageId"])


@pytest.fixture
def target_group(aws: AwsAccount) -> tuple[str, str]:
    """(target group name, a fresh instance id) in a VPC of their own."""
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    instance = ec2.run_instances(ImageId=image_id(ec2), MinCount=1, MaxCount=1,
                                 SubnetId=subnet)["Instances"][0]["InstanceId"]
    aws.client("elbv2").create_target_group(
        Name="web-tg", Protocol="HTTP", Port=18080, VpcId=vpc, TargetType="instance")
    return "web-tg", str(instance)


def registered(aws: AwsAccount, name: str) -> list[str]:
    client = aws.client("elbv2")
    arn = client.describe_target_groups(Names=[name])["TargetGroups"][0]["TargetGroupArn"]
    health = client.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
    return [h["Target"]["Id"] for h in health]


BOOT_YML = """
apps:
  web:
    elb: web-tg
    lb_kind: elbv2
    lb_port: 18080
    image: {repo}
    containers:
      web:
        ports: ["18080:8080"]
        health: {{http: /health, interval: 0.1, timeout: 1, retries: 10}}
"""


@pytest.mark.parametrize("healthy", [True, False], ids=["healthy", "unhealthy"])
def test_a_fresh_box_converges_then_registers_only_when_healthy(
    healthy: bool, deploy: DeployKit, box_workers: BoxWorkers, pushed_images: PushedImages,
    aws: AwsAccount, target_group: tuple[str, str],
) -> None:
    name, instance = target_group
    image = pushed_images.v1 if healthy else pushed_images.broken
    release = deploy.release(BOOT_YML, {"web": image}, repo=pushed_images.repo)
    deploy.set_current(release)  # the box type's last successful release

    (box,) = box_workers.start(1, start=False, extra_env=aws_env(aws))
    box.box_id = instance
    box.env["ORCHESTRATOR_BOX_ID"] = instance  # a worker on a fresh instance
    box.env["ORCHESTRATOR_HAPROXY_SERVER"] = instance
    box.start()
    if healthy:
        wait_for(lambda: instance in registered(aws, name), "the box in its target group")

        def ends() -> list[dict[str, object]] | None:
            found = [e for _, e in deploy.events.read(deploy.box_type)
                     if e.get("box") == instance and e.get("phase") == "end"]
            return found if any(e["step"] == "deploy.join_lb" for e in found) else None

        events = wait_for(ends, "the end of its join_lb step")
        order = [e["step"] for e in events]
        assert order.index("deploy.swap") < order.index("deploy.join_lb")  # health first
    else:
        wait_for(lambda: any(e.get("step") == "deploy.swap" and e.get("outcome") ==
                             Outcome.FAILED.value for _, e in
                             deploy.events.read(deploy.box_type)), "the failed boot swap")
        # The same path as any catch-up: a one-box rollout, halted, the box never joined.
        wait_for(lambda: any(e.get("step") == "rollout" and e.get("phase") == "end"
                             and e.get("outcome") == "halted" for _, e in
                             deploy.events.read(deploy.box_type)), "the catch-up halted")
        assert instance not in registered(aws, name)


@pytest.fixture
def group(aws: AwsAccount) -> tuple[str, list[str]]:
    """An auto scaling group tagged as box type `bt` with two InService instances."""
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.1.1.0/24",
                               AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    ec2.create_launch_template(LaunchTemplateName="bt-lt",
                               LaunchTemplateData={"ImageId": image_id(ec2),
                                                   "InstanceType": "m3.large"})
    asg = aws.client("autoscaling")
    return "bt-asg", _make_group(asg, subnet)


def _make_group(asg: Any, subnet: str) -> list[str]:
    asg.create_auto_scaling_group(
        AutoScalingGroupName="bt-asg", MinSize=2, MaxSize=4, DesiredCapacity=2,
        LaunchTemplate={"LaunchTemplateName": "bt-lt", "Version": "$Latest"},
        VPCZoneIdentifier=subnet,
        Tags=[{"Key": "orchestrator:box-type", "Value": "PLACEHOLDER",
               "PropagateAtLaunch": True}],
    )
    instances = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["bt-asg"])[
        "AutoScalingGroups"][0]["Instances"]
    return sorted(i["InstanceId"] for i in instances)


def retag(aws: AwsAccount, box_type: str) -> None:
    aws.client("autoscaling").create_or_update_tags(Tags=[{
        "ResourceId": "bt-asg", "ResourceType": "auto-scaling-group",
        "Key": "orchestrator:box-type", "Value": box_type, "PropagateAtLaunch": True}])


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_group_is_the_fleet(
    box_workers: BoxWorkers, product_redis: ProductRedis, broker_url: str,
    pushed_images: PushedImages, aws: AwsAccount, group: tuple[str, list[str]], tmp_path: Path,
) -> None:
    name, instances = group
    retag(aws, box_workers.box_type)
    (mine, stray) = box_workers.start(2, start=False, extra_env=aws_env(aws))
    mine.box_id = mine.env["ORCHESTRATOR_BOX_ID"] = instances[0]
    mine.env["ORCHESTRATOR_HAPROXY_SERVER"] = instances[0]
    mine.start()
    stray.start()  # heartbeats for the box type, but is no instance of the group
    (tmp_path / "boxes").mkdir()
    (tmp_path / "boxes" / f"{box_workers.box_type}.yml").write_text(
        f"apps:\n  web:\n    image: {pushed_images.repo}:v1\n    containers:\n"
        "      web: {ports: ['18080:8080'], health: {http: /health, interval: 0.1, timeout: 1,"
        " retries: 5}}\n")
    env = {**os.environ, **aws_env(aws), "ORCHESTRATOR_BOXES_DIR": str(tmp_path / "boxes"),
           "ORCHESTRATOR_ALLOW_NO_REASON": "true",
           "ORCHESTRATOR_BROKER_URL": broker_url, "ORCHESTRATOR_REDIS_URL": product_redis.url,
           "ORCHESTRATOR_KEY_PREFIX": product_redis.prefix, "ORCHESTRATOR_PREFLIGHT_TIMEOUT": "20",
           "ORCHESTRATOR_SIGNING_KEY": dev_keys()[0]}

    boxes = cli(env, "boxes", box_workers.box_type)
    assert boxes.returncode == 1, boxes.stderr
    as_json = cli(env, "boxes", box_workers.box_type, "--json")
    rows = {r["box"]: r for r in json.loads(as_json.stdout)}
    assert rows[instances[0]]["worker"] and rows[instances[1]]["flags"] == ["no worker"]
    assert rows[stray.box_id]["flags"][0].startswith("stray")
    assert instances[0] in boxes.stdout and "worker" in boxes.stdout
    assert f"{instances[1]}" in boxes.stdout and "no worker" in boxes.stdout
    assert f"{stray.box_id}" in boxes.stdout and "stray" in boxes.stdout

    refused = cli(env, "rollout", box_workers.box_type)
    assert refused.returncode == 1 and instances[1] in refused.stderr, refused.stderr
    asg = aws.client("autoscaling")
    assert asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
        "AutoScalingGroups"][0].get("SuspendedProcesses", []) == []  # resumed after a refusal

    run = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "rollout",
                            box_workers.box_type, "--skip-missing", "--json"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen_suspended: set[str] = set()
    deadline = time.monotonic() + 60
    while run.poll() is None and time.monotonic() < deadline:
        got = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])
        seen_suspended |= {p["ProcessName"] for p in
                           got["AutoScalingGroups"][0].get("SuspendedProcesses", [])}
        time.sleep(0.05)
    out, err = run.communicate(timeout=30)
    assert run.returncode == 0, err
    assert {"ReplaceUnhealthy", "AZRebalance", "HealthCheck"} <= seen_suspended
    after = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])
    assert after["AutoScalingGroups"][0].get("SuspendedProcesses", []) == []
    deployed = {line.split('"box": "')[1].split('"')[0] for line in out.splitlines()
                if '"step": "deploy.swap"' in line}
    assert deployed == {instances[0]}  # exactly the InService instance with a worker

    # A halted rollout resumes the group's processes too.
    # --wait: the stray box (a worker of the type, no instance of the group) may be catching
    # up to the release just deployed, under the lease.
    halted = cli(env, "rollout", box_workers.box_type, "--skip-missing", "--wait", "--image",
                 f"web={pushed_images.repo}:broken")
    assert halted.returncode == 1 and "halted" in halted.stdout, halted.stdout + halted.stderr
    again = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])
    assert again["AutoScalingGroups"][0].get("SuspendedProcesses", []) == []




GUARDED_YML = """
min_healthy: "1"
apps:
  web:
    elb: web-tg
    lb_kind: elbv2
    lb_port: 18080
    image: {repo}
    containers:
      web:
        ports: ["18080:8080"]
        health: {{http: /health, interval: 0.1, timeout: 1, retries: 10}}
"""


def test_capacity_guard_refuses_to_drain_the_last_healthy_box(
    deploy: DeployKit, box_workers: BoxWorkers, pushed_images: PushedImages,
    product_redis: ProductRedis, broker_url: str, aws: AwsAccount,
    target_group: tuple[str, str], tmp_path: Path,
) -> None:
    name, instance = target_group
    v1 = deploy.release(GUARDED_YML, {"web": pushed_images.v1}, repo=pushed_images.repo)
    deploy.set_current(v1)
    (box,) = box_workers.start(1, start=False, extra_env=aws_env(aws))
    box.box_id = box.env["ORCHESTRATOR_BOX_ID"] = instance
    box.start()
    wait_for(lambda: instance in registered(aws, name), "the box in its target group")
    # Its boot is a one-box catch-up rollout: it ends (and frees the lease) before ours starts.
    wait_for(lambda: any(e.get("step") == "rollout" and e.get("phase") == "end"
                         and e.get("outcome") == "succeeded"
                         for _, e in deploy.events.read(deploy.box_type)), "the boot's end")

    (tmp_path / "boxes").mkdir()
    (tmp_path / "boxes" / f"{box_workers.box_type}.yml").write_text(
        GUARDED_YML.format(repo=f"{pushed_images.repo}:v2"))
    env = {**os.environ, **aws_env(aws), "ORCHESTRATOR_BOXES_DIR": str(tmp_path / "boxes"),
           "ORCHESTRATOR_ALLOW_NO_REASON": "true",
           "ORCHESTRATOR_BROKER_URL": broker_url, "ORCHESTRATOR_REDIS_URL": product_redis.url,
           "ORCHESTRATOR_KEY_PREFIX": product_redis.prefix, "ORCHESTRATOR_PREFLIGHT_TIMEOUT": "20",
           "ORCHESTRATOR_SIGNING_KEY": dev_keys()[0]}
    run = cli(env, "rollout", box_workers.box_type, "--json")
    assert run.returncode == 1, run.stderr
    summary = [line for line in run.stdout.splitlines() if '"summary"' in line][0]
    assert "capacity guard" in summary and "1 healthy" not in summary, summary
    assert '"state": "halted"' in summary
    assert instance in registered(aws, name)  # it never left
    assert not any('"step": "deploy.swap"' in line and '"outcome": "ok"' in line
                   for line in run.stdout.splitlines())  # nothing was swapped
    rollout_id = summary.split('"rollout": "')[1].split('"')[0]

    # More capacity, then resume: the box is tried again, leaves, swaps and rejoins.
    ec2, elbv2 = aws.client("ec2"), aws.client("elbv2")
    subnet = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0][
        "SubnetId"]
    other = ec2.run_instances(ImageId=image_id(ec2), MinCount=1, MaxCount=1,
                              SubnetId=subnet)["Instances"][0]["InstanceId"]
    arn = elbv2.describe_target_groups(Names=[name])["TargetGroups"][0]["TargetGroupArn"]
    elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": other, "Port": 18080}])
    resumed = cli(env, "resume", rollout_id)
    assert resumed.returncode == 0 and instance in resumed.stderr, resumed.stderr
    watched = cli(env, "watch", rollout_id)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert instance in registered(aws, name)
