"""Swap and restore decisions, table-tested: facts about one app's containers in, what to do out."""

from __future__ import annotations

import pytest

from schemas.contract import Label
from worker.decide import SwapIntent, app_facts, decide_restore, decide_swap
from worker.facts import ContainerFact

NEW, OLD = "new-hash", "old-hash"


def fact(name: str, *, spec: str | None = None, state: str = "running", box: str = "b1",
         app: str = "web", container: str = "web", release: str = "r1") -> ContainerFact:
    labels = {}
    if spec is not None:  # None: a pre-orchestrator container, no labels at all
        labels = {Label.MANAGED: "1", Label.BOX: box, Label.APP: app, Label.CONTAINER: container,
                  Label.SPEC_HASH: spec, Label.RELEASE: release, Label.ROLE: "app"}
    return ContainerFact(id=f"id-{name}", name=name, image="img", image_id="sha256:x",
                         state=state, labels=labels, created="")


# (case, facts, needed, keep names, discard names, adopted)
CASES = [
    ("nothing runs", [], True, [], [], False),
    ("new spec runs", [fact("b1.web.web", spec=NEW)], False, [], [], False),
    ("old spec runs", [fact("b1.web.web", spec=OLD)], True, ["b1.web.web"], [], False),
    ("new spec exited", [fact("b1.web.web", spec=NEW, state="exited")], True, [],
     ["b1.web.web"], False),
    ("pre-orchestrator deploy is adopted", [fact("web", spec=None)], True, ["web"], [], True),
    ("swap finished, managed leftover .prev goes",
     [fact("b1.web.web", spec=NEW), fact("b1.web.web.prev", spec=OLD, state="exited")],
     False, [], ["b1.web.web.prev"], False),
    ("adopted leftover .prev stays for a manual clean-up",
     [fact("b1.web.web", spec=NEW), fact("web.prev", spec=None, state="exited")],
     False, [], [], False),
    ("interrupted: .prev kept, half-started new discarded",
     [fact("b1.web.web.prev", spec=OLD, state="exited"),
      fact("b1.web.web", spec=NEW, state="created")],
     True, ["b1.web.web.prev"], ["b1.web.web"], False),
    ("serving old + stale .prev: keep serving, discard stale",
     [fact("b1.web.web", spec=OLD), fact("b1.web.web.prev", spec="older", state="exited")],
     True, ["b1.web.web"], ["b1.web.web.prev"], False),
]


@pytest.mark.parametrize(("case", "facts", "needed", "keep", "discard", "adopted"), CASES,
                         ids=[c[0] for c in CASES])
def test_decide_swap(case: str, facts: list[ContainerFact], needed: bool, keep: list[str],
                     discard: list[str], adopted: bool) -> None:
    d = decide_swap(facts, container_names=["web"], spec_hash=NEW)
    assert d.needed is needed
    assert [f.name for f in d.keep] == keep
    assert sorted(f.name for f in d.discard) == sorted(discard)
    assert d.adopted is adopted
    if keep and not adopted:
        assert d.previous_hash in (OLD,) and d.previous_release == "r1"


def test_two_containers_one_missing_is_a_swap() -> None:
    facts = [fact("b1.web.web", spec=NEW)]
    d = decide_swap(facts, container_names=["web", "worker"], spec_hash=NEW)
    assert d.needed and [f.name for f in d.discard] == ["b1.web.web"]


def test_app_facts_ignores_other_boxes_apps_and_services() -> None:
    facts = [
        fact("b1.web.web", spec=NEW),
        fact("b2.web.web", spec=NEW, box="b2"),
        fact("b1.api.api", spec=NEW, app="api", container="api"),
        fact("web", spec=None),
        fact("unrelated", spec=None),
    ]
    names = [f.name for f in app_facts(facts, box_id="b1", app="web", container_names=["web"])]
    assert names == ["b1.web.web", "web"]


# The intent a swap from r1 (OLD) to r2 (NEW) noted before acting.
INTENT = SwapIntent(new_hash=NEW, new_release="r2", previous_hash=OLD, previous_release="r1")
FIRST = SwapIntent(new_hash=NEW, new_release="r2")  # nothing ran before this swap
NEW_WEB = fact("b1.web.web", spec=NEW, release="r2")

# (case, intent, facts, action, remove names, reinstate names, swap back to)
RESTORES = [
    ("killed before stopping the old version", INTENT, [fact("b1.web.web", spec=OLD)],
     "noop", [], [], None),
    ("killed between stop and rename", INTENT, [fact("b1.web.web", spec=OLD, state="exited")],
     "reinstate", [], ["b1.web.web"], None),
    ("killed after the rename, before the new started", INTENT,
     [fact("b1.web.web.prev", spec=OLD, state="exited")],
     "reinstate", [], ["b1.web.web.prev"], None),
    ("after the rename, the new one runs", INTENT,
     [fact("b1.web.web.prev", spec=OLD, state="exited"), NEW_WEB],
     "reinstate", ["b1.web.web"], ["b1.web.web.prev"], None),
    ("after the rename, the new one half-started", INTENT,
     [fact("b1.web.web.prev", spec=OLD, state="exited"),
      fact("b1.web.web", spec=NEW, state="created", release="r2")],
     "reinstate", ["b1.web.web"], ["b1.web.web.prev"], None),
    ("an adopted pre-orchestrator deploy is put back", INTENT,
     [fact("web.prev", spec=None, state="exited"), NEW_WEB],
     "reinstate", ["b1.web.web"], ["web.prev"], None),
    ("the new one runs, the previous is gone: swap back", INTENT, [NEW_WEB],
     "swap_back", [], [], "r1"),
    ("the new one runs, nothing ran before: remove it", FIRST, [NEW_WEB],
     "remove_new", ["b1.web.web"], [], None),
    ("nothing at all", INTENT, [], "noop", [], [], None),
    ("nothing at all, nothing ran before", FIRST, [], "noop", [], [], None),
]


@pytest.mark.parametrize(("case", "intent", "facts", "action", "remove", "reinstate", "back"),
                         RESTORES, ids=[c[0] for c in RESTORES])
def test_decide_restore(case: str, intent: SwapIntent, facts: list[ContainerFact], action: str,
                        remove: list[str], reinstate: list[str], back: str | None) -> None:
    d = decide_restore(facts, intent)
    assert d.action == action
    assert [f.name for f in d.remove] == remove
    assert [f.name for f in d.reinstate] == reinstate
    assert d.swap_back_to == back


def test_swap_intent_round_trips_through_its_note() -> None:
    note = INTENT.note()
    assert note == {"previous_hash": OLD, "previous_release": "r1", "adopted": "",
                    "new_hash": NEW, "new_release": "r2"}
    assert SwapIntent.from_note(note) == INTENT
    adopted = SwapIntent(new_hash=NEW, new_release="r2", adopted=True)
    assert adopted.note()["adopted"] == "1" and SwapIntent.from_note(adopted.note()) == adopted
