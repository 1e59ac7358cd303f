"""`orchestrator boxtype`: a box type's launch template, security group, group and scaling."""

from __future__ import annotations

import time
from dataclasses import dataclass

import click

from orchestrator.aws.desired import desired_state
from orchestrator.aws.facts import check_inputs, gather
from orchestrator.aws.plan import make_plan, plan_delete
from orchestrator.aws.provision import apply, scale
from orchestrator.aws.state import Action, Facts, Plan, resource_name
from orchestrator.aws.userdata import cloud_config, encode
from orchestrator.cli_args import Whole, box_type_arg
from orchestrator.config import box_file, find_fleet, load_box, load_fleet, read_yaml
from orchestrator.engine.aws import AwsClients, connect
from orchestrator.errors import InvalidFile
from orchestrator.settings import CoordinatorSettings, load_settings
from schemas.boxfile import BoxSpec
from schemas.checks import Problem
from schemas.fleet import FleetSettings
from schemas.provision import Provisioning


@dataclass(frozen=True)
class BoxType:
    """A box type's file, loaded and checked, with its provision section."""

    name: str
    path: str
    spec: BoxSpec
    provision: Provisioning
    lines: dict[str, int]
    fleet: FleetSettings | None
    region: str


def load_box_type(settings: CoordinatorSettings, box_type: str) -> BoxType:
    """boxes/<type>.yml, fully checked, which must have a provision section (else exit 2)."""
    path = box_file(settings, box_type)
    fleet_path = settings.fleet_file or find_fleet(path)
    fleet = load_fleet(fleet_path) if fleet_path else None
    spec = load_box(path, fleet).spec
    if spec.provision is None:
        raise InvalidFile(
            str(path),
            [
                Problem(
                    "provision",
                    "this box type has no provision section; add one with at least ami, "
                    "subnets and worker.broker_url (README: Box types in AWS)",
                )
            ],
        )
    _, lines = read_yaml(path)
    region = spec.provision.region or settings.aws_region
    return BoxType(box_type, str(path), spec, spec.provision, lines, fleet, region)


def _region(settings: CoordinatorSettings, box_type: str) -> str:
    # The box file may be gone already (delete): then the settings' region.
    if (settings.boxes_dir / f"{box_type}.yml").is_file():
        return load_box_type(settings, box_type).region
    return settings.aws_region


def _clients(settings: CoordinatorSettings, region: str) -> AwsClients:
    return connect(region, settings.aws_endpoint_url)


def _progress(action: Action) -> None:
    click.echo(f"  done {action}", err=True)


def _summary(box_type: str, f: Facts) -> str:
    parts = []
    if f.security_group:
        parts.append(f"security group {f.security_group.id}")
    if f.template:
        parts.append(f"launch template {f.template.id} version {f.template.latest_version}")
    if f.group:
        g = f.group
        parts.append(
            f"group {resource_name(box_type)} at {g.desired_capacity} "
            f"(min {g.min_size}, max {g.max_size})"
        )
    parts.append(f"{len(f.policies)} scaling policies, {len(f.alarms)} alarms")
    return ", ".join(parts)


def _show(box_type: str, where: str, plan: Plan, what: str = "change") -> None:
    n = len(plan.actions)
    click.echo(f"{box_type}: {n} {what}{'s' if n != 1 else ''} in {where}:")
    for action in plan.actions:
        click.echo(f"  {action}")
    for note in plan.notes:
        click.echo(f"  note: {note}")


@click.group()
def boxtype() -> None:
    """Box types in AWS: launch template, security group, auto scaling group, scaling.

    Each reads boxes/<type>.yml and its provision section; see README "Box types in AWS".
    """


@boxtype.command()
@click.argument("box_type", callback=box_type_arg)
@click.option(
    "--dry-run", is_flag=True, help="Print the plan of creates and changes; change nothing."
)
def create(box_type: str, dry_run: bool) -> None:
    """Create or update BOX_TYPE in AWS to match its box.yml; a second run changes nothing.

    Input is checked first (exit 2, nothing changed): the file, then the AMI, instance type,
    subnets, key pair, instance profile and security groups it names, with describe calls.
    """
    settings = load_settings()
    bt = load_box_type(settings, box_type)
    desired = desired_state(box_type, bt.spec, bt.provision, bt.region, bt.fleet)
    started = time.monotonic()
    c = _clients(settings, bt.region)
    try:
        vpc, problems = check_inputs(c, bt.provision)
        if problems:
            raise InvalidFile(bt.path, problems, bt.lines)
        facts = gather(c, box_type, vpc)
        plan = make_plan(desired, facts)
        if not plan.actions:
            click.echo(f"{box_type}: no changes ({_summary(box_type, facts)})")
            for note in plan.notes:
                click.echo(f"  note: {note}")
            return
        _show(box_type, f"{bt.region} ({vpc})", plan)
        if dry_run:
            click.echo(f"{box_type}: dry run: nothing was changed")
            return
        apply(c, plan, _progress)
    finally:
        c.close()
    n = len(plan.actions)
    took = time.monotonic() - started
    click.echo(f"{box_type}: {n} change{'s' if n != 1 else ''} made in {took:.1f} s")


@boxtype.command()
@click.argument("box_type", callback=box_type_arg)
@click.option("--base64", "as_base64", is_flag=True, help="Encoded, as the template holds it.")
def userdata(box_type: str, as_base64: bool) -> None:
    """Print the cloud-init document of BOX_TYPE's launch template (no AWS call)."""
    bt = load_box_type(load_settings(), box_type)
    text = cloud_config(box_type, bt.region, bt.provision.worker)
    click.echo(encode(text) if as_base64 else text, nl=as_base64)


@boxtype.command("scale")
@click.argument("box_type", callback=box_type_arg)
@click.option(
    "--desired", type=Whole(min=0), required=True, help="Boxes the group should run."
)
def scale_cmd(box_type: str, desired: int) -> None:
    """Set how many boxes BOX_TYPE's auto scaling group runs (within its min and max)."""
    settings = load_settings()
    c = _clients(settings, _region(settings, box_type))
    try:
        before, low, high = scale(c, box_type, desired)
    finally:
        c.close()
    click.echo(f"{box_type}: desired capacity {before} -> {desired} (min {low}, max {high})")


@boxtype.command()
@click.argument("box_type", callback=box_type_arg)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(box_type: str, yes: bool) -> None:
    """Delete BOX_TYPE in AWS: alarms, policies, group (ending its boxes), template, SG."""
    settings = load_settings()
    region = _region(settings, box_type)
    started = time.monotonic()
    c = _clients(settings, region)
    try:
        plan = plan_delete(box_type, gather(c, box_type, None))
        if not plan.actions:
            click.echo(f"{box_type}: nothing to delete in {region}")
            return
        _show(box_type, region, plan, "deletion")
        if not yes:
            click.confirm(
                f"Delete these {len(plan.actions)} resources of {box_type}?",
                abort=True,
                err=True,
            )
        apply(c, plan, _progress)
    finally:
        c.close()
    took = time.monotonic() - started
    click.echo(f"{box_type}: {len(plan.actions)} resources deleted in {took:.1f} s")
