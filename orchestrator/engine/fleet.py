"""The fleet of a box type: live heartbeats, joined with its auto scaling group when it has one."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from orchestrator.engine.redisconn import RedisClient
from orchestrator.errors import ConfigError
from schemas.contract import BOX_TYPE_TAG, CONTRACT_VERSION, Heartbeat, Keys

log = logging.getLogger(__name__)

Source = Literal["auto", "heartbeats", "asg"]


def parse_heartbeat(raw: str | bytes, box: str) -> Heartbeat | None:
    """A heartbeat as this version writes it, or None (with a warning naming the box) for one
    that is malformed, older or newer: another box's input never breaks a command."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        log.warning("heartbeat of box %s skipped: not JSON", box)
        return None
    if not isinstance(data, dict):
        log.warning("heartbeat of box %s skipped: not a JSON object", box)
        return None
    version = data.get("contract_version")
    if version != CONTRACT_VERSION:
        age = "older" if isinstance(version, int) and version < CONTRACT_VERSION else "newer"
        if not isinstance(version, int) or isinstance(version, bool):
            age = "unknown"
        log.warning(
            "heartbeat of box %s skipped: contract version %r is %s than this coordinator's %d",
            box,
            version,
            age,
            CONTRACT_VERSION,
        )
        return None
    try:
        return Heartbeat.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        log.warning("heartbeat of box %s skipped: %s: %s", box, where, err["msg"])
        return None


def heartbeats(client: RedisClient, keys: Keys, box_type: str) -> dict[str, Heartbeat]:
    """Live heartbeats of `box_type`, by box id (expired and unreadable ones are skipped)."""
    out: dict[str, Heartbeat] = {}
    found = list(client.scan_iter(match=keys.heartbeat_pattern(), count=1000))
    if not found:
        return out
    prefix = keys.heartbeat("")
    for key, raw in zip(found, client.mget(found), strict=True):
        if raw is None:
            continue
        name = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
        hb = parse_heartbeat(raw, name.removeprefix(prefix))
        if hb is not None and hb.box_type == box_type:
            out[hb.box_id] = hb
    return out


def heartbeat(client: RedisClient, keys: Keys, box_id: str) -> Heartbeat | None:
    """One box's live heartbeat, or None when it has none (or one this version can't read)."""
    raw = client.get(keys.heartbeat(box_id))
    return parse_heartbeat(raw, box_id) if raw else None


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
