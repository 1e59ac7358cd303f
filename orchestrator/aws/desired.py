"""A box type's desired state in AWS, from its box.yml and provision section. Pure."""

from __future__ import annotations

from typing import Any

from orchestrator.aws.state import (
    AlarmSpec,
    Desired,
    PolicySpec,
    Rule,
    resource_name,
)
from orchestrator.aws.userdata import cloud_config, encode
from schemas.boxfile import BoxSpec
from schemas.checks import published_ports, reachable
from schemas.contract import BOX_TYPE_TAG
from schemas.fleet import FleetSettings
from schemas.provision import COMPARISONS, Provisioning, Scaling

_SYMBOLS = {v: k for k, v in COMPARISONS.items()}


def desired_state(
    box_type: str,
    spec: BoxSpec,
    prov: Provisioning,
    region: str,
    fleet: FleetSettings | None = None,
) -> Desired:
    """Everything `boxtype create` should make true; `self` sources stay symbolic here."""
    name = resource_name(box_type)
    ports = [p for p in published_ports(spec, fleet) if reachable(p)]
    rules = {
        Rule(protocol, port, port, source)
        for port, sources in prov.port_sources.items()
        for protocol in {p.protocol for p in ports if p.host_port == port}
        for source in sources
    }
    policies, alarms = scaling_policies(name, prov.scaling)
    return Desired(
        box_type=box_type,
        name=name,
        rules=frozenset(rules),
        template=template_data(box_type, prov, region),
        extra_groups=tuple(prov.security_groups),
        min_size=prov.min,
        max_size=prov.max,
        desired_capacity=prov.desired_capacity,
        subnets=tuple(prov.subnets),
        policies=policies,
        alarms=alarms,
        closed_ports=tuple(sorted({p.host_port for p in ports} - set(prov.port_sources))),
    )


def template_data(box_type: str, prov: Provisioning, region: str) -> dict[str, Any]:
    """LaunchTemplateData, less SecurityGroupIds (the planner knows the group's id)."""
    data: dict[str, Any] = {
        "ImageId": prov.ami,
        "InstanceType": prov.instance_type,
        "UserData": encode(cloud_config(box_type, region, prov.worker)),
        # IMDSv2 only; tags in metadata let a worker find its box type on its own.
        "MetadataOptions": {
            "HttpEndpoint": "enabled",
            "HttpTokens": "required",
            "InstanceMetadataTags": "enabled",
        },
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": [{"Key": BOX_TYPE_TAG, "Value": box_type}]}
        ],
    }
    if prov.key_name:
        data["KeyName"] = prov.key_name
    profile = prov.iam_instance_profile
    if profile:
        data["IamInstanceProfile"] = (
            {"Arn": profile} if profile.startswith("arn:") else {"Name": profile}
        )
    return data


def scaling_policies(
    group: str, scaling: Scaling
) -> tuple[dict[str, PolicySpec], dict[str, AlarmSpec]]:
    """Target tracking on CPU; a step policy and the alarm that runs it per declared alarm."""
    policies: dict[str, PolicySpec] = {}
    alarms: dict[str, AlarmSpec] = {}
    if scaling.cpu_target is not None:
        policies[f"{group}-cpu"] = PolicySpec(
            {
                "PolicyType": "TargetTrackingScaling",
                "EstimatedInstanceWarmup": scaling.warmup,
                "TargetTrackingConfiguration": {
                    "PredefinedMetricSpecification": {
                        "PredefinedMetricType": "ASGAverageCPUUtilization"
                    },
                    "TargetValue": float(scaling.cpu_target),
                },
            },
            f"target tracking, average CPU {scaling.cpu_target:g}%",
        )
    for alarm in scaling.alarms:
        name = f"{group}-{alarm.name}"
        bound = "MetricIntervalLowerBound" if alarm.scales_out else "MetricIntervalUpperBound"
        aggregation = (
            alarm.statistic if alarm.statistic in ("Average", "Minimum", "Maximum") else "Average"
        )
        policies[name] = PolicySpec(
            {
                "PolicyType": "StepScaling",
                "AdjustmentType": "ChangeInCapacity",
                "MetricAggregationType": aggregation,
                "EstimatedInstanceWarmup": scaling.warmup,
                "StepAdjustments": [{bound: 0.0, "ScalingAdjustment": alarm.adjustment}],
            },
            f"step, {alarm.adjustment:+d} box{'es' if abs(alarm.adjustment) != 1 else ''} "
            f"when its alarm fires",
        )
        dimensions = alarm.dimensions or {"AutoScalingGroupName": group}
        alarms[name] = AlarmSpec(
            policy=name,
            params={
                "MetricName": alarm.metric,
                "Namespace": alarm.namespace,
                "Statistic": alarm.statistic,
                "Period": alarm.period,
                "EvaluationPeriods": alarm.evaluation_periods,
                "Threshold": float(alarm.threshold),
                "ComparisonOperator": alarm.comparison,
                "Dimensions": [{"Name": k, "Value": v} for k, v in sorted(dimensions.items())],
            },
            summary=f"{alarm.namespace} {alarm.metric} {_SYMBOLS[alarm.comparison]} "
            f"{alarm.threshold:g} for {alarm.evaluation_periods} x {alarm.period}s",
        )
    return policies, alarms
