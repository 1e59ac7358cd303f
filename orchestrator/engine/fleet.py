"""The fleet of a box type: live heartbeats, joined with its auto scaling group when it has one."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError

from orchestrator.engine.redisconn import RedisClient
from orchestrator.errors import ConfigError
from schemas.contract import BOX_TYPE_TAG, CONTRACT_VERSION, Heartbeat, Keys

log = logging.getLogger(__name__)

Source = Literal["auto", "heartbeats", "asg"]
# A heartbeat gone this long: the worker is dead, not slow to beat (its TTL has passed already).
GONE_AFTER = 5.0


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
    # A few hundred at a time: 5,000 raw heartbeats at once were megabytes held beside their
    # parsed copies (the coordinator's peak memory), and one long reply for Redis.
    for at in range(0, len(found), MGET_CHUNK):
        chunk = found[at : at + MGET_CHUNK]
        for key, raw in zip(chunk, client.mget(chunk), strict=True):
            if raw is None:
                continue
            name = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
            hb = parse_heartbeat(raw, name.removeprefix(prefix))
            if hb is not None and hb.box_type == box_type:
                out[hb.box_id] = hb
    return out


MGET_CHUNK = 500


def heartbeat(client: RedisClient, keys: Keys, box_id: str) -> Heartbeat | None:
    """One box's live heartbeat, or None when it has none (or one this version can't read)."""
    raw = client.get(keys.heartbeat(box_id))
    return parse_heartbeat(raw, box_id) if raw else None


class Members:
    """`members:<t>`: every box that ever heartbeated as the type, with its last beat, until it
    is removed (scale-in, `boxes forget`, or its auto scaling group saying it is gone)."""

    def __init__(self, client: RedisClient, keys: Keys) -> None:
        self.client, self.keys = client, keys

    def of(self, box_type: str) -> dict[str, float]:
        raw = self.client.hgetall(self.keys.members(box_type))
        return {_text(b): float(_text(at)) for b, at in raw.items()}

    def types_of(self, box_id: str) -> list[str]:
        """Every box type that counts `box_id` as a member."""
        prefix = self.keys.members("")
        return sorted(
            _text(key)[len(prefix) :]
            for key in self.client.scan_iter(match=self.keys.members("*"), count=1000)
            if self.client.hexists(_text(key), box_id)
        )

    def forget(self, box_type: str, *box_ids: str) -> int:
        return int(self.client.hdel(self.keys.members(box_type), *box_ids)) if box_ids else 0


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def forget_refusal(box_id: str, member_of: list[str], live_as: str | None) -> str:
    """Why `boxes forget` must not forget `box_id` ('' when it may), and the fix."""
    if not member_of:
        return (
            f"box {box_id!r} is not a member of any box type: nothing to forget "
            "(`orchestrator status <type>` lists members; check the box id)"
        )
    if live_as is not None:
        return (
            f"box {box_id!r} still heartbeats as {live_as}: stop its worker first "
            "(`orchestrator-worker --leave-lb` on a box scaled in), or it is a member again "
            "at its next beat"
        )
    return ""


def missing_members(members: dict[str, float], live: set[str]) -> dict[str, float]:
    """Members without a live heartbeat, with the time of their last one."""
    return {b: at for b, at in sorted(members.items()) if b not in live}


def last_seen(at: float) -> str:
    """`last heartbeat 2026-12-02 02:41:07 UTC (95 s ago)`, or that it never had one."""
    if not at:
        return "no heartbeat ever seen"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))
    return f"last heartbeat {stamp} ({max(0.0, time.time() - at):.0f} s ago)"


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
    # missing box -> its last heartbeat (time), when it was ever seen; 0.0 if never
    since: dict[str, float] = field(default_factory=dict)


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
        members = Members(self.client, self.keys).of(box_type)
        if source == "heartbeats" or self.aws is None:
            return self._by_heartbeats(box_type, beats, members)
        if source == "auto" and not aws_configured():
            return self._by_heartbeats(box_type, beats, members)
        from orchestrator.engine import asg
        from orchestrator.engine.aws import aws_client

        found = asg.find_group(aws_client("autoscaling", *self.aws), box_type)
        if found is None:
            if source == "asg":
                raise ConfigError(
                    f"box type {box_type!r} has no auto scaling group tagged "
                    f"{BOX_TYPE_TAG}={box_type}"
                )
            return self._by_heartbeats(box_type, beats, members)
        instances = asg.group_instances(found, aws_client("ec2", *self.aws))
        joined = asg.AsgFleet(found["AutoScalingGroupName"], instances, beats)
        # The group says these are gone: they are members no more.
        known = {i.id for i in instances}
        Members(self.client, self.keys).forget(box_type, *(set(members) - known - set(beats)))
        return FleetView(
            box_type,
            beats,
            group=joined.group,
            instances=instances,
            boxes=joined.boxes,
            missing=joined.missing,
            strays=joined.strays,
            since={b: members.get(b, 0.0) for b in joined.missing},
        )

    def _by_heartbeats(
        self, box_type: str, beats: dict[str, Heartbeat], members: dict[str, float]
    ) -> FleetView:
        """Every live heartbeat; a member without one is missing."""
        gone = missing_members(members, set(beats))
        return FleetView(box_type, beats, boxes=sorted(beats), missing=sorted(gone), since=gone)


def aws_configured() -> bool:
    """Credentials boto3 would use: without them, `auto` means live heartbeats only."""
    from orchestrator.engine.aws import has_credentials

    return has_credentials()
