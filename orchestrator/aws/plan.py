"""The planner: desired state and AWS facts in, the actions between them out. Pure."""

from __future__ import annotations

from typing import Any

from orchestrator.aws.state import (
    NEW_SECURITY_GROUP,
    NEW_TEMPLATE,
    NEW_TEMPLATE_VERSION,
    Action,
    Desired,
    Facts,
    GroupFacts,
    Plan,
    Rule,
    Verb,
    policy_arn_placeholder,
    resource_name,
    template_description,
)
from schemas.contract import BOX_TYPE_TAG
from schemas.provision import SELF

WORLD = ("0.0.0.0/0", "::/0")
_TEMPLATE_FIELDS = {
    "ImageId": "ami",
    "InstanceType": "instance type",
    "KeyName": "key name",
    "IamInstanceProfile": "instance profile",
    "SecurityGroupIds": "security groups",
    "UserData": "user data",
    "MetadataOptions": "metadata options",
}


def project(actual: Any, shape: Any) -> Any:
    """`actual` cut down to the keys of `shape`: what AWS adds (defaults, echoes) is ignored."""
    if isinstance(shape, dict) and isinstance(actual, dict):
        return {k: project(actual[k], v) for k, v in shape.items() if k in actual}
    if isinstance(shape, list) and isinstance(actual, list) and len(shape) == len(actual):
        return [project(a, s) for a, s in zip(actual, shape, strict=True)]
    return actual


def owns_alarm(group: str, alarm: dict[str, Any]) -> bool:
    """An alarm is ours when it runs a policy of our group (names alone can collide)."""
    marker = f":autoScalingGroupName/{group}:policyName/"
    return any(marker in str(a) for a in alarm.get("AlarmActions", []))


def make_plan(d: Desired, f: Facts) -> Plan:
    """Every create and change, in the order they can run; nothing when all is as written."""
    sg_id = f.security_group.id if f.security_group else NEW_SECURITY_GROUP
    template_actions, template_id, version = _template(d, f, sg_id)
    group_actions, notes = _group(d, f, template_id, version)
    puts, deletes, arns = _policies(d, f)
    alarm_puts, alarm_deletes = _alarms(d, f, arns)
    notes = [
        f"port {p} is published but has no sources, so it stays closed "
        f"(add provision.sources.{p} to open it)"
        for p in d.closed_ports
    ] + notes
    actions = _security_group(d, f, sg_id) + template_actions + group_actions
    return Plan(actions + puts + alarm_puts + alarm_deletes + deletes, notes)


def _security_group(d: Desired, f: Facts, sg_id: str) -> list[Action]:
    want = {
        Rule(r.protocol, r.from_port, r.to_port, sg_id if r.source == SELF else r.source)
        for r in d.rules
    }
    out: list[Action] = []
    if f.security_group is None:
        out.append(
            Action(
                "create",
                "security group",
                d.name,
                f"in {f.vpc_id}; inbound only as provision.sources says",
                "create_security_group",
                {
                    "GroupName": d.name,
                    "Description": f"orchestrator box type {d.box_type}: its published ports",
                    "VpcId": f.vpc_id,
                    "TagSpecifications": [_tags("security-group", d.box_type)],
                },
            )
        )
    have = f.security_group.rules if f.security_group else frozenset()
    for rule in sorted(want - have):
        why = " (open to the world, as written)" if rule.source in WORLD else ""
        why += " (boxes of this type)" if rule.source == sg_id else ""
        out.append(
            Action(
                "create",
                "ingress rule",
                d.name,
                f"{rule}{why}",
                "authorize_ingress",
                {"GroupId": sg_id, "IpPermissions": [rule.permission()]},
            )
        )
    for rule in sorted(have - want):
        out.append(
            Action(
                "delete",
                "ingress rule",
                d.name,
                f"{rule} (not in box.yml)",
                "revoke_ingress",
                {"GroupId": sg_id, "IpPermissions": [rule.permission()]},
            )
        )
    return out


def _template(d: Desired, f: Facts, sg_id: str) -> tuple[list[Action], str, str]:
    data = {**d.template, "SecurityGroupIds": [sg_id, *d.extra_groups]}
    t = f.template
    if t is None:
        detail = f"version 1: {data['ImageId']}, {data['InstanceType']}"
        params = {
            "LaunchTemplateName": d.name,
            "LaunchTemplateData": data,
            "TagSpecifications": [_tags("launch-template", d.box_type)],
        }
        return (
            [Action("create", "launch template", d.name, detail, "create_template", params)],
            NEW_TEMPLATE,
            NEW_TEMPLATE_VERSION,
        )
    if sg_id != NEW_SECURITY_GROUP and t.description == template_description(data):
        return [], t.id, str(t.latest_version)
    detail = f"new version {t.latest_version + 1} ({changed_fields(t.data, data)})"
    params = {"LaunchTemplateId": t.id, "LaunchTemplateData": data}
    return (
        [Action("change", "launch template", d.name, detail, "create_template_version", params)],
        t.id,
        NEW_TEMPLATE_VERSION,
    )


def changed_fields(old: dict[str, Any], new: dict[str, Any]) -> str:
    """What differs between two LaunchTemplateData, in words a person reads."""
    out = []
    for key, label in _TEMPLATE_FIELDS.items():
        before, after = old.get(key), new.get(key)
        if after is not None and project(before, after) == after or before == after:
            continue
        if isinstance(after, str) and isinstance(before, str) and key != "UserData":
            out.append(f"{label} {before} -> {after}")
        elif after is None:
            out.append(f"{label} removed")
        else:
            out.append(label)
    if _instance_tags(old) != _instance_tags(new):
        out.append("instance tags")
    return ", ".join(out) or "content differs from the latest version"


def _instance_tags(data: dict[str, Any]) -> list[Any]:
    specs = data.get("TagSpecifications", [])
    return [s.get("Tags") for s in specs if s.get("ResourceType") == "instance"]


def _group(d: Desired, f: Facts, template_id: str, version: str) -> tuple[list[Action], list[str]]:
    template = {"LaunchTemplateId": template_id, "Version": version}
    g = f.group
    if g is None:
        return [_create_group(d, template)], []
    actions: list[Action] = []
    changes, words, notes = _group_changes(d, f, g, template_id, version)
    if changes:
        actions.append(
            Action(
                "change",
                "auto scaling group",
                d.name,
                "; ".join(words),
                "update_group",
                {"AutoScalingGroupName": d.name, **changes},
            )
        )
    if g.tags.get(BOX_TYPE_TAG) != d.box_type:
        actions.append(_tag_group(d))
    if g.load_balancers:
        notes.append(
            f"the group is attached to {', '.join(g.load_balancers)}: boxes would take traffic "
            "before their containers are proven healthy; detach it once the workers run "
            "(a box joins its load balancer itself)"
        )
    return actions, notes


def _create_group(d: Desired, template: dict[str, str]) -> Action:
    params = {
        "AutoScalingGroupName": d.name,
        "MinSize": d.min_size,
        "MaxSize": d.max_size,
        "DesiredCapacity": d.desired_capacity,
        "VPCZoneIdentifier": ",".join(d.subnets),
        "LaunchTemplate": template,
        "HealthCheckType": "EC2",
        "Tags": [{"Key": BOX_TYPE_TAG, "Value": d.box_type, "PropagateAtLaunch": True}],
    }
    detail = (
        f"{d.desired_capacity} boxes (min {d.min_size}, max {d.max_size}) in "
        f"{', '.join(d.subnets)}; no load balancer (boxes join theirs when healthy)"
    )
    return Action("create", "auto scaling group", d.name, detail, "create_group", params)


def _group_changes(
    d: Desired, f: Facts, g: GroupFacts, template_id: str, version: str
) -> tuple[dict[str, Any], list[str], list[str]]:
    """The group's fields to update, each change in words, and notes on what stays."""
    changes: dict[str, Any] = {}
    words: list[str] = []
    notes: list[str] = []
    if g.min_size != d.min_size:
        changes["MinSize"] = d.min_size
        words.append(f"min {g.min_size} -> {d.min_size}")
    if g.max_size != d.max_size:
        changes["MaxSize"] = d.max_size
        words.append(f"max {g.max_size} -> {d.max_size}")
    if set(g.subnets) != set(d.subnets):
        changes["VPCZoneIdentifier"] = ",".join(d.subnets)
        words.append(f"subnets {', '.join(g.subnets)} -> {', '.join(d.subnets)}")
    if (g.template_id, g.template_version) != (template_id, version):
        changes["LaunchTemplate"] = {"LaunchTemplateId": template_id, "Version": version}
        shown = version
        if version == NEW_TEMPLATE_VERSION:
            shown = f"{f.template.latest_version + 1}" if f.template else "1"
        words.append(f"launch template version {g.template_version} -> {shown}")
    fitted = min(max(g.desired_capacity, d.min_size), d.max_size)
    if fitted != g.desired_capacity:
        changes["DesiredCapacity"] = fitted
        words.append(f"desired capacity {g.desired_capacity} -> {fitted} (to fit min and max)")
    elif g.desired_capacity != d.desired_capacity:
        notes.append(
            f"desired capacity stays {g.desired_capacity}: provision.desired "
            f"({d.desired_capacity}) applies when the group is created; then scaling policies "
            f"and `orchestrator boxtype scale {d.box_type}` own it"
        )
    return changes, words, notes


def _tag_group(d: Desired) -> Action:
    tag = {
        "ResourceId": d.name,
        "ResourceType": "auto-scaling-group",
        "Key": BOX_TYPE_TAG,
        "Value": d.box_type,
        "PropagateAtLaunch": True,
    }
    return Action(
        "change",
        "auto scaling group",
        d.name,
        f"tag {BOX_TYPE_TAG}={d.box_type}",
        "tag_group",
        {"Tags": [tag]},
    )


def _policies(d: Desired, f: Facts) -> tuple[list[Action], list[Action], dict[str, str]]:
    puts: list[Action] = []
    arns: dict[str, str] = {}
    for name, spec in d.policies.items():
        have = f.policies.get(name)
        # put_scaling_policy on an existing policy keeps its ARN: the alarms stay valid.
        arns[name] = (
            str(have["PolicyARN"])
            if have and have.get("PolicyARN")
            else (policy_arn_placeholder(name))
        )
        if have is not None and project(have, spec.params) == spec.params:
            continue
        params = {"AutoScalingGroupName": d.name, "PolicyName": name, **spec.params}
        verb: Verb = "create" if have is None else "change"
        puts.append(Action(verb, "scaling policy", name, spec.summary, "put_policy", params))
    stale = sorted(n for n in f.policies if n.startswith(f"{d.name}-") and n not in d.policies)
    deletes = [
        Action(
            "delete",
            "scaling policy",
            n,
            "not in provision.scaling",
            "delete_policy",
            {"AutoScalingGroupName": d.name, "PolicyName": n},
        )
        for n in stale
    ]
    return puts, deletes, arns


def _alarms(d: Desired, f: Facts, arns: dict[str, str]) -> tuple[list[Action], list[Action]]:
    puts: list[Action] = []
    for name, spec in d.alarms.items():
        want = {**spec.params, "AlarmActions": [arns[spec.policy]]}
        have = f.alarms.get(name)
        if have is not None:
            view = project(_sorted_dimensions(have), want)
            if view == want:
                continue
        verb: Verb = "create" if have is None else "change"
        puts.append(
            Action(verb, "alarm", name, spec.summary, "put_alarm", {"AlarmName": name, **want})
        )
    stale = sorted(n for n, a in f.alarms.items() if n not in d.alarms and owns_alarm(d.name, a))
    deletes = [
        Action(
            "delete", "alarm", n, "not in provision.scaling", "delete_alarm", {"AlarmNames": [n]}
        )
        for n in stale
    ]
    return puts, deletes


def _sorted_dimensions(alarm: dict[str, Any]) -> dict[str, Any]:
    dims = sorted(alarm.get("Dimensions", []), key=lambda x: str(x.get("Name")))
    return {**alarm, "Dimensions": dims}


def _tags(resource_type: str, box_type: str) -> dict[str, Any]:
    return {"ResourceType": resource_type, "Tags": [{"Key": BOX_TYPE_TAG, "Value": box_type}]}


def plan_delete(box_type: str, f: Facts) -> Plan:
    """Everything `boxtype create` made for the box type, in an order AWS accepts."""
    name = resource_name(box_type)
    actions = [
        Action("delete", "alarm", n, "", "delete_alarm", {"AlarmNames": [n]})
        for n, a in sorted(f.alarms.items())
        if owns_alarm(name, a)
    ]
    actions += [
        Action(
            "delete",
            "scaling policy",
            n,
            "",
            "delete_policy",
            {"AutoScalingGroupName": name, "PolicyName": n},
        )
        for n in sorted(f.policies)
        if n.startswith(f"{name}-")
    ]
    if f.group is not None:
        detail = f"its {f.group.instances} boxes are terminated" if f.group.instances else ""
        actions.append(
            Action(
                "delete",
                "auto scaling group",
                name,
                detail,
                "delete_group",
                {"AutoScalingGroupName": name, "ForceDelete": True},
            )
        )
    if f.template is not None:
        actions.append(
            Action(
                "delete",
                "launch template",
                name,
                f"{f.template.latest_version} version(s)",
                "delete_template",
                {"LaunchTemplateId": f.template.id},
            )
        )
    if f.security_group is not None:
        actions.append(
            Action(
                "delete",
                "security group",
                name,
                f.security_group.id,
                "delete_security_group",
                {"GroupId": f.security_group.id},
            )
        )
    return Plan(actions)
