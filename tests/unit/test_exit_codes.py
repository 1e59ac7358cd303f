"""README "Exit codes": the codes a script can branch on, provoked here without services (the
deploy (1) and lease (3) codes need a fleet: tests/integration/test_rollout.py provokes them)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import orchestrator.cli as cli
from orchestrator.errors import (
    ConfigError,
    DeployError,
    LeaseHeld,
    OrchestratorError,
    RolloutNotSucceeded,
    ServiceUnavailable,
)

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def test_the_table() -> None:
    assert OrchestratorError.exit_code == DeployError.exit_code == 1
    assert RolloutNotSucceeded.exit_code == 1
    assert ConfigError.exit_code == 2
    assert LeaseHeld.exit_code == 3
    assert ServiceUnavailable.exit_code == 4


def test_ok_and_bad_input(tmp_path: Path) -> None:
    assert cli.main(["validate", str(ROOT / "examples" / "boxes" / "web.yml")]) == 0
    bad = tmp_path / "web.yml"
    bad.write_text("apps: {web: {containers: {web: {image: 'x:1', ports: ['99999:80']}}}}\n")
    assert cli.main(["validate", str(bad)]) == 2


def test_infrastructure_unreachable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("ORCHESTRATOR_REDIS_URL", f"redis://127.0.0.1:{port}/1")
    monkeypatch.setenv("ORCHESTRATOR_REDIS_WAIT", "0")
    monkeypatch.setenv("ORCHESTRATOR_BOXES_DIR", str(tmp_path))
    assert cli.main(["status", "web"]) == 4


def test_interrupted(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "load_box", interrupt)
    assert cli.main(["validate", str(ROOT / "examples" / "boxes" / "web.yml")]) == 130
