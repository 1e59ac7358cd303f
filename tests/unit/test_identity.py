"""Box identity: settings first; EC2 instance metadata only when they are unset."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from tests.harness.common import free_port
from worker.identity import resolve_identity
from worker.settings import WorkerSettings


def test_metadata_not_probed_when_id_and_type_are_set() -> None:
    # Nothing listens there: any probe would fail.
    dead = f"http://127.0.0.1:{free_port()}"
    assert resolve_identity("i-123", "web", dead) == ("i-123", "web")


def test_unset_id_without_metadata_is_a_clear_config_error() -> None:
    with pytest.raises(ConfigError, match="set ORCHESTRATOR_BOX_ID"):
        resolve_identity(None, "web", f"http://127.0.0.1:{free_port()}", timeout=0.5)


def test_settings_refuse_a_heartbeat_ttl_below_three_intervals() -> None:
    with pytest.raises(ValueError, match="at least 3 x heartbeat_interval"):
        WorkerSettings(heartbeat_interval=5, heartbeat_ttl=10)


def test_settings_refuse_a_step_deadline_above_visibility_timeout() -> None:
    with pytest.raises(ValueError, match="must exceed step_deadline"):
        WorkerSettings(step_deadline=300, visibility_timeout=300)


@pytest.mark.parametrize("box_id", ["a b", "../x", "", "x" * 64, "box\n1"])
def test_settings_refuse_a_box_id_that_is_not_a_name(box_id: str) -> None:
    with pytest.raises(ValueError, match="must be a name"):
        WorkerSettings(box_id=box_id)
    with pytest.raises(ValueError, match="must be a name"):
        WorkerSettings(box_id="i-0123456789abcdef0", extra_box_ids=["box2", box_id])


def test_a_bad_worker_setting_is_one_line_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import ValidationError

    from worker.main import settings_error

    monkeypatch.setenv("ORCHESTRATOR_HEARTBEAT_INTERVAL", "inf")
    with pytest.raises(ValidationError) as caught:
        WorkerSettings(box_id="box1")
    said = settings_error(caught.value)
    assert said.startswith("bad worker setting ORCHESTRATOR_HEARTBEAT_INTERVAL: ")
    assert "finite number" in said and "\n" not in said


@pytest.mark.parametrize(("raw", "words"), [
    ("/var/log/orchestrator:web", "a Docker bind (host:container:mode) can't carry"),
    ("var/log/orchestrator", "must be an absolute path"),
    ("/var/log/../etc", "'..' part"),
])
def test_a_log_root_no_bind_could_use_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, raw: str, words: str
) -> None:
    """Not at the first container's start: every log bind's host part begins with it."""
    from pydantic import ValidationError

    from worker.main import settings_error

    monkeypatch.setenv("ORCHESTRATOR_LOG_ROOT", raw)
    with pytest.raises(ValidationError) as caught:
        WorkerSettings(box_id="box1")
    said = settings_error(caught.value)
    assert said.startswith("bad worker setting ORCHESTRATOR_LOG_ROOT: ") and words in said


@pytest.mark.parametrize(
    ("var", "raw"),
    [
        ("ORCHESTRATOR_ALLOWED_HOST_PATHS", "[" * 2000 + "]" * 2000),
        ("ORCHESTRATOR_EXTRA_LABELS", '{"a":' * 50_000 + "1" + "}" * 50_000),
        ("ORCHESTRATOR_PROTECTED_PATHS", "/srv/keys,/srv/more"),
    ],
)
def test_a_worker_json_setting_that_is_not_json_is_a_usage_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, var: str, raw: str
) -> None:
    from click.testing import CliRunner

    from worker.main import cli

    monkeypatch.setenv(var, raw)
    result = CliRunner().invoke(cli, [], env={"ORCHESTRATOR_BOX_ID": "box1"})
    assert result.exit_code == 2, result.output
    assert f"bad worker setting {var}: bad JSON" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_json_nested_too_deep_in_the_env_file_names_its_setting(tmp_path: Path) -> None:
    from pydantic_settings import SettingsError

    from worker.main import json_setting_error

    env_file = tmp_path / "worker.env"
    env_file.write_text("ORCHESTRATOR_EXTRA_BOX_IDS=" + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(SettingsError) as caught:
        WorkerSettings(_env_file=env_file)  # type: ignore[call-arg]
    said = json_setting_error(caught.value)
    assert said.startswith("bad worker setting ORCHESTRATOR_EXTRA_BOX_IDS: bad JSON (JSON nested")


@pytest.mark.parametrize("name", ["step_deadline", "visibility_timeout", "settle_time"])
def test_a_worker_duration_setting_is_at_most_a_day(name: str) -> None:
    with pytest.raises(ValueError, match="at most 86400 seconds"):
        WorkerSettings(**{name: 1e300})  # type: ignore[arg-type]
