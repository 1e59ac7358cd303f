"""The coordinator-worker contract: task names, queues, Redis keys, messages, results."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Bump when a message, key or label changes meaning; preflight refuses a mismatch.
CONTRACT_VERSION = 3  # 3: secret hashes (label, heartbeat, deploy.secrets), deploy.migrate, bakes

QUEUE_TEMPLATE = "box.{box_id}"
# The tag naming an instance's (and an auto scaling group's) box type.
BOX_TYPE_TAG = "orchestrator:box-type"


def queue_for(box_id: str) -> str:
    return QUEUE_TEMPLATE.format(box_id=box_id)


class TaskName(StrEnum):
    """Every task a box worker registers. A name the worker doesn't know hangs a chain."""

    PREFLIGHT = "deploy.preflight"
    PULL = "deploy.pull"
    CLAIM = "deploy.claim"
    LEAVE_LB = "deploy.leave_lb"
    SWAP = "deploy.swap"
    RESTORE = "deploy.restore"
    JOIN_LB = "deploy.join_lb"
    ENSURE_SERVICES = "deploy.ensure_services"
    FINISH = "deploy.finish"
    # box.yml's one-off task, on one box, before any box leaves its load balancer.
    MIGRATE = "deploy.migrate"
    # `plan`'s question to a box: which apps' secret values changed (names only, no chain).
    SECRETS = "deploy.secrets"
    # link_error of every chain step: an error that escaped a step still restores and rejoins.
    RESCUE = "deploy.rescue"


class Keys:
    """Redis key templates under one prefix (product state; the broker's keys are kombu's)."""

    def __init__(self, prefix: str = "orch:") -> None:
        self.prefix = prefix

    def release(self, release_id: str) -> str:
        return f"{self.prefix}release:{release_id}"

    def current(self, box_type: str) -> str:
        return f"{self.prefix}boxtype:{box_type}:current"

    def signed_current(self, box_type: str) -> str:
        """The signed record (schemas.trust.SignedCurrent) of the type's current release."""
        return f"{self.prefix}boxtype:{box_type}:signed-current"

    def rollout(self, rollout_id: str) -> str:
        return f"{self.prefix}rollout:{rollout_id}"

    def rollout_part(self, rollout_id: str, part: str) -> str:
        """`spec` (JSON), `order` (the signed Warrant), `pending` (list), `inflight` (set),
        `done` (hash), `tokens` (hash)."""
        return f"{self.prefix}rollout:{rollout_id}:{part}"

    def rollouts(self, box_type: str) -> str:
        """Every rollout of the box type, scored by creation time: the history."""
        return f"{self.prefix}boxtype:{box_type}:rollouts"

    def active(self, box_type: str) -> str:
        """The rollout now running on the box type (workers watch its boxes' slots)."""
        return f"{self.prefix}boxtype:{box_type}:active"

    def lease(self, box_type: str) -> str:
        return f"{self.prefix}lease:{box_type}"

    def fence(self, box_type: str) -> str:
        """Hash {epoch, n}: tokens are `<epoch>.<n>`; a new epoch whenever the hash is gone."""
        return f"{self.prefix}fencing:{box_type}"

    def box_token(self, box_id: str) -> str:
        """Hash {token, rollout}: the one chain that may act on this box now (none: nobody)."""
        return f"{self.prefix}boxowner:{box_id}"

    def heartbeat(self, box_id: str) -> str:
        return f"{self.prefix}box:{box_id}"

    def heartbeat_pattern(self) -> str:
        return f"{self.prefix}box:*"

    def members(self, box_type: str) -> str:
        """Hash box -> its last heartbeat time: every box of the type until it is removed."""
        return f"{self.prefix}members:{box_type}"

    def journal(self, rollout_id: str, box_id: str) -> str:
        """One hash per (rollout, box); field `<step>:<app>` holds that step's result."""
        return f"{self.prefix}journal:{rollout_id}:{box_id}"

    def slot(self, rollout_id: str, box_id: str) -> str:
        return f"{self.prefix}slot:{rollout_id}:{box_id}"

    def lb_state(self, box_id: str) -> str:
        """app -> "in" / "out": the box's load balancer membership, as its steps left it."""
        return f"{self.prefix}lbstate:{box_id}"

    def services(self, box_id: str) -> str:
        """The release whose service catalog this box keeps reconciled."""
        return f"{self.prefix}services:{box_id}"

    def freeze(self, box_type: str) -> str:
        """A deploy freeze: JSON {message, who, at}; set and lifted only by `lock`."""
        return f"{self.prefix}freeze:{box_type}"

    def notified(self, rollout_id: str) -> str:
        """Hash: lifecycle event -> `claimed <notifier>` then `done`: each is handled once."""
        return f"{self.prefix}notified:{rollout_id}"

    def notifiers(self) -> str:
        """Hash: notifier id -> its last beat (unix seconds); old entries mean dead ones."""
        return f"{self.prefix}notifiers"

    def events(self, box_type: str) -> str:
        return f"{self.prefix}events:{box_type}"

    def event_types(self) -> str:
        """Set: the box types whose streams a rollout (or rollback, catch-up) started in, so a
        notifier follows a new type's stream at its first rollout."""
        return f"{self.prefix}eventtypes"

    def lb_budget(self) -> str:
        """Load balancer key -> max_out (fleet.yml), as the last rollout started published it."""
        return f"{self.prefix}lbbudget"

    def lb_out(self, lb_key: str) -> str:
        """box -> `rollout token box_type`: the places reserved out of one load balancer; `~seq`
        orders its events across box types."""
        return f"{self.prefix}lbout:{lb_key}"

    def reaper(self, box_type: str) -> str:
        """Taken (SET NX PX) by the one worker of the type that reaps this heartbeat interval."""
        return f"{self.prefix}reaper:{box_type}"

    def lb_wait(self) -> str:
        """Rollouts with a box sent back to pending by a full load balancer."""
        return f"{self.prefix}lbwait"


class Label:
    """Docker labels on every container the worker makes: its facts, read back later."""

    MANAGED = "orchestrator.managed"
    BOX = "orchestrator.box"
    BOX_TYPE = "orchestrator.box_type"
    APP = "orchestrator.app"
    CONTAINER = "orchestrator.container"
    SPEC_HASH = "orchestrator.spec_hash"
    RELEASE = "orchestrator.release"
    TOKEN = "orchestrator.token"
    ROLE = "orchestrator.role"  # "app" or "service" ("migrate": a rollout's one-off task)
    MIGRATE = "orchestrator.migrate"  # the rollout a one-off task container belongs to
    GENERATION = "orchestrator.generation"  # "current", or "previous" while a swap runs
    # HMAC of the container's secret values under a key that never leaves the box
    SECRET_HASH = "orchestrator.secret_hash"


class Outcome(StrEnum):
    OK = "ok"  # the step did its work
    NOOP = "noop"  # nothing to do: the box already was as asked
    FAILED = "failed"  # a domain failure: the reason says why; the chain goes on to restore
    SKIPPED = "skipped"  # an earlier failure of this box means this step must not act
    SUPERSEDED = "superseded"  # the box's token is not this chain's (newer, revoked, lost)
    REFUSED = "refused"  # the box did not verify who ordered it (signatures, type, expiry)
    DEFERRED = "deferred"  # its load balancer's budget is spent: the box goes back to pending


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StepRequest(Message):
    """What every step receives: ids and a token, never the config and never a secret."""

    contract_version: int = CONTRACT_VERSION
    rollout_id: str = Field(description="The rollout (or repair) this step belongs to")
    box_id: str
    box_type: str
    release_id: str = Field(description="Release to deploy; the worker fetches it from Redis")
    release_hash: str = Field(description="Content hash the fetched release must match")
    token: str = Field(
        "", description="Fencing token `<epoch>.<n>` taken at claim; '' before the claim"
    )
    app: str | None = Field(None, description="The app of a per-app step (swap)")
    changed_apps: list[str] = Field(
        default_factory=list, description="Apps this chain swaps, in start order"
    )
    lb_apps: list[str] = Field(
        default_factory=list,
        description="Apps whose load balancers the box may leave; leave_lb keeps those whose "
        "app (or an app they depend on) differs from what runs on the box now",
    )
    leave_all: bool = Field(
        False, description="Leave and rejoin every lb_apps app, changed or not (repair)"
    )


class StepResult(Message):
    """What every step returns and journals; failures are data, never exceptions."""

    contract_version: int = CONTRACT_VERSION
    step: str
    app: str | None = None
    rollout_id: str
    box_id: str
    outcome: Outcome
    reason: str = ""
    log_tail: str = Field("", description="Last log lines of the failing container")
    details: dict[str, str] = Field(default_factory=dict)
    started: float = Field(description="Unix time the step started")
    ended: float = Field(description="Unix time the step ended")

    @property
    def failed(self) -> bool:
        return self.outcome in (Outcome.FAILED, Outcome.REFUSED)


class Member(Message):
    """A box's membership at one load balancer: enough to leave or rejoin it without Redis."""

    kind: str = Field(description="elb, elbv2, haproxy")
    name: str = Field(description="The load balancer: ELB, target group or HAProxy backend")
    member: str = Field(description="This box's member name there (instance id, server name)")
    port: int | None = Field(None, description="The member's port where the kind has one")


class AppRunning(Message):
    image: str
    spec_hash: str
    release: str


class Heartbeat(Message):
    """Written by a worker's heartbeat thread under `box:<id>` with a TTL."""

    contract_version: int = CONTRACT_VERSION
    box_id: str
    box_type: str
    hostname: str
    worker_version: str
    docker_version: str
    apps: dict[str, AppRunning] = Field(default_factory=dict)
    busy: str | None = Field(None, description="`<rollout>/<step>` while a step runs")
    state: Literal["ready", "converging", "waiting", "error"] = "ready"
    flags: list[str] = Field(
        default_factory=list,
        description="What the box itself finds wrong, e.g. hand-made containers",
    )
    problems: dict[str, str] = Field(
        default_factory=dict,
        description="app -> what is wrong with it: nothing runs, exited, unhealthy",
    )
    members: dict[str, Member] = Field(
        default_factory=dict, description="app -> its load balancer membership, when it has one"
    )
    secret_changed: list[str] = Field(
        default_factory=list,
        description="Apps whose secret values changed since they started, as the box last "
        "checked (names only: no value, no hash leaves the box)",
    )
    catch_up: str = Field(
        "", description="Why the box does not catch up with its type's current release now"
    )
    at: float
