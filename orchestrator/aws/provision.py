"""Make a plan true in AWS, one adapter call per action; and scale a box type's group."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from orchestrator.aws.facts import describe_group, group_facts
from orchestrator.aws.state import (
    NEW_SECURITY_GROUP,
    NEW_TEMPLATE,
    NEW_TEMPLATE_VERSION,
    Action,
    Plan,
    policy_arn_placeholder,
    resource_name,
    template_description,
)
from orchestrator.engine.aws import AwsClients, call, error_code
from orchestrator.errors import ConfigError, ProvisioningFailed

Params = dict[str, Any]
Resolved = dict[str, str]


def substitute(value: Any, resolved: Resolved) -> Any:
    """`value` with every placeholder an earlier action resolved replaced by the real value."""
    if isinstance(value, dict):
        return {k: substitute(v, resolved) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, resolved) for v in value]
    if isinstance(value, str):
        return resolved.get(value, value)
    return value


def apply(
    c: AwsClients,
    plan: Plan,
    progress: Callable[[Action], None] = lambda action: None,
    *,
    wait_timeout: float = 600.0,
    poll: float = 5.0,
) -> None:
    """Run the plan's actions in order; the first refusal stops it (ProvisioningFailed)."""
    resolved: Resolved = {}
    for action in plan.actions:
        params = substitute(action.params, resolved)
        if action.call in _WAITING:
            _WAITING[action.call](c, params, wait_timeout, poll)
        else:
            _OPS[action.call](c, params, resolved)
        progress(action)


def _create_security_group(c: AwsClients, p: Params, resolved: Resolved) -> None:
    reply = call(f"create security group {p['GroupName']}", c.ec2.create_security_group, **p)
    resolved[NEW_SECURITY_GROUP] = reply["GroupId"]


def _authorize(c: AwsClients, p: Params, resolved: Resolved) -> None:
    call(
        f"authorize ingress on {p['GroupId']}",
        c.ec2.authorize_security_group_ingress,
        done_codes=frozenset({"InvalidPermission.Duplicate"}),
        **p,
    )


def _revoke(c: AwsClients, p: Params, resolved: Resolved) -> None:
    call(
        f"revoke ingress on {p['GroupId']}",
        c.ec2.revoke_security_group_ingress,
        done_codes=frozenset({"InvalidPermission.NotFound"}),
        **p,
    )


def _create_template(c: AwsClients, p: Params, resolved: Resolved) -> None:
    description = template_description(p["LaunchTemplateData"])
    reply = call(
        f"create launch template {p['LaunchTemplateName']}",
        c.ec2.create_launch_template,
        VersionDescription=description,
        **p,
    )
    resolved[NEW_TEMPLATE] = reply["LaunchTemplate"]["LaunchTemplateId"]
    resolved[NEW_TEMPLATE_VERSION] = str(reply["LaunchTemplate"]["LatestVersionNumber"])


def _new_template_version(c: AwsClients, p: Params, resolved: Resolved) -> None:
    description = template_description(p["LaunchTemplateData"])
    what = f"new version of launch template {p['LaunchTemplateId']}"
    reply = call(what, c.ec2.create_launch_template_version, VersionDescription=description, **p)
    version = str(reply["LaunchTemplateVersion"]["VersionNumber"])
    # The default version is what a person launching by hand gets: keep it the newest.
    call(
        what,
        c.ec2.modify_launch_template,
        LaunchTemplateId=p["LaunchTemplateId"],
        DefaultVersion=version,
    )
    resolved[NEW_TEMPLATE_VERSION] = version


def _create_group(c: AwsClients, p: Params, resolved: Resolved) -> None:
    call(
        f"create auto scaling group {p['AutoScalingGroupName']}",
        c.autoscaling.create_auto_scaling_group,
        **p,
    )


def _update_group(c: AwsClients, p: Params, resolved: Resolved) -> None:
    call(
        f"update auto scaling group {p['AutoScalingGroupName']}",
        c.autoscaling.update_auto_scaling_group,
        **p,
    )


def _tag_group(c: AwsClients, p: Params, resolved: Resolved) -> None:
    call("tag auto scaling group", c.autoscaling.create_or_update_tags, **p)


def _put_policy(c: AwsClients, p: Params, resolved: Resolved) -> None:
    name, group = p["PolicyName"], p["AutoScalingGroupName"]
    reply = call(f"put scaling policy {name}", c.autoscaling.put_scaling_policy, **p)
    arn = reply.get("PolicyARN")
    if not arn:  # moto answers without it; AWS includes it
        found = call(
            f"describe scaling policy {name}",
            c.autoscaling.describe_policies,
            AutoScalingGroupName=group,
            PolicyNames=[name],
        )["ScalingPolicies"]
        if not found:
            raise ProvisioningFailed(f"scaling policy {name} is not listed after it was put")
        arn = found[0]["PolicyARN"]
    resolved[policy_arn_placeholder(name)] = str(arn)


def _put_alarm(c: AwsClients, p: Params, resolved: Resolved) -> None:
    call(f"put alarm {p['AlarmName']}", c.cloudwatch.put_metric_alarm, **p)


def _delete_alarm(c: AwsClients, p: Params, resolved: Resolved) -> None:
    call(f"delete alarm {p['AlarmNames'][0]}", c.cloudwatch.delete_alarms, **p)


def _delete_policy(c: AwsClients, p: Params, resolved: Resolved) -> None:
    call(
        f"delete scaling policy {p['PolicyName']}",
        c.autoscaling.delete_policy,
        **p,
    )


def _delete_template(c: AwsClients, p: Params, resolved: Resolved) -> None:
    call(
        f"delete launch template {p['LaunchTemplateId']}",
        c.ec2.delete_launch_template,
        done_codes=frozenset({"InvalidLaunchTemplateId.NotFound"}),
        **p,
    )


def _delete_group(c: AwsClients, p: Params, timeout: float, poll: float) -> None:
    name = p["AutoScalingGroupName"]
    call(f"delete auto scaling group {name}", c.autoscaling.delete_auto_scaling_group, **p)
    # ForceDelete terminates the instances first; the group is listed until they are gone.
    deadline = time.monotonic() + timeout
    while describe_group(c, name) is not None:
        if time.monotonic() > deadline:
            raise ProvisioningFailed(f"auto scaling group {name} still exists after {timeout:.0f}s")
        time.sleep(poll)


def _delete_security_group(c: AwsClients, p: Params, timeout: float, poll: float) -> None:
    what = f"delete security group {p['GroupId']}"

    def attempt() -> dict[str, Any]:
        try:
            c.ec2.delete_security_group(**p)
        except ClientError as exc:
            if error_code(exc) != "InvalidGroup.NotFound":
                raise
        return {"deleted": True}

    # Terminating instances still hold the group for a while: DependencyViolation until then.
    deadline = time.monotonic() + timeout
    while not call(what, attempt, done_codes=frozenset({"DependencyViolation"})):
        if time.monotonic() > deadline:
            raise ProvisioningFailed(f"{what}: still in use after {timeout:.0f}s")
        time.sleep(poll)


_OPS: dict[str, Callable[[AwsClients, Params, Resolved], None]] = {
    "create_security_group": _create_security_group,
    "authorize_ingress": _authorize,
    "revoke_ingress": _revoke,
    "create_template": _create_template,
    "create_template_version": _new_template_version,
    "create_group": _create_group,
    "update_group": _update_group,
    "tag_group": _tag_group,
    "put_policy": _put_policy,
    "put_alarm": _put_alarm,
    "delete_alarm": _delete_alarm,
    "delete_policy": _delete_policy,
    "delete_template": _delete_template,
}
_WAITING: dict[str, Callable[[AwsClients, Params, float, float], None]] = {
    "delete_group": _delete_group,
    "delete_security_group": _delete_security_group,
}


def scale(c: AwsClients, box_type: str, desired: int) -> tuple[int, int, int]:
    """Set the group's desired capacity within its min and max; (before, min, max)."""
    name = resource_name(box_type)
    raw = describe_group(c, name)
    if raw is None:
        raise ConfigError(
            f"box type {box_type} has no auto scaling group {name} in {c.region}; "
            f"run `orchestrator boxtype create {box_type}` first"
        )
    g = group_facts(raw)
    if not g.min_size <= desired <= g.max_size:
        raise ConfigError(
            f"--desired {desired} is outside {name}'s min {g.min_size} and max {g.max_size}; "
            f"change provision.min/max in boxes/{box_type}.yml and run "
            f"`orchestrator boxtype create {box_type}` first"
        )
    call(
        f"set desired capacity of {name}",
        c.autoscaling.set_desired_capacity,
        AutoScalingGroupName=name,
        DesiredCapacity=desired,
        HonorCooldown=False,
    )
    return g.desired_capacity, g.min_size, g.max_size
