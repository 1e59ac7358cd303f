"""ClassicElbLB and TargetGroupLB against a real moto server (no health checks, no draining)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from botocore.config import Config

from devstack.moto import DUMMY_ENV
from orchestrator.engine import aws as aws_boundary
from orchestrator.engine.lb import ClassicElbLB, NoopLB, TargetGroupLB, make_load_balancer
from orchestrator.engine.lb.base import LoadBalancer, MemberState
from orchestrator.engine.secrets import ssm_fetcher
from orchestrator.errors import ConfigError, LoadBalancerError, ServiceUnavailable
from tests.harness.aws_fx import DUMMY_CREDENTIALS, AwsAccount
from tests.harness.common import free_port


@dataclass(frozen=True)
class Network:
    vpc_id: str
    subnet_ids: list[str]
    instance_ids: list[str]


@pytest.fixture
def network(aws: AwsAccount) -> Network:
    ec2 = aws.client("ec2")
    # One of moto's default AMIs; filtered, since listing all 1,300 of them takes a second.
    images = ec2.describe_images(
        Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn2-ami-hvm-*"]}]
    )["Images"] or ec2.describe_images()["Images"]
    image_id = images[0]["ImageId"]
    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet_ids = [
        ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"10.0.{i}.0/24",
                          AvailabilityZone=f"us-east-1{zone}")["Subnet"]["SubnetId"]
        for i, zone in enumerate("ab")
    ]
    reply = ec2.run_instances(ImageId=image_id, MinCount=2, MaxCount=2, SubnetId=subnet_ids[0])
    return Network(vpc_id, subnet_ids, [i["InstanceId"] for i in reply["Instances"]])


# -- classic ELB ------------------------------------------------------------------------------


@pytest.fixture
def classic(aws: AwsAccount, network: Network) -> Any:
    client = aws.client("elb")
    client.create_load_balancer(
        LoadBalancerName="web",
        Listeners=[{"Protocol": "HTTP", "LoadBalancerPort": 80, "InstancePort": 8080}],
        Subnets=network.subnet_ids[:1],
    )
    return client


def registered(client: Any, name: str = "web") -> dict[str, str]:
    states = client.describe_instance_health(LoadBalancerName=name)["InstanceStates"]
    return {s["InstanceId"]: s["State"] for s in states}


def test_classic_elb_join_and_leave(classic: Any, network: Network) -> None:
    box, other = network.instance_ids
    lb = ClassicElbLB(classic, "web")
    assert isinstance(lb, LoadBalancer) and lb.name == "elb web"
    assert lb.state(box).raw == "not registered"

    lb.join(box)
    lb.wait_in_service(box, timeout=5)
    assert registered(classic) == {box: "InService"}
    assert lb.state(box).in_service and not lb.state(other).in_service

    lb.leave(box)
    lb.wait_drained(box, timeout=5)
    assert box not in registered(classic)
    assert lb.state(box) == MemberState(box, in_service=False, raw="not registered")
    lb.leave(box)  # leaving when not registered counts as done


def test_classic_elb_deadline_names_lb_and_member(classic: Any, network: Network) -> None:
    box = network.instance_ids[0]
    lb = ClassicElbLB(classic, "web", poll_interval=0.05)
    with pytest.raises(LoadBalancerError,
                       match=rf"elb web: {box} not in service after 0.3s \(last state: not reg"):
        lb.wait_in_service(box, timeout=0.3)


def test_classic_elb_unknown_load_balancer(classic: Any, network: Network) -> None:
    lb = ClassicElbLB(classic, "nope")
    with pytest.raises(LoadBalancerError, match="elb nope: .*LoadBalancerNotFound"):
        lb.state(network.instance_ids[0])


# -- ELBv2 ------------------------------------------------------------------------------------


@pytest.fixture
def target_group_arn(aws: AwsAccount, network: Network) -> str:
    client = aws.client("elbv2")
    alb_arn = client.create_load_balancer(
        Name="web-alb", Subnets=network.subnet_ids, Type="application"
    )["LoadBalancers"][0]["LoadBalancerArn"]
    tg_arn: str = client.create_target_group(
        Name="web-tg", Protocol="HTTP", Port=8080, VpcId=network.vpc_id, TargetType="instance",
        HealthCheckPath="/health",
    )["TargetGroups"][0]["TargetGroupArn"]
    client.create_listener(
        LoadBalancerArn=alb_arn, Protocol="HTTP", Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg_arn}],
    )
    return tg_arn


def targets(client: Any, arn: str) -> dict[tuple[str, int], str]:
    described = client.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
    return {(d["Target"]["Id"], d["Target"]["Port"]): d["TargetHealth"]["State"]
            for d in described}


def test_target_group_join_and_leave(aws: AwsAccount, network: Network,
                                     target_group_arn: str) -> None:
    client = aws.client("elbv2")
    box, other = network.instance_ids
    lb = TargetGroupLB(client, "web-tg")
    assert isinstance(lb, LoadBalancer)
    assert lb.state(box).raw == "not registered"

    lb.join(box)
    lb.wait_in_service(box, timeout=5)
    # moto marks a target healthy at once: this proves registration, not a health check.
    assert targets(client, target_group_arn) == {(box, 8080): "healthy"}
    assert lb.state(box).in_service and not lb.state(other).in_service

    lb.leave(box)
    # moto does no draining: the target is gone at once, and wait_drained sees just that.
    assert targets(client, target_group_arn) == {}
    lb.wait_drained(box, timeout=5)
    lb.leave(box)  # InvalidTarget from AWS: leaving when not registered counts as done
    assert lb.state(box).raw == "not registered"


def test_target_group_by_name_and_by_arn(aws: AwsAccount, network: Network,
                                         target_group_arn: str) -> None:
    by_name = TargetGroupLB(aws.client("elbv2"), "web-tg")
    by_arn = TargetGroupLB(aws.client("elbv2"), target_group_arn)
    assert by_name.target_group_arn == by_arn.target_group_arn == target_group_arn
    box = network.instance_ids[0]
    by_arn.join(box)
    assert by_name.state(box).in_service
    by_name.leave(box)
    assert by_arn.state(box).raw == "not registered"


def test_target_group_port_is_part_of_the_member(aws: AwsAccount, network: Network,
                                                 target_group_arn: str) -> None:
    client = aws.client("elbv2")
    box = network.instance_ids[0]
    TargetGroupLB(client, "web-tg", port=8081).join(box)
    assert targets(client, target_group_arn) == {(box, 8081): "healthy"}
    assert TargetGroupLB(client, "web-tg", port=9999).state(box).raw == "not registered"
    assert TargetGroupLB(client, "web-tg").state(box).in_service


@pytest.mark.parametrize("target_group", [
    "nope-tg",
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/nope-tg/0123456789abcdef",
])
def test_unknown_target_group(aws: AwsAccount, target_group: str) -> None:
    lb = TargetGroupLB(aws.client("elbv2"), target_group)
    with pytest.raises(LoadBalancerError,
                       match=rf"elbv2 target group {target_group}: .*TargetGroupNotFound"):
        lb.join("i-0123456789abcdef0")


# -- the factory ------------------------------------------------------------------------------


def test_factory_builds_aws_adapters(aws: AwsAccount, network: Network, classic: Any,
                                     target_group_arn: str) -> None:
    box = network.instance_ids[0]
    elb = make_load_balancer("elb", "web", boto_session_kwargs=aws.session_kwargs)
    elbv2 = make_load_balancer("elbv2", "web-tg", member_port=8081,
                               boto_session_kwargs=aws.session_kwargs)
    assert isinstance(elb, ClassicElbLB) and isinstance(elbv2, TargetGroupLB)
    try:
        elb.join(box)
        elbv2.join(box)
        assert registered(classic) == {box: "InService"}
        assert targets(aws.client("elbv2"), target_group_arn) == {(box, 8081): "healthy"}
    finally:
        elb.client.close()
        elbv2.client.close()


def test_a_workers_load_balancers_and_secrets_share_one_client_a_service(
    aws: AwsAccount, network: Network, target_group_arn: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker's settings (region and endpoint; credentials from its environment) give one
    client per service for the process: each new one cost ~90 ms, several times a step. Each
    call still asks AWS: a rotated SSM value is read at once."""
    for name, value in DUMMY_ENV.items():
        monkeypatch.setenv(name, value)
    settings = {"region_name": aws.region, "endpoint_url": aws.endpoint_url}
    one, two = (make_load_balancer("elbv2", "web-tg", member_port=8081,
                                   boto_session_kwargs=settings) for _ in range(2))
    assert isinstance(one, TargetGroupLB) and isinstance(two, TargetGroupLB)
    assert one.client is two.client
    box = network.instance_ids[0]
    one.join(box)
    assert targets(aws.client("elbv2"), target_group_arn) == {(box, 8081): "healthy"}
    assert two.state(box).in_service

    ssm = aws.client("ssm")
    ssm.put_parameter(Name="/web/token", Value="first", Type="SecureString")
    fetch = ssm_fetcher(aws.region, aws.endpoint_url)
    assert fetch("/web/token") == "first"
    made = aws_boundary.shared_client("ssm", aws.region, aws.endpoint_url)
    ssm.put_parameter(Name="/web/token", Value="rotated", Type="SecureString", Overwrite=True)
    assert fetch("/web/token") == "rotated"  # asked again, not remembered
    assert aws_boundary.shared_client("ssm", aws.region, aws.endpoint_url) is made


def test_factory_none_and_unknown_kind() -> None:
    none = make_load_balancer("none", "web")
    assert isinstance(none, NoopLB) and none.state("box1").in_service
    none.leave("box1")
    none.wait_drained("box1", timeout=0)
    with pytest.raises(ConfigError, match="unknown load balancer kind 'f5' for 'web'"):
        make_load_balancer("f5", "web")
    with pytest.raises(ConfigError, match="needs the path of HAProxy's runtime API socket"):
        make_load_balancer("haproxy", "web")


def test_unreachable_aws_is_service_unavailable() -> None:
    # Nothing listens there; one attempt, so the test does not sit through retries.
    kwargs = {"endpoint_url": f"http://127.0.0.1:{free_port()}", "region_name": "us-east-1",
              "config": Config(retries={"max_attempts": 1}), **DUMMY_CREDENTIALS}
    lb = make_load_balancer("elbv2", "web-tg", boto_session_kwargs=kwargs)
    assert isinstance(lb, TargetGroupLB)
    try:
        with pytest.raises(ServiceUnavailable, match="elbv2 target group web-tg: .*not answer"):
            lb.leave("i-0123456789abcdef0")
    finally:
        lb.client.close()
