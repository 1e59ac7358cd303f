"""Which of a chain's next steps a message runs itself, and how an error there ends the chain.

The chains are the coordinator's own (orchestrator/engine/chains.py), carried as Celery
carries them in a message: the rest of the chain, last step first, as JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from celery import signals

from orchestrator.engine.celery_app import make_celery
from orchestrator.engine.chains import rollout_chain
from schemas.contract import StepRequest, TaskName
from worker import inline

STEPS = frozenset(t.value for t in (TaskName.PULL, TaskName.CLAIM, TaskName.LEAVE_LB,
                                    TaskName.SWAP, TaskName.RESTORE, TaskName.JOIN_LB,
                                    TaskName.ENSURE_SERVICES, TaskName.FINISH))
LIMITS = {"step_deadline": 120.0, "visibility_timeout": 300.0}


def request(box: str = "box1", rollout: str = "r1") -> StepRequest:
    return StepRequest(rollout_id=rollout, box_id=box, box_type="web", release_id="rel",
                       release_hash="h", changed_apps=["web", "worker"])


def message_chain(req: StepRequest) -> tuple[dict[str, Any], list[inline.Sig]]:
    """The first step's payload and the rest of its chain, as the first message carries them."""
    app = make_celery("redis://127.0.0.1:1/0")
    sigs = [json.loads(json.dumps(s)) for s in rollout_chain(app, req).tasks]
    return sigs[0]["args"][0], list(reversed(sigs[1:]))


def decide(chain: list[inline.Sig], payload: object, *, elapsed: float = 0.0,
           fault_step: str | None = None) -> inline.Next | None:
    return inline.next_step(chain, payload, steps=STEPS, elapsed=elapsed,
                            fault_step=fault_step, **LIMITS)


def test_a_message_runs_its_box_chain_to_the_end_in_order() -> None:
    payload, chain = message_chain(request())
    ran = []
    while (nxt := decide(chain, payload)) is not None:
        chain.pop()
        ran.append((nxt.step.value, nxt.payload.get("app"), nxt.rescued))
    assert chain == []
    assert ran == [
        ("deploy.claim", None, True), ("deploy.leave_lb", None, True),
        ("deploy.swap", "web", True), ("deploy.swap", "worker", True),
        ("deploy.restore", None, False), ("deploy.join_lb", None, False),
        ("deploy.ensure_services", None, True), ("deploy.finish", None, False),
    ]


def test_the_step_set_to_raise_goes_through_its_own_message() -> None:
    payload, chain = message_chain(request())
    assert decide(chain, payload, fault_step="deploy.claim") is None
    chain.pop()
    assert decide(chain, payload, fault_step="deploy.swap:worker") is not None  # leave_lb
    chain.pop()
    assert decide(chain, payload, fault_step="deploy.swap:worker") is not None  # swap web
    chain.pop()
    assert decide(chain, payload, fault_step="deploy.swap:worker") is None


@pytest.mark.parametrize(("elapsed", "runs"), [(179.9, True), (180.0, False), (600.0, False)])
def test_no_step_starts_here_that_could_outlast_the_visibility_timeout(
    elapsed: float, runs: bool
) -> None:
    payload, chain = message_chain(request())
    assert (decide(chain, payload, elapsed=elapsed) is not None) is runs


def test_another_box_rollout_queue_or_task_is_left_to_celery() -> None:
    payload, chain = message_chain(request())
    assert decide(chain, {**payload, "box_id": "box2"}) is None
    assert decide(chain, {**payload, "rollout_id": "r2"}) is None
    for change in ({"options": {**chain[-1]["options"], "queue": "elsewhere"}},
                   {"task": "deploy.preflight"}, {"immutable": False}, {"args": []}):
        assert decide([*chain[:-1], {**chain[-1], **change}], payload) is None
    assert decide([], payload) is None
    assert decide(chain, "not a payload") is None


def echo(payload: dict[str, Any]) -> dict[str, Any]:
    return payload


@dataclass
class BoundTask:
    """What run_rest reads of a bound Celery task: its request (with the chain) and its app, a
    real one with the step tasks registered and task events off (no broker here)."""

    chain: list[inline.Sig]
    request: Any = None
    app: Any = None
    ran: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.request = type("Req", (), {"chain": self.chain, "hostname": "h", "id": "m",
                                        "root_id": "m"})()
        self.app = make_celery("redis://127.0.0.1:1/0")
        self.app.conf.worker_send_task_events = False
        for name in STEPS:
            self.app.task(name=name, shared=False)(echo)


def test_each_step_run_here_is_told_to_the_task_signals_listeners() -> None:
    """The worker's /metrics counts steps from task_postrun: a step run here counts too."""
    payload, chain = message_chain(request())
    seen: list[tuple[str, str, object]] = []

    def listen(sender: Any = None, task_id: str = "", args: Any = (), retval: Any = None,
               state: str = "", **_: Any) -> None:
        seen.append((sender.name, args[0]["box_id"], state))

    signals.task_postrun.connect(listen, weak=False)
    try:
        inline.run_rest(BoundTask(chain), payload, 0.0, decide=lambda c, p, _e: decide(c, p),
                        run=lambda nxt: {"step": nxt.step.value, "outcome": "ok"},
                        rescue=lambda nxt, error: None)
    finally:
        signals.task_postrun.disconnect(listen)
    assert [name for name, _, _ in seen] == [
        "deploy.claim", "deploy.leave_lb", "deploy.swap", "deploy.swap", "deploy.restore",
        "deploy.join_lb", "deploy.ensure_services", "deploy.finish"]
    assert {(box, state) for _, box, state in seen} == {("box1", "SUCCESS")}


def test_an_error_in_a_step_run_here_rescues_that_step_and_ends_the_chain() -> None:
    payload, chain = message_chain(request())
    task = BoundTask(chain)
    rescued: list[tuple[str, str | None, str]] = []

    def run(nxt: inline.Next) -> dict[str, Any]:
        task.ran.append(nxt.step.value)
        if nxt.payload.get("app") == "worker":
            raise RuntimeError("boom")
        return {"step": nxt.step.value, "outcome": "ok"}

    def rescue(nxt: inline.Next, error: str) -> None:
        rescued.append((nxt.step.value, nxt.payload.get("app"), error))

    inline.run_rest(task, payload, 0.0, decide=lambda c, p, _e: decide(c, p), run=run,
                    rescue=rescue)
    assert task.ran == ["deploy.claim", "deploy.leave_lb", "deploy.swap", "deploy.swap"]
    assert rescued == [("deploy.swap", "worker", "RuntimeError: boom")]
    assert chain == []  # nothing after the error is sent


def test_an_error_in_a_step_without_an_errback_only_ends_the_chain() -> None:
    payload, chain = message_chain(request())
    task = BoundTask(chain)
    rescued: list[str] = []

    def run(nxt: inline.Next) -> dict[str, Any]:
        if nxt.step == TaskName.JOIN_LB:
            raise RuntimeError("boom")
        return {"step": nxt.step.value}

    inline.run_rest(task, payload, 0.0, decide=lambda c, p, _e: decide(c, p), run=run,
                    rescue=lambda nxt, error: rescued.append(error))
    assert rescued == [] and chain == []


def test_a_rescue_that_raises_is_logged_not_raised_into_the_task() -> None:
    payload, chain = message_chain(request())
    task = BoundTask(chain)

    def run(nxt: inline.Next) -> dict[str, Any]:
        raise RuntimeError("boom")

    def rescue(nxt: inline.Next, error: str) -> None:
        raise ConnectionError("redis gone")

    inline.run_rest(task, payload, 0.0, decide=lambda c, p, _e: decide(c, p), run=run,
                    rescue=rescue)  # does not raise
    assert chain == []
