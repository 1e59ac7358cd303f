"""Docs and code cannot drift: every worker setting is in the README."""

from __future__ import annotations

from pathlib import Path

from worker.settings import WorkerSettings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_worker_setting_is_documented() -> None:
    missing = [
        f"ORCHESTRATOR_{name.upper()}"
        for name in WorkerSettings.model_fields
        if f"`ORCHESTRATOR_{name.upper()}`" not in README
    ]
    assert not missing, f"README lacks {missing}"


def test_every_coordinator_setting_is_documented() -> None:
    from orchestrator.settings import CoordinatorSettings

    missing = [
        f"ORCHESTRATOR_{name.upper()}"
        for name in CoordinatorSettings.model_fields
        if f"`ORCHESTRATOR_{name.upper()}`" not in README
    ]
    assert not missing, f"README lacks {missing}"
