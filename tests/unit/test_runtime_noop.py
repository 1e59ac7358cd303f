"""The benchmark runtime fits the ContainerRuntime protocol and keeps the swap's logic."""

from __future__ import annotations

import time

from orchestrator.engine.releases import make_release
from schemas.boxfile import BoxSpec
from schemas.contract import Outcome
from worker.facts import BoxEnv, ContainerRuntime
from worker.runtime_noop import NoopRuntime
from worker.swap import swap_app

SPEC = BoxSpec.model_validate({"apps": {"web": {"image": "r.example.com/web:1",
                                                "containers": {"web": {}}}}})


def test_noop_runtime_is_a_container_runtime() -> None:
    assert isinstance(NoopRuntime(), ContainerRuntime)


def test_swap_on_the_noop_runtime_then_again_is_a_noop() -> None:
    runtime = NoopRuntime()
    env = BoxEnv(box_id="b1", box_type="web", runtime=runtime, log_root="/nonexistent",
                 settle_time=0)
    release = make_release("web", SPEC, {"web": "r.example.com/web@sha256:" + "a" * 64})
    first = swap_app(env, release, "web", 1, time.monotonic() + 5, lambda _: None)
    again = swap_app(env, release, "web", 2, time.monotonic() + 5, lambda _: None)
    assert (first.outcome, again.outcome) == (Outcome.OK, Outcome.NOOP)
    assert [f.name for f in runtime.list()] == ["b1.web.web"]
