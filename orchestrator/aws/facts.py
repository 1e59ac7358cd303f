"""Read-only AWS calls: check provision input before any change, and gather a box type's facts."""

from __future__ import annotations

from typing import Any

from orchestrator.aws.state import (
    Facts,
    GroupFacts,
    SecurityGroupFacts,
    TemplateFacts,
    resource_name,
    rules_of,
)
from orchestrator.engine.aws import AwsClients, call, pages
from orchestrator.errors import ConfigError
from schemas.checks import Problem
from schemas.contract import BOX_TYPE_TAG
from schemas.provision import SECURITY_GROUP_RE, Provisioning


def check_inputs(c: AwsClients, prov: Provisioning) -> tuple[str, list[Problem]]:
    """The subnets' VPC, and every input naming something that doesn't exist (describe only)."""
    problems = _check_image(c, prov) + _check_instance_type(c, prov)
    vpc, in_subnets = _check_subnets(c, prov)
    problems += in_subnets + _check_key_pair(c, prov)
    if prov.profile_name and not _profile_exists(c, prov.profile_name):
        problems.append(
            Problem(
                "provision.iam_instance_profile",
                f"instance profile {prov.profile_name} does not exist; "
                "create it (with the worker's permissions) or remove the key",
            )
        )
    problems += _check_groups(c, prov, vpc)
    return vpc, problems


def _check_image(c: AwsClients, prov: Provisioning) -> list[Problem]:
    images = call(
        "describe_images",
        c.ec2.describe_images,
        Filters=[{"Name": "image-id", "Values": [prov.ami]}],
    )["Images"]
    if images:
        return []
    return [
        Problem(
            "provision.ami",
            f"AMI {prov.ami} does not exist in {c.region} "
            "(or is not shared with this account); write an AMI id of "
            f"{c.region}",
        )
    ]


def _check_instance_type(c: AwsClients, prov: Provisioning) -> list[Problem]:
    types = call(
        "describe_instance_types",
        c.ec2.describe_instance_types,
        Filters=[{"Name": "instance-type", "Values": [prov.instance_type]}],
    )
    if types["InstanceTypes"]:
        return []
    return [
        Problem(
            "provision.instance_type",
            f"instance type {prov.instance_type} is not offered in {c.region}; write e.g. m3.large",
        )
    ]


def _check_subnets(c: AwsClients, prov: Provisioning) -> tuple[str, list[Problem]]:
    """The box type's VPC (given, or the subnets'), and what is wrong with subnets and VPC."""
    problems: list[Problem] = []
    found = {
        s["SubnetId"]: s["VpcId"]
        for s in call(
            "describe_subnets",
            c.ec2.describe_subnets,
            Filters=[{"Name": "subnet-id", "Values": prov.subnets}],
        )["Subnets"]
    }
    for i, subnet in enumerate(prov.subnets):
        if subnet not in found:
            problems.append(
                Problem(
                    f"provision.subnets[{i}]",
                    f"subnet {subnet} does not exist in {c.region}; "
                    "write a subnet id of the box type's VPC",
                )
            )
    vpcs = sorted(set(found.values()))
    if len(vpcs) > 1:
        problems.append(
            Problem(
                "provision.subnets",
                f"the subnets are in {len(vpcs)} VPCs ({', '.join(vpcs)}); "
                "a box type's subnets share one VPC",
            )
        )
    vpc = prov.vpc or (vpcs[0] if vpcs else "")
    if prov.vpc and vpcs and vpcs != [prov.vpc]:
        problems.append(
            Problem(
                "provision.vpc",
                f"the subnets are in {', '.join(vpcs)}, not "
                f"{prov.vpc}; remove vpc or write the subnets' VPC",
            )
        )
    return vpc, problems


def _check_key_pair(c: AwsClients, prov: Provisioning) -> list[Problem]:
    if not prov.key_name:
        return []
    keys = call(
        "describe_key_pairs",
        c.ec2.describe_key_pairs,
        Filters=[{"Name": "key-name", "Values": [prov.key_name]}],
    )["KeyPairs"]
    if keys:
        return []
    return [
        Problem(
            "provision.key_name",
            f"key pair {prov.key_name} does not exist in {c.region}; import it or remove key_name",
        )
    ]


def _profile_exists(c: AwsClients, name: str) -> bool:
    found = call(
        "get_instance_profile",
        c.iam.get_instance_profile,
        done_codes=frozenset({"NoSuchEntity"}),
        InstanceProfileName=name,
    )
    return bool(found)


def _check_groups(c: AwsClients, prov: Provisioning, vpc: str) -> list[Problem]:
    wanted: list[tuple[str, str]] = [
        (f"provision.security_groups[{i}]", g) for i, g in enumerate(prov.security_groups)
    ]
    wanted += [
        (f"provision.sources.{port}[{i}]", s)
        for port, sources in prov.sources.items()
        for i, s in enumerate(sources)
        if SECURITY_GROUP_RE.match(s)
    ]
    if not wanted:
        return []
    ids = sorted({g for _, g in wanted})
    found = {
        g["GroupId"]: g.get("VpcId", "")
        for g in call(
            "describe_security_groups",
            c.ec2.describe_security_groups,
            Filters=[{"Name": "group-id", "Values": ids}],
        )["SecurityGroups"]
    }
    problems = []
    for path, group in wanted:
        if group not in found:
            problems.append(
                Problem(
                    path,
                    f"security group {group} does not exist in "
                    f"{c.region}; write an existing group id",
                )
            )
        elif path.startswith("provision.security_groups") and vpc and found[group] != vpc:
            problems.append(
                Problem(
                    path,
                    f"security group {group} is in {found[group]}, not in the subnets' VPC {vpc}",
                )
            )
    return problems


def gather(c: AwsClients, box_type: str, vpc_id: str | None) -> Facts:
    """What exists now for the box type (`vpc_id` None: its security group in any VPC)."""
    name = resource_name(box_type)
    filters = [{"Name": "group-name", "Values": [name]}]
    if vpc_id:
        filters.append({"Name": "vpc-id", "Values": [vpc_id]})
    else:
        filters.append({"Name": f"tag:{BOX_TYPE_TAG}", "Values": [box_type]})
    found = call("describe_security_groups", c.ec2.describe_security_groups, Filters=filters)[
        "SecurityGroups"
    ]
    sg = (
        SecurityGroupFacts(
            found[0]["GroupId"], rules_of(found[0].get("IpPermissions", [])), found[0]["VpcId"]
        )
        if found
        else None
    )
    raw = describe_group(c, name)
    if raw is not None and raw.get("Status"):
        raise ConfigError(
            f"auto scaling group {name} is being deleted ({raw['Status']}); "
            "run again once it is gone"
        )
    group = group_facts(raw) if raw is not None else None
    policies = (
        {
            p["PolicyName"]: p
            for p in pages(
                "describe_policies",
                c.autoscaling,
                "describe_policies",
                "ScalingPolicies",
                AutoScalingGroupName=name,
            )
        }
        if group is not None
        else {}
    )
    alarms = {
        a["AlarmName"]: a
        for a in pages(
            "describe_alarms",
            c.cloudwatch,
            "describe_alarms",
            "MetricAlarms",
            AlarmNamePrefix=f"{name}-",
        )
    }
    return Facts(vpc_id or "", sg, _template(c, name), group, policies, alarms)


def _template(c: AwsClients, name: str) -> TemplateFacts | None:
    found = call(
        "describe_launch_templates",
        c.ec2.describe_launch_templates,
        Filters=[{"Name": "launch-template-name", "Values": [name]}],
    )["LaunchTemplates"]
    if not found:
        return None
    template_id = found[0]["LaunchTemplateId"]
    latest = call(
        "describe_launch_template_versions",
        c.ec2.describe_launch_template_versions,
        LaunchTemplateId=template_id,
        Versions=["$Latest"],
    )["LaunchTemplateVersions"][0]
    return TemplateFacts(
        template_id,
        int(latest["VersionNumber"]),
        latest.get("VersionDescription", ""),
        latest.get("LaunchTemplateData", {}),
    )


def describe_group(c: AwsClients, name: str) -> dict[str, Any] | None:
    """The group as describe_auto_scaling_groups has it (a group being deleted has a Status)."""
    found = call(
        "describe_auto_scaling_groups",
        c.autoscaling.describe_auto_scaling_groups,
        AutoScalingGroupNames=[name],
    )["AutoScalingGroups"]
    return dict(found[0]) if found else None


def group_facts(g: dict[str, Any]) -> GroupFacts:
    template = g.get("LaunchTemplate") or {}
    subnets = tuple(s for s in g.get("VPCZoneIdentifier", "").split(",") if s)
    return GroupFacts(
        min_size=int(g["MinSize"]),
        max_size=int(g["MaxSize"]),
        desired_capacity=int(g["DesiredCapacity"]),
        subnets=subnets,
        template_id=template.get("LaunchTemplateId"),
        template_version=template.get("Version"),
        tags={t["Key"]: t["Value"] for t in g.get("Tags", [])},
        load_balancers=tuple(g.get("LoadBalancerNames", []) + g.get("TargetGroupARNs", [])),
        instances=len(g.get("Instances", [])),
    )
