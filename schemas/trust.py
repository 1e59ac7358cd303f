"""Signed records: who ordered a box to act (orders), what is current, and their signatures."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.rollout import Policy

OrderKind = Literal["rollout", "rollback", "repair", "resume"]


class Sig(BaseModel):
    """An Ed25519 signature over a record's canonical JSON, and the public key that made it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(description="The signer's public key: base64 of its 32 raw bytes")
    sig: str = Field(description="base64 of the 64-byte signature")


class Order(BaseModel):
    """What makes a box act: one rollout (rollback, repair, resume) of one release on a type."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: OrderKind
    rollout_id: str
    box_type: str
    release_id: str
    release_hash: str
    policy: Policy = Field(default_factory=Policy)
    box_id: str = Field("", description="A repair's one box; '' for every box of the type")
    issued_at: float
    expires_at: float = Field(description="No box may be claimed by this order after this")


class Current(BaseModel):
    """A box type's current release, signed when its rollout was; `seq` only ever grows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    box_type: str
    release_id: str
    release_hash: str
    seq: int = Field(description="Microseconds since the epoch at signing: newer is larger")
    rollout_id: str


class SignedOrder(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    order: Order
    sig: Sig


class SignedCurrent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    current: Current
    sig: Sig


class Warrant(BaseModel):
    """`rollout:<id>:order`: the rollout's signed order and its current-on-success record,
    which the rollout's end (on a worker, without a key) only copies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order: SignedOrder
    current: SignedCurrent | None = None
