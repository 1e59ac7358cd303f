"""Which members a box at rest puts back where its version runs: start-first HAProxy apps whose
serving version runs, nothing aside, nothing another kind of load balancer keeps. Pure."""

from __future__ import annotations

import pytest

from schemas.boxfile import BoxSpec
from schemas.contract import Label
from schemas.release import Release
from worker.facts import ContainerFact, PortBinding
from worker.realign import candidates

pytestmark = pytest.mark.unit


def release(rid: str, **web: object) -> Release:
    app: dict[str, object] = {
        "elb": "web", "lb_kind": "haproxy", "strategy": "start-first",
        "alternate_ports": {8080: 8081}, "image": "r.example.com/web:1",
        "containers": {"web": {"ports": ["8080:8080"]}},
    }
    app.update(web)
    spec = BoxSpec.model_validate({"apps": {"web": app, "side": {
        "image": "r.example.com/side:1", "containers": {"side": {}}}}})
    images = {a: f"r.example.com/{a}@sha256:" + "a" * 64 for a in spec.apps}
    return Release.model_validate({"id": rid, "box_type": "web", "spec": spec, "images": images,
                                   "created_at": 1.0, "hash": "h"})


def fact(name: str = "b1.web.web", *, rid: str = "r1", app: str = "web",
         state: str = "running") -> ContainerFact:
    labels = {Label.MANAGED: "1", Label.BOX: "b1", Label.APP: app, Label.CONTAINER: app,
              Label.RELEASE: rid, Label.ROLE: "app"}
    return ContainerFact(id=f"id-{name}", name=name, image="img", image_id="sha256:x",
                         state=state, labels=labels, created="",
                         ports=(PortBinding("", 8081, 8080),))


START_FIRST = {"r1": release("r1")}


@pytest.mark.parametrize(("case", "facts", "releases", "want"), [
    ("its serving version runs", [fact()], START_FIRST, [("r1", "web")]),
    ("two containers, one app", [fact(), fact("b1.web.web2")], START_FIRST, [("r1", "web")]),
    ("stopped", [fact(state="exited")], START_FIRST, []),
    ("only the old version, aside", [fact("b1.web.web.prev")], START_FIRST, []),
    ("only a staged next version", [fact("b1.web.web.staged")], START_FIRST, []),
    ("an app with no load balancer", [fact("b1.side.side", app="side")], START_FIRST, []),
    ("stop-first", [fact()], {"r1": release("r1", strategy="stop-first",
                                            alternate_ports={})}, []),
    ("ELBv2: its target stays where it was registered",
     [fact()], {"r1": release("r1", lb_kind="elbv2", lb_port=8080)}, []),
    ("a release the box could not read", [fact(rid="r9")], START_FIRST, []),
    ("an app the release does not have", [fact(app="gone")], START_FIRST, []),
])
def test_candidates(case: str, facts: list[ContainerFact], releases: dict[str, Release],
                    want: list[tuple[str, str]]) -> None:
    assert candidates(facts, releases) == want, case
