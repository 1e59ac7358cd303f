"""The swap decision, table-tested: facts about one app's containers in, what to do out."""

from __future__ import annotations

import pytest

from schemas.contract import Label
from worker.decide import app_facts, decide_swap
from worker.runtime import ContainerFact

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
