"""Before any step acts the box verifies who ordered it: signatures, type, box, release, expiry;
and before it converges by itself, the signed current record (never an older one)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from pydantic import ValidationError

from orchestrator.engine.releases import ReleaseStore
from orchestrator.engine.state import RolloutStates
from orchestrator.engine.trust import check_current, check_order, check_release, parse_keys
from orchestrator.errors import ReleaseMismatch
from schemas.contract import StepRequest, TaskName
from schemas.release import Release
from schemas.rollout import Rollout
from schemas.trust import SignedCurrent, Warrant

if TYPE_CHECKING:
    from worker.steps.opening import Opening
    from worker.steps.protocol import StepContext

log = logging.getLogger("orchestrator.worker.trust")

NO_KEYS = (
    "this box trusts no signing key: set ORCHESTRATOR_TRUSTED_KEYS to the coordinator's public "
    "key (`orchestrator keys generate` prints it)"
)


def trusted(ctx: StepContext) -> list[str]:
    return parse_keys(ctx.settings.trusted_keys)


def refusal(
    ctx: StepContext,
    step: TaskName,
    req: StepRequest,
    current: SignedCurrent | None = None,
    opened: Opening | None = None,
) -> str:
    """Why this box must not run `step` for `req` ('' when it may). `current` is the signed
    record the box itself verified to converge (boot, catch-up): never from a message.
    `opened`: the order and release as the step's opening read them (else read here)."""
    if ctx.settings.insecure_unsigned:
        return ""
    keys = trusted(ctx)
    if not keys:
        return NO_KEYS
    if ctx.box_type and req.box_type != ctx.box_type:
        return f"order for box type {req.box_type!r}; this box is {ctx.box_type!r}"
    if current is not None:
        why = _matches_current(current, req, keys)
    else:
        why = _order(ctx, step, req, keys, opened)
    if why or step == TaskName.FINISH:  # finish only counts the box: it needs no release
        return why
    return _release(ctx, req, keys, opened)


def _order(
    ctx: StepContext, step: TaskName, req: StepRequest, keys: list[str], opened: Opening | None
) -> str:
    signature: str | None = None
    try:
        if opened is not None and opened.order:
            warrant, signature = _signed_order(opened.order, tuple(keys))
        elif opened is not None:
            warrant = None
        else:
            warrant = RolloutStates(ctx.redis, ctx.keys).warrant(req.rollout_id)
    except ValidationError:
        return f"unsigned: rollout {req.rollout_id}'s order is not a signed order"
    if warrant is None and (why := _catch_up(ctx, req, keys)) is not None:
        return why
    claimed = ctx.record(req.box_id).read().claimed
    return order_refusal(warrant, req, step, keys, now=time.time(), claimed=claimed,
                         signature=signature)


@lru_cache(maxsize=64)
def _signed_order(raw: bytes, keys: tuple[str, ...]) -> tuple[Warrant, str]:
    """The order exactly as read, parsed, and why its signature does not stand ('' when it
    does): verified once per bytes and keys, not once a step (every step of a chain reads
    the same order). What depends on the step (expiry, box, release) is checked each time."""
    warrant = Warrant.model_validate_json(raw)
    return warrant, check_order(warrant.order, list(keys))


def order_refusal(
    warrant: Warrant | None,
    req: StepRequest,
    step: TaskName,
    keys: list[str],
    *,
    now: float,
    claimed: str = "",
    signature: str | None = None,
) -> str:
    """Pure: why `warrant` does not let `step` of `req` act ('' when it does). `claimed`: the
    rollout whose claim the box's own record holds (expiry no longer stops that one);
    `signature`: check_order's answer for this warrant with these keys, when known."""
    if warrant is None:
        return f"unsigned: rollout {req.rollout_id} has no signed order"
    why = check_order(warrant.order, keys) if signature is None else signature
    if why:
        return why
    o = warrant.order.order
    if o.rollout_id != req.rollout_id:
        return f"the order is rollout {o.rollout_id}'s, not {req.rollout_id}'s"
    if o.box_type != req.box_type:
        return f"order for box type {o.box_type!r}, not {req.box_type!r}"
    if o.box_id and o.box_id != req.box_id:
        return f"order ({o.kind}) for box {o.box_id} only, not {req.box_id}"
    if (o.release_id, o.release_hash) != (req.release_id, req.release_hash):
        return f"release {req.release_id} is not the order's ({o.release_id})"
    # Expiry limits claiming a box; a box that claimed this rollout may take its time.
    if step != TaskName.FINISH and now > o.expires_at and claimed != req.rollout_id:
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(o.expires_at))
        return f"order expired at {at}: it claims no box any more (resume signs a new one)"
    return ""


def _catch_up(ctx: StepContext, req: StepRequest, keys: list[str]) -> str | None:
    """A box's own catch-up (kind `catchup`, that box alone) has no order: like its start,
    its steps are authorised by the type's signed current, for that release only, never an
    older one than the box has seen. None: the rollout is no catch-up."""
    raw = ctx.redis.get(ctx.keys.rollout_part(req.rollout_id, "spec"))
    try:
        rollout = Rollout.model_validate_json(raw) if raw else None
    except ValidationError:
        return None
    if rollout is None or rollout.kind != "catchup" or rollout.plan.boxes != [req.box_id]:
        return None
    try:
        signed = RolloutStates(ctx.redis, ctx.keys).signed_current(req.box_type)
    except ValidationError:
        signed = None
    if signed is None:
        return f"catch-up {req.rollout_id}: {req.box_type}'s current is unsigned"
    seen = ctx.record(req.box_id).read().current_seq
    return current_check(signed, req.box_type, seen, keys) or _matches_current(signed, req, keys)


def _matches_current(signed: SignedCurrent, req: StepRequest, keys: list[str]) -> str:
    why = check_current(signed, keys)
    cur = signed.current
    if why:
        return why
    if cur.box_type != req.box_type:
        return f"current record of box type {cur.box_type!r}, not {req.box_type!r}"
    if (cur.release_id, cur.release_hash) != (req.release_id, req.release_hash):
        return f"release {req.release_id} is not the current record's ({cur.release_id})"
    return ""


def _release(ctx: StepContext, req: StepRequest, keys: list[str], opened: Opening | None) -> str:
    if opened is not None and opened.release_raw is not None:
        return _release_verdict(opened.release_raw, req.release_id, req.release_hash,
                                req.box_type, tuple(keys))
    if opened is not None:
        return _verdict(lambda: opened.release(req), req.box_type, keys)  # not in Redis
    return _verdict(lambda: ctx.releases.get(req.release_id, req.release_hash), req.box_type,
                    keys)


@lru_cache(maxsize=64)
def _release_verdict(raw: bytes, release_id: str, release_hash: str, box_type: str,
                     keys: tuple[str, ...]) -> str:
    """`_release`'s answer for the release exactly as read: once per bytes, request and keys."""
    return _verdict(lambda: ReleaseStore.parse(raw, release_id, release_hash), box_type,
                    list(keys))


def _verdict(read: Callable[[], Release], box_type: str, keys: list[str]) -> str:
    try:
        release = read()
    except ReleaseMismatch as exc:
        return f"release not verified: {exc}"
    return release_check(release, box_type, keys)


def release_check(release: Release, box_type: str, keys: list[str]) -> str:
    """Pure: why this box must not run `release` ('' when it may)."""
    why = check_release(release, keys)
    if not why and release.box_type != box_type:
        why = f"release {release.id} is of box type {release.box_type!r}, not {box_type!r}"
    return why


def current_check(signed: SignedCurrent, box_type: str, seen: int, keys: list[str]) -> str:
    """Pure: why this box must not converge to `signed` ('' when it may); `seen` is the
    highest seq of a current it has seen."""
    cur = signed.current
    why = check_current(signed, keys)
    if not why and cur.box_type != box_type:
        why = f"current record of box type {cur.box_type!r}, not {box_type!r}"
    if not why and cur.seq < seen:
        why = f"older current: {cur.release_id} (seq {cur.seq}) < seq {seen} this box has seen"
    return why


def release_refusal(ctx: StepContext, release: Release) -> str:
    """A release the box would act on outside a step (the services reconciler)."""
    if ctx.settings.insecure_unsigned:
        return ""
    keys = trusted(ctx)
    if not keys:
        return NO_KEYS
    return release_check(release, ctx.box_type or release.box_type, keys)


@dataclass(frozen=True)
class CurrentVerdict:
    """What the box may converge to by itself: a release and its signed record, or why not."""

    release: Release | None = None
    signed: SignedCurrent | None = None
    refused: str = ""


def authorise_current(ctx: StepContext, box_id: str, box_type: str) -> CurrentVerdict:
    """The one check before a box deploys its type's current release by itself (boot
    convergence, catch-up): signed by a trusted key, for this box's type, not older than any
    current this box has seen (remembered on its disk), and its release signed too."""
    states = RolloutStates(ctx.redis, ctx.keys)
    if ctx.settings.insecure_unsigned:
        return CurrentVerdict(release=ctx.releases.current(box_type))
    if states.current(box_type) is None:
        return CurrentVerdict()  # nothing is current yet
    keys = trusted(ctx)
    try:
        signed = states.signed_current(box_type)
    except ValidationError:
        signed = None
    if not keys or signed is None:
        return CurrentVerdict(refused=NO_KEYS if not keys else f"{box_type}'s current is unsigned")
    cur = signed.current
    record = ctx.record(box_id)
    why = current_check(signed, box_type, record.read().current_seq, keys)
    if why:
        return CurrentVerdict(refused=why)
    req = StepRequest(
        rollout_id=cur.rollout_id,
        box_id=box_id,
        box_type=box_type,
        release_id=cur.release_id,
        release_hash=cur.release_hash,
    )
    why = _release(ctx, req, keys, None)
    if why:
        return CurrentVerdict(refused=why)
    record.saw_current(cur.seq)
    return CurrentVerdict(ctx.releases.get(cur.release_id, cur.release_hash), signed)
