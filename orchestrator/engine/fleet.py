"""The fleet of a box type: live heartbeats, joined with its auto scaling group when it has one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrator.engine.redisconn import RedisClient
from orchestrator.errors import ConfigError
from schemas.contract import BOX_TYPE_TAG, Heartbeat, Keys

Source = Literal["auto", "heartbeats", "asg"]


def heartbeats(client: RedisClient, keys: Keys, box_type: str) -> dict[str, Heartbeat]:
    """Live heartbeats of `box_type`, by box id (expired ones are simply gone)."""
    out: dict[str, Heartbeat] = {}
    found = list(client.scan_iter(match=keys.heartbeat_pattern(), count=1000))
    if not found:
        return out
    for raw in client.mget(found):
        if raw is None:
            continue
        hb = Heartbeat.model_validate_json(raw)
        if hb.box_type == box_type:
            out[hb.box_id] = hb
    return out


def heartbeat(client: RedisClient, keys: Keys, box_id: str) -> Heartbeat | None:
    """One box's live heartbeat, or None when it has none."""
    raw = client.get(keys.heartbeat(box_id))
    return Heartbeat.model_validate_json(raw) if raw else None


@dataclass
class FleetView:
    """One reading of a box type's fleet: who can be deployed, and who is wrong and why."""

    box_type: str
    heartbeats: dict[str, Heartbeat]
    group: str | None = None  # the auto scaling group, when the fleet comes from one
    instances: list[Any] = field(default_factory=list)  # asg.Instance, group members
    boxes: list[str] = field(default_factory=list)  # deployable: what a rollout plans
    missing: list[str] = field(default_factory=list)  # InService, no live worker
    strays: list[str] = field(default_factory=list)  # heartbeating, not in the group


class Fleet:
    """The one rule: the box type's ASG InService instances with a live worker if it has a
    group (and AWS is configured), else every box with a live heartbeat."""

    def __init__(
        self,
        client: RedisClient,
        keys: Keys,
        *,
        source: Source = "auto",
        aws: tuple[str, str | None] | None = None,
    ) -> None:
        self.client, self.keys = client, keys
        self.source, self.aws = source, aws

    def read(self, box_type: str, source: Source | None = None) -> FleetView:
        """The fleet now; `source` overrides the configured one for this reading."""
        source = source or self.source
        beats = heartbeats(self.client, self.keys, box_type)
        if source == "heartbeats" or self.aws is None:
            return FleetView(box_type, beats, boxes=sorted(beats))
        if source == "auto" and not aws_configured():
            return FleetView(box_type, beats, boxes=sorted(beats))
        from orchestrator.engine import asg
        from orchestrator.engine.aws import aws_client

        found = asg.find_group(aws_client("autoscaling", *self.aws), box_type)
        if found is None:
            if source == "asg":
                raise ConfigError(
                    f"box type {box_type!r} has no auto scaling group tagged "
                    f"{BOX_TYPE_TAG}={box_type}"
                )
            return FleetView(box_type, beats, boxes=sorted(beats))
        instances = asg.group_instances(found, aws_client("ec2", *self.aws))
        joined = asg.AsgFleet(found["AutoScalingGroupName"], instances, beats)
        return FleetView(
            box_type,
            beats,
            group=joined.group,
            instances=instances,
            boxes=joined.boxes,
            missing=joined.missing,
            strays=joined.strays,
        )


def aws_configured() -> bool:
    """Credentials boto3 would use: without them, `auto` means live heartbeats only."""
    from orchestrator.engine.aws import has_credentials

    return has_credentials()
