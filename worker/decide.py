"""Facts in, decision out: what one app's swap, or its restore, must do on this box; pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from schemas.contract import Label
from worker.facts import ContainerFact
from worker.record import BoxState
from worker.runspec import PREVIOUS_SUFFIX, STAGED_SUFFIX


def is_previous(fact: ContainerFact) -> bool:
    """A container kept stopped while its replacement starts (renamed `<name>.prev`)."""
    return fact.name.lstrip("/").endswith(PREVIOUS_SUFFIX)


def is_staged(fact: ContainerFact) -> bool:
    """A next version started in preflight for a start-first swap (`<name>.staged`): it takes
    no traffic and is nobody's serving version until its box's turn renames it."""
    return fact.name.lstrip("/").endswith(STAGED_SUFFIX)


def is_aside(fact: ContainerFact) -> bool:
    """Not the serving version: kept aside (`.prev`) or staged ahead (`.staged`)."""
    return is_previous(fact) or is_staged(fact)


def is_managed(fact: ContainerFact) -> bool:
    return fact.labels.get(Label.MANAGED) == "1"


@dataclass(frozen=True)
class SwapDecision:
    """What to do for one app. `keep` is the serving version: stopped, kept until the new
    one is healthy, restarted if it is not. `discard` are leftovers removed before starting."""

    needed: bool
    reason: str
    keep: tuple[ContainerFact, ...] = ()
    discard: tuple[ContainerFact, ...] = ()
    previous_hash: str | None = None
    previous_release: str | None = None
    adopted: bool = False


def app_facts(
    facts: Iterable[ContainerFact], *, box_id: str, app: str, container_names: Iterable[str]
) -> list[ContainerFact]:
    """This app's containers: ours (by labels) and a pre-orchestrator deploy's (by name)."""
    names = set(container_names)
    out = []
    for f in facts:
        if is_staged(f):
            continue  # staged ahead: only its box's turn (worker/stage.py) looks at it
        if is_managed(f):
            if (
                f.labels.get(Label.BOX) == box_id
                and f.labels.get(Label.APP) == app
                and (f.labels.get(Label.ROLE, "app") == "app")
            ):
                out.append(f)
        elif f.name.lstrip("/").removesuffix(PREVIOUS_SUFFIX) in names:
            out.append(f)
    return out


def _same_secrets(fact: ContainerFact, secret_hashes: Mapping[str, str]) -> bool:
    """A container started with the secret values that resolve now (one made before secret
    hashes existed carries no label and counts as the same)."""
    label = fact.labels.get(Label.SECRET_HASH)
    wanted = secret_hashes.get(fact.labels.get(Label.CONTAINER, ""))
    return label is None or wanted is None or label == wanted


def decide_swap(
    facts: Iterable[ContainerFact],
    *,
    container_names: Iterable[str],
    spec_hash: str,
    secret_hashes: Mapping[str, str] | None = None,
) -> SwapDecision:
    """Decide one app's swap from its containers (as returned by `app_facts`).

    `secret_hashes`: container -> the keyed hash of its secret values as they resolve now; a
    container of the same spec started with other values is replaced ("secret changed").
    """
    wanted = set(container_names)
    secret_hashes = secret_hashes or {}
    facts = list(facts)
    current = [f for f in facts if not is_previous(f)]
    previous = [f for f in facts if is_previous(f)]
    ours_new = [
        f
        for f in current
        if is_managed(f)
        and f.labels.get(Label.SPEC_HASH) == spec_hash
        and _same_secrets(f, secret_hashes)
    ]
    serving = [f for f in current if f not in ours_new]

    complete = (
        {f.labels.get(Label.CONTAINER) for f in ours_new} == wanted
        and len(ours_new) == len(wanted)
        and all(f.state == "running" for f in ours_new)
    )
    if complete and not serving:
        # Already runs this spec: re-running is a no-op. Managed leftovers of a finished
        # swap go; a pre-orchestrator deploy's kept containers stay for a manual clean-up.
        return SwapDecision(
            needed=False,
            reason=f"already running spec {spec_hash[:12]}",
            discard=tuple(f for f in previous if is_managed(f)),
        )

    keep = serving or previous
    discard = ours_new + ([] if keep is previous else [f for f in previous if is_managed(f)])
    first = keep[0] if keep else None
    rotated = bool(keep) and all(f.labels.get(Label.SPEC_HASH) == spec_hash for f in keep)
    return SwapDecision(
        needed=True,
        reason=("secret changed" if rotated else "spec changed") if keep else "not running",
        keep=tuple(keep),
        discard=tuple(discard),
        previous_hash=first.labels.get(Label.SPEC_HASH) if first else None,
        previous_release=first.labels.get(Label.RELEASE) if first else None,
        adopted=bool(first) and not is_managed(first) if first else False,
    )


@dataclass(frozen=True)
class SwapIntent:
    """What a swap noted (`intent:swap:<app>`) before acting: what ran, and what it brings."""

    new_hash: str
    new_release: str
    previous_hash: str | None = None
    previous_release: str | None = None
    adopted: bool = False
    strategy: str = "stop-first"  # start-first: the old version runs on while the new starts

    def note(self) -> dict[str, str | None]:
        note: dict[str, str | None] = {
            "previous_hash": self.previous_hash,
            "previous_release": self.previous_release,
            "adopted": "1" if self.adopted else "",
            "new_hash": self.new_hash,
            "new_release": self.new_release,
        }
        if self.strategy != "stop-first":
            note["strategy"] = self.strategy
        return note

    @classmethod
    def from_note(cls, note: Mapping[str, str | None]) -> SwapIntent:
        return cls(
            new_hash=str(note["new_hash"]),
            new_release=str(note["new_release"]),
            previous_hash=note.get("previous_hash"),
            previous_release=note.get("previous_release"),
            adopted=bool(note.get("adopted")),
            strategy=note.get("strategy") or "stop-first",
        )


@dataclass(frozen=True)
class RestoreDecision:
    """How to put one app back after a failed or interrupted swap.

    reinstate: remove `remove` (the new containers), rename `reinstate` back and restart it.
    swap_back: the previous containers are gone: swap to release `swap_back_to` again.
    remove_new: nothing ran before the swap: remove `remove`. noop: nothing to put back.
    """

    action: Literal["reinstate", "swap_back", "remove_new", "noop"]
    remove: tuple[ContainerFact, ...] = ()
    reinstate: tuple[ContainerFact, ...] = ()
    swap_back_to: str | None = None


def decide_restore(facts: Iterable[ContainerFact], intent: SwapIntent) -> RestoreDecision:
    """Decide one app's restore from its containers (as `app_facts` returns them) and the
    intent its swap noted; whenever the swap was interrupted, the facts say how far it got."""
    facts = list(facts)
    previous = [f for f in facts if is_previous(f)]
    new = [
        f for f in facts if not is_previous(f) and f.labels.get(Label.SPEC_HASH) == intent.new_hash
    ]
    # Killed between stopping the old version and renaming it: it is stopped, not `.prev`.
    stopped_old = [f for f in facts if not is_previous(f) and f not in new and f.state != "running"]
    if previous or stopped_old:
        return RestoreDecision("reinstate", remove=tuple(new), reinstate=(*previous, *stopped_old))
    if new and intent.previous_release:
        return RestoreDecision("swap_back", swap_back_to=intent.previous_release)
    if new:
        return RestoreDecision("remove_new", remove=tuple(new))
    return RestoreDecision("noop")


@dataclass(frozen=True)
class Owner:
    """Who may act on the box now, as Redis says: a token and the chain it belongs to."""

    token: str
    rollout: str
    live: bool  # a rollout's token whose rollout is recorded and has not ended


def decide_recovery(
    state: BoxState, owner: Owner | None, *, restarted: bool
) -> tuple[Literal["nothing", "wait", "finish"], str]:
    """Whether the box finishes what its own record says (restore, then rejoin once healthy),
    and why. A live newer chain owns the box and takes over what is out; a chain whose token
    is gone, whose rollout is gone or ended, or whose worker restarted, is finished here."""
    if state.idle:
        return "nothing", "the box is at rest"
    if state.draining and not restarted:
        return "wait", "it left its load balancers for a stop: it rejoins when it starts again"
    if owner is not None and owner.live:
        if owner.token != state.token:
            return "wait", f"rollout {owner.rollout} owns the box now: it rejoins what is out"
        if not restarted:
            return "wait", f"its chain in rollout {owner.rollout} goes on"
        return "finish", "the worker restarted in the middle of its chain"
    if owner is None:
        return "finish", "its token is gone: revoked, or lost with Redis's data"
    if owner.token != state.token:
        return "finish", f"the box's newer owner {owner.rollout} is gone or has ended"
    return "finish", f"its rollout {owner.rollout} is gone or has ended"


# The latest rollout of the type in one of these states stops every catch-up: a person decides.
HOLDS_CATCH_UP = ("halted", "paused", "rollback-pending")


@dataclass(frozen=True)
class CatchUpFacts:
    """What a box knows, at one moment, about itself and its type's rollouts."""

    current: str | None  # the type's current release
    behind: tuple[str, ...]  # apps of current whose running content differs from it
    fresh: bool  # no app container at all: never in service
    newer: str | None  # a release running here that is newer than current (never downgrade)
    made_current: str | None  # the rollout that made current, if the history still has it
    took_part: bool  # the box is in that rollout's record of boxes done
    latest: str | None  # the type's latest rollout (any kind)
    latest_state: str
    active: str | None  # the type's running rollout
    at_rest: bool  # the box's own record is finished and no step runs
    refused: str = ""  # the authorisation check's refusal ('' means allowed)
    frozen: str = ""  # the type's deploy freeze (`lock acquire`), as its record says


def decide_catch_up(f: CatchUpFacts) -> tuple[bool, str]:
    """Whether the box deploys its type's current release by itself now, and why (or why not)."""
    if f.current is None:
        return False, "its box type has no successful release yet"
    if not f.fresh and not f.behind:
        return False, ""  # up to date: nothing to say
    if not f.at_rest:
        return False, "waiting: the box is in the middle of a step or of its own record"
    if f.active is not None:
        return False, f"waiting: rollout {f.active} is running on its box type"
    if f.frozen:
        return False, f"held: its box type is {f.frozen}"
    if f.latest is not None and f.latest_state in HOLDS_CATCH_UP:
        return False, (
            f"held: the box type's latest rollout {f.latest} is {f.latest_state} "
            "(resume, roll back or abort it first)"
        )
    if f.newer is not None:
        return False, f"runs {f.newer}, newer than current {f.current}: never downgraded"
    if f.took_part and not f.fresh:
        return False, (
            f"it took part in {f.made_current}, which made {f.current} current: "
            "`orchestrator repair` it"
        )
    if f.refused:
        return False, f"not authorised: {f.refused}"
    if f.fresh:
        return True, f"a fresh box converges to current {f.current}"
    missed = f.made_current or "the rollout that made it current"
    return True, f"missed {missed}: {', '.join(f.behind)} catch up to current {f.current}"
