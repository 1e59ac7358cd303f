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


def test_the_architecture_names_every_redis_key_and_readme_links_it() -> None:
    import inspect

    from schemas.contract import Keys

    root = Path(__file__).resolve().parents[2]
    doc = (root / "docs/architecture.md").read_text()
    assert "docs/architecture.md" in (root / "README.md").read_text()
    keys = Keys("")
    for name, method in inspect.getmembers(keys, inspect.ismethod):
        if name.startswith("_") or name == "heartbeat_pattern":
            continue
        args = ["<x>"] * (len(inspect.signature(method).parameters))
        template = method(*args).split("<x>")[0]
        assert f"`{template}" in doc, f"docs/architecture.md does not name the key {template}"
