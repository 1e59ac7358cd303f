"""The ASG is the fleet: a box type's InService instances, joined with worker heartbeats."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import botocore.exceptions

from orchestrator.errors import ServiceUnavailable
from schemas.contract import BOX_TYPE_TAG, Heartbeat

# What would replace or move a box that is out of service for a swap.
SUSPENDED_DURING_ROLLOUT = ["ReplaceUnhealthy", "AZRebalance", "HealthCheck"]


def aws_client(service: str, region: str, endpoint_url: str | None) -> Any:
    import boto3

    return boto3.client(service, region_name=region, endpoint_url=endpoint_url)


@dataclass(frozen=True)
class Instance:
    id: str
    az: str
    lifecycle: str  # InService, Pending, Standby, Terminating, ...
    private_ip: str = ""
    template_version: str = ""


@dataclass
class AsgFleet:
    """The join of a box type's group with the workers that heartbeat for it."""

    group: str
    instances: list[Instance]
    heartbeats: dict[str, Heartbeat]
    boxes: list[str] = field(default_factory=list)  # InService and heartbeating: deployable
    missing: list[str] = field(default_factory=list)  # InService, no live worker
    strays: list[str] = field(default_factory=list)  # heartbeating, not in the group

    def __post_init__(self) -> None:
        in_service = {i.id for i in self.instances if i.lifecycle == "InService"}
        self.boxes = sorted(in_service & set(self.heartbeats))
        self.missing = sorted(in_service - set(self.heartbeats))
        members = {i.id for i in self.instances}
        self.strays = sorted(set(self.heartbeats) - members)


def _call(what: str, fn: Any, **kwargs: Any) -> Any:
    try:
        return fn(**kwargs)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise ServiceUnavailable(f"AWS {what}: {exc}") from exc


def find_group(autoscaling: Any, box_type: str) -> dict[str, Any] | None:
    """The auto scaling group tagged with the box type, if there is one."""
    pages = autoscaling.get_paginator("describe_auto_scaling_groups").paginate()
    try:
        for page in pages:
            for group in page["AutoScalingGroups"]:
                tags = {t["Key"]: t["Value"] for t in group.get("Tags", [])}
                if tags.get(BOX_TYPE_TAG) == box_type:
                    return dict(group)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise ServiceUnavailable(f"AWS describe_auto_scaling_groups: {exc}") from exc
    return None


def group_instances(group: dict[str, Any], ec2: Any) -> list[Instance]:
    found = group.get("Instances", [])
    ips: dict[str, str] = {}
    if found:
        answer = _call(
            "describe_instances",
            ec2.describe_instances,
            InstanceIds=[i["InstanceId"] for i in found],
        )
        for reservation in answer["Reservations"]:
            for inst in reservation["Instances"]:
                ips[inst["InstanceId"]] = inst.get("PrivateIpAddress", "")
    return [
        Instance(
            id=i["InstanceId"],
            az=i.get("AvailabilityZone", ""),
            lifecycle=i.get("LifecycleState", ""),
            private_ip=ips.get(i["InstanceId"], ""),
            template_version=str((i.get("LaunchTemplate") or {}).get("Version", "")),
        )
        for i in found
    ]


def suspend(autoscaling: Any, group: str) -> None:
    _call(
        "suspend_processes",
        autoscaling.suspend_processes,
        AutoScalingGroupName=group,
        ScalingProcesses=SUSPENDED_DURING_ROLLOUT,
    )


def resume(autoscaling: Any, group: str) -> None:
    _call(
        "resume_processes",
        autoscaling.resume_processes,
        AutoScalingGroupName=group,
        ScalingProcesses=SUSPENDED_DURING_ROLLOUT,
    )


def suspended(autoscaling: Any, group: str) -> list[str]:
    answer = _call(
        "describe_auto_scaling_groups",
        autoscaling.describe_auto_scaling_groups,
        AutoScalingGroupNames=[group],
    )
    groups = answer["AutoScalingGroups"]
    return (
        sorted(p["ProcessName"] for p in groups[0].get("SuspendedProcesses", [])) if groups else []
    )
