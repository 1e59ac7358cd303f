"""Which stream entries are lifecycle events, and the notification targets in fleet.yml."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from orchestrator.notifier import lifecycle
from schemas.fleet import LIFECYCLE, Notification

pytestmark = pytest.mark.unit


def kinds(rid: str) -> str:
    return "rollback" if rid.startswith("rb") else "rollout"


@pytest.mark.parametrize("entry,event", [
    ({"step": "rollout", "phase": "start", "rollout": "r1"}, "started"),
    ({"step": "rollout", "phase": "end", "outcome": "succeeded", "rollout": "r1"}, "succeeded"),
    ({"step": "rollout", "phase": "end", "outcome": "succeeded", "rollout": "rb1"},
     "rolled-back"),
    ({"step": "rollout", "phase": "end", "outcome": "rollback-pending", "rollout": "r1"},
     "halted"),
    ({"step": "rollout", "phase": "end", "outcome": "abandoned", "rollout": "r1"}, "abandoned"),
    ({"step": "deploy.swap", "phase": "end", "outcome": "ok", "rollout": "r1"}, None),
    ({"step": "rollout", "phase": "end", "outcome": "paused", "rollout": "r1"}, None),
    ({"step": "rollout", "phase": "start"}, None),
])
def test_lifecycle_events(entry: dict[str, str], event: str | None) -> None:
    found = lifecycle({**entry, "box_type": "web"}, kinds)
    assert (found.event if found else None) == event


def test_a_target_is_a_webhook_or_a_topic() -> None:
    hook = Notification.model_validate({"webhook": {"secret": "ssm:/orch/hook"}})
    assert hook.events == list(LIFECYCLE)
    Notification.model_validate({"sns": "arn:aws:sns:us-east-1:123456789012:deploys",
                                 "events": ["halted"]})
    for bad in ({}, {"sns": "deploys"}, {"webhook": "https://hooks.example/x"},
                {"sns": "arn:aws:sns:us-east-1:123456789012:d", "webhook": {"secret": "ssm:/x"}},
                {"sns": "arn:aws:sns:us-east-1:123456789012:d", "events": ["exploded"]}):
        with pytest.raises(ValidationError):
            Notification.model_validate(bad)
