"""start-first staging, table-tested: which staged containers go and which a box's turn adopts;
a staged container is nobody's serving version; when the old version stops. Pure."""

from __future__ import annotations

from dataclasses import replace

import pytest

from schemas.contract import Label
from worker.decide import app_facts, decide_swap, is_aside, is_staged
from worker.facts import ContainerFact, PortBinding
from worker.retire import decide_retire, retire_note
from worker.stage import decide_adopt, decide_unstage

pytestmark = pytest.mark.unit

R1, R2 = "rel-1", "rel-2"
HASH = {R1: "h1", R2: "h2"}


def fact(name: str = "b1.web.web.staged", *, release: str = R2, state: str = "running",
         container: str = "web", port: int = 8081, secret: str | None = None) -> ContainerFact:
    labels = {Label.MANAGED: "1", Label.BOX: "b1", Label.APP: "web", Label.CONTAINER: container,
              Label.SPEC_HASH: HASH[release], Label.RELEASE: release, Label.ROLE: "app"}
    if secret is not None:
        labels[Label.SECRET_HASH] = secret
    return ContainerFact(id=f"id-{name}", name=name, image="img", image_id="sha256:x",
                         state=state, labels=labels, created="",
                         ports=(PortBinding("", port, 8080),))


def note(rollout: str = "ro-2", release: str = R2, state: str = "ready") -> dict[str, str]:
    return {"rollout": rollout, "release": release, "spec_hash": HASH[release], "state": state}


# (case, noted, states, over, restarted, preparing, removed?, dropped notes)
UNSTAGE = [
    ("waiting for the box's turn", note(), "running", set(), False, None, False, []),
    ("in preflight still", note(), "preflight", set(), False, None, False, []),
    ("its rollout paused", note(), "paused", set(), False, None, False, []),
    ("its rollout baking", note(), "baking", set(), False, None, False, []),
    ("a restart keeps what waits", note(), "running", set(), True, None, False, []),
    ("halted before the turn", note(), "halted", set(), False, None, True, ["web"]),
    ("aborted", note(), "aborted", set(), False, None, True, ["web"]),
    ("preflight failed", note(), "failed", set(), False, None, True, ["web"]),
    ("rollout gone", note(), "", set(), False, None, True, ["web"]),
    ("claim refused or box done", note(), "running", {"ro-2"}, False, None, True, ["web"]),
    ("a newer rollout's preflight", note(), "running", set(), False, "ro-3", True, ["web"]),
    ("the same preflight again", note(), "preflight", set(), False, "ro-2", False, []),
    ("staging under way", note(state="starting"), "preflight", set(), False, None, False, []),
    ("staging cut short by a restart", note(state="starting"), "preflight", set(), True, None,
     True, ["web"]),
    ("a staging left unfinished, its rollout failed", note(state="starting"), "failed", set(),
     False, None, True, ["web"]),
    ("nothing recorded", None, "running", set(), False, None, True, []),
    ("recorded for another release", note(release=R1), "running", set(), False, None, True,
     []),
]


@pytest.mark.parametrize(("case", "noted", "state", "over", "restarted", "preparing", "removed",
                          "dropped"), UNSTAGE, ids=[c[0] for c in UNSTAGE])
def test_what_goes_of_what_is_staged(
    case: str, noted: dict[str, str] | None, state: str, over: set[str], restarted: bool,
    preparing: str | None, removed: bool, dropped: list[str],
) -> None:
    notes = {"web": noted} if noted else {}
    got = decide_unstage([fact()], notes, {"ro-2": state}, over, restarted=restarted,
                         preparing=preparing)
    assert [f.name for f, _ in got.remove] == (["b1.web.web.staged"] if removed else [])
    assert all(why for _, why in got.remove)
    assert list(got.drop) == dropped


def test_a_ready_note_whose_containers_are_gone_is_dropped_and_one_starting_is_not() -> None:
    assert decide_unstage([], {"web": note()}, {"ro-2": "running"}, set()).drop == ("web",)
    starting = {"web": note(state="starting")}
    assert decide_unstage([], starting, {"ro-2": "preflight"}, set()).drop == ()


def adopt(found: list[ContainerFact], **over: object) -> tuple[list[str], str]:
    kwargs: dict[str, object] = {"release_id": R2, "spec_hash": HASH[R2], "containers": ["web"],
                                 "ports": {8081}, "secret_hashes": {"web": "s1"}}
    kwargs.update(over)
    picked, why = decide_adopt(found, **kwargs)  # type: ignore[arg-type]
    return [f.name for f in picked], why


def test_the_turn_adopts_a_complete_running_staged_set_of_its_release() -> None:
    assert adopt([fact()]) == (["b1.web.web.staged"], "")
    assert adopt([fact(secret="s1")]) == (["b1.web.web.staged"], "")


@pytest.mark.parametrize(("found", "over", "words"), [
    ([], {}, "nothing staged"),
    ([fact(release=R1)], {}, "another release"),
    ([fact(secret="s0")], {}, "secret values"),
    ([fact()], {"containers": ["web", "worker"]}, "not the app's containers"),
    ([fact(), fact("b1.web.web2.staged")], {}, "not the app's containers"),
    ([fact(state="exited")], {}, "no longer runs"),
    ([fact(port=8080)], {}, "ports the serving version uses"),
])
def test_the_turn_starts_afresh_otherwise(
    found: list[ContainerFact], over: dict[str, object], words: str,
) -> None:
    picked, why = adopt(found, **over)
    assert picked == [] and words in why


def test_a_staged_container_is_nobodys_serving_version() -> None:
    serving = fact("b1.web.web", release=R1, port=8080)
    staged = fact()
    assert is_staged(staged) and is_aside(staged) and not is_aside(serving)
    facts = app_facts([serving, staged], box_id="b1", app="web", container_names=["web"])
    assert facts == [serving]
    # Its swap decides from the serving version alone: the staged one is neither kept nor
    # discarded (only the turn's adoption, or the sweep, acts on it).
    decision = decide_swap(facts, container_names=["web"], spec_hash=HASH[R2])
    assert decision.needed and decision.keep == (serving,) and decision.discard == ()


def test_the_old_version_stops_after_the_chain_only_while_it_is_aside_and_the_new_serves() -> None:
    old = fact("b1.web.web.prev", release=R1, port=8080)
    new = fact("b1.web.web", release=R2, port=8081)
    note = retire_note(HASH[R2], [old], 10)
    assert decide_retire([old, new], note) == (old,)
    # A restore put the old version back (renamed): it serves, nothing stops.
    back = fact("b1.web.web", release=R1, port=8080)
    assert decide_retire([back], {**note, "ids": back.id}) == ()
    # The new version does not run: the old one is what there is, it stays.
    assert decide_retire([old, fact("b1.web.web", state="exited")], note) == ()
    # A container the note does not name is not its to stop.
    assert decide_retire([replace(old, id="another"), new], note) == ()
