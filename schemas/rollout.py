"""A rollout: its policy, plan and states, as stored in Redis and shown to people."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class RolloutState(StrEnum):
    """Every state a rollout takes; orchestrator/engine/state.py holds the moves between them."""

    PREFLIGHT = "preflight"  # lease taken, boxes asked whether they can take the release
    RUNNING = "running"
    BAKING = "baking"  # the canary wave is done: no box starts while the gates are watched
    PAUSED = "paused"
    HALTED = "halted"  # no new box starts; boxes in flight finish
    ROLLBACK_PENDING = "rollback-pending"  # halted, waiting for its rollback to be started
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"
    ABANDONED = "abandoned"

    @property
    def final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = {
    RolloutState.SUCCEEDED,
    RolloutState.FAILED,
    RolloutState.ABORTED,
    RolloutState.ABANDONED,
}

OnFailure = Literal["halt", "rollback", "continue"]


_COUNT = re.compile(r"([0-9]{1,9})(%?)\Z")


def check_count(text: str, option: str, minimum: int) -> str:
    """`N` or `N%` (a percentage at most 100), at least `minimum`; the option names the flag."""
    m = _COUNT.match(text.strip())
    if not m:
        raise ValueError(f"{option} {text!r}: write a number of boxes (3) or a percentage (25%)")
    value, percent = int(m.group(1)), m.group(2) == "%"
    if percent and value > 100:
        raise ValueError(f"{option} {text!r}: a percentage is at most 100%")
    if value < minimum:
        raise ValueError(f"{option} {text!r}: write at least {minimum}")
    return text.strip()


class Policy(BaseModel):
    """What a person asked for on the command line, before it meets the fleet."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    canary: str = Field("1", description="Boxes in the canary wave: N or N%")
    batch: str = Field("1", description="Boxes in flight after the canary: N or N%")
    max_failed: str = Field("0", description="Failed boxes tolerated: N or N%")
    on_failure: OnFailure = "halt"

    @field_validator("canary")
    @classmethod
    def _canary(cls, v: str) -> str:
        return check_count(v, "--canary", 0)

    @field_validator("batch")
    @classmethod
    def _batch(cls, v: str) -> str:
        # `--batch 0` used to become 1 silently: a batch of nothing is a mistake.
        return check_count(v, "--batch", 1)

    @field_validator("max_failed")
    @classmethod
    def _max_failed(cls, v: str) -> str:
        return check_count(v, "--max-failed", 0)


class Plan(BaseModel):
    """The pure planner's answer: which boxes, in which order, how many at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    boxes: list[str] = Field(description="Every box of the rollout, canary wave first")
    canary: int = Field(ge=0, description="The first `canary` boxes are a barrier wave")
    batch: int = Field(ge=1, description="Boxes in flight once the canary wave succeeded")
    max_failed: int = Field(ge=0, description="More failed boxes than this halts the rollout")
    on_failure: OnFailure = "halt"

    @property
    def canary_boxes(self) -> list[str]:
        return self.boxes[: self.canary]


def alarm_problem(name: str) -> str:
    """Why `name` can't be a CloudWatch alarm name ('' when it can): 1-255 characters, no
    control character (an empty one matches no alarm: a gate that never closes). Pure."""
    if not name.strip():
        return "an alarm name is empty"
    if len(name) > 255:
        return f"alarm name {name[:40]!r}... is {len(name)} characters; CloudWatch allows 255"
    if any(not c.isprintable() for c in name):
        return f"alarm name {name!r} has a control character"
    return ""


class Bake(BaseModel):
    """A bake after the canary wave: how long, and the gates that must pass meanwhile."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seconds: float = Field(gt=0, description="How long the canary wave bakes")
    alarms: list[str] = Field(default_factory=list, description="CloudWatch alarm names")
    error_margin: float = Field(
        0.05, ge=0, le=1, description="The canary's error rate may exceed the fleet's by this"
    )
    min_requests: int = Field(
        20, ge=1, description="Canary responses needed before its error rate is judged"
    )
    each_wave: bool = Field(False, description="Bake after every wave, not only the canary's")


class Rollout(BaseModel):
    """The immutable facts of one rollout; its live counters are a Redis hash beside it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    box_type: str
    release_id: str
    release_hash: str
    previous_release: str | None = Field(None, description="The box type's current release")
    plan: Plan
    reason: str = ""
    created_by: str = ""
    host: str = Field("", description="Where the command ran")
    performer: str = Field("", description="Who, as CI names them (else the user)")
    command: str = Field("", description="The command line, passwords redacted")
    created_at: float
    parent: str | None = Field(None, description="The rollout this one rolls back")
    kind: Literal["rollout", "rollback", "repair", "catchup"] = "rollout"
    bake: Bake | None = Field(None, description="Gated bake after the canary wave")
