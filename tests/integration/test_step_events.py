"""A step's start and end events travel in its journal scripts' round trips (step_begin.lua,
journal_record.lua), on a real Redis: the same events `Events.emit` wrote, the end one with
the outcome the journal kept, and no start for a step that does not run."""

from __future__ import annotations

import pytest

from orchestrator.engine.events import Announcement, Events
from orchestrator.engine.journal import Journal
from orchestrator.engine.redisconn import client_for
from schemas.contract import Keys, Outcome, StepResult
from tests.harness.redis_fx import ProductRedis

pytestmark = pytest.mark.integration


def journal_and_events(product_redis: ProductRedis) -> tuple[Journal, Events]:
    client, keys = client_for(product_redis.url), Keys(product_redis.prefix)
    return Journal(client, keys), Events(client, keys)


def announce(ev: Events, step: str, phase: str, app: str | None = None) -> Announcement:
    """The event of rollout r1, box b1, of type web, that a journal script appends."""
    return ev.announcement("web", rollout="r1", box="b1", app=app, step=step, phase=phase)


def events(ev: Events) -> list[dict[str, str]]:
    return [e for _, e in ev.read("web")]


def test_the_start_is_announced_while_the_step_runs_and_not_after(
    product_redis: ProductRedis,
) -> None:
    journal, ev = journal_and_events(product_redis)
    start = announce(ev, "deploy.swap", "start")
    counts = [journal.count_attempt("r1", "b1", "deploy.swap", None, start, 2) for _ in range(3)]
    assert counts == [1, 2, 3]
    # Two starts (the third attempt is over the most: it fails without running).
    assert events(ev) == [{"rollout": "r1", "box": "b1", "app": "", "step": "deploy.swap",
                           "phase": "start"}] * 2
    # most=0: a step skipped after a failure counts, and announces nothing.
    assert journal.count_attempt("r1", "b1", "deploy.restore", None, start, 0) == 1
    assert len(events(ev)) == 2


@pytest.mark.parametrize("started,ended", [
    (1796330628.6324644, 1796330628.633761),
    (1796330628.0, 1796330628.0005),  # a half at the third decimal: both round it alike
    (1700000000.123456, 1700000123.9876543),
    (0.0, 86399.9995),
])
def test_the_end_carries_the_recorded_result_as_emit_wrote_it(
    product_redis: ProductRedis, started: float, ended: float,
) -> None:
    journal, ev = journal_and_events(product_redis)
    result = StepResult(step="deploy.swap", app="web", rollout_id="r1", box_id="b1",
                        outcome=Outcome.FAILED, reason="health check: état 503 ✗",
                        started=started, ended=ended)
    end = announce(ev, "deploy.swap", "end", app="web")
    journal.record(result, end)
    # What emit wrote before (same fields, same order, the duration as Python formats it).
    ev.emit("web", rollout="r1", box="b1", app="web", step="deploy.swap", phase="end",
            outcome=result.outcome, reason=result.reason,
            duration=f"{result.ended - result.started:.3f}")
    scripted, emitted = events(ev)
    assert list(scripted.items()) == list(emitted.items())


def test_a_second_record_announces_the_outcome_the_journal_kept(
    product_redis: ProductRedis,
) -> None:
    journal, ev = journal_and_events(product_redis)
    end = announce(ev, "deploy.pull", "end")
    first = StepResult(step="deploy.pull", rollout_id="r1", box_id="b1", outcome=Outcome.OK,
                       started=10.0, ended=11.25)
    again = first.model_copy(update={"outcome": Outcome.FAILED, "reason": "late", "ended": 99.0})
    assert journal.record(first, end).outcome == Outcome.OK
    assert journal.record(again, end).outcome == Outcome.OK  # the first write wins
    assert [(e["outcome"], e["reason"], e["duration"]) for e in events(ev)] == [
        ("ok", "", "1.250"), ("ok", "", "1.250")]
