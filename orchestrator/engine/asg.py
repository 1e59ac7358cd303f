"""The ASG is the fleet: a box type's InService instances, joined with worker heartbeats."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.engine.aws import call, pages
from orchestrator.errors import ServiceUnavailable
from schemas.contract import BOX_TYPE_TAG, Heartbeat

# What would replace or move a box that is out of service for a swap.
SUSPENDED_DURING_ROLLOUT = ["ReplaceUnhealthy", "AZRebalance", "HealthCheck"]
# AWS refusing to read or pause the fleet stops a rollout as AWS not answering does: every
# call here is translated (by the one AWS boundary) into ServiceUnavailable.


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


def find_group(autoscaling: Any, box_type: str) -> dict[str, Any] | None:
    """The auto scaling group tagged with the box type, if there is one."""
    groups = pages(
        f"find the auto scaling group of {box_type}",
        autoscaling,
        "describe_auto_scaling_groups",
        "AutoScalingGroups",
        refused=ServiceUnavailable,
    )
    for group in groups:
        tags = {t["Key"]: t["Value"] for t in group.get("Tags", [])}
        if tags.get(BOX_TYPE_TAG) == box_type:
            return dict(group)
    return None


def group_instances(group: dict[str, Any], ec2: Any) -> list[Instance]:
    found = group.get("Instances", [])
    ips: dict[str, str] = {}
    if found:
        answer = call(
            f"describe the instances of {group.get('AutoScalingGroupName', '?')}",
            ec2.describe_instances,
            refused=ServiceUnavailable,
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
    call(
        f"suspend the processes of {group}",
        autoscaling.suspend_processes,
        refused=ServiceUnavailable,
        AutoScalingGroupName=group,
        ScalingProcesses=SUSPENDED_DURING_ROLLOUT,
    )


def resume(autoscaling: Any, group: str) -> None:
    call(
        f"resume the processes of {group}",
        autoscaling.resume_processes,
        refused=ServiceUnavailable,
        AutoScalingGroupName=group,
        ScalingProcesses=SUSPENDED_DURING_ROLLOUT,
    )


def suspended(autoscaling: Any, group: str) -> list[str]:
    answer = call(
        f"describe auto scaling group {group}",
        autoscaling.describe_auto_scaling_groups,
        refused=ServiceUnavailable,
        AutoScalingGroupNames=[group],
    )
    groups = answer["AutoScalingGroups"]
    return (
        sorted(p["ProcessName"] for p in groups[0].get("SuspendedProcesses", [])) if groups else []
    )
