"""`orchestrator-worker-env`, run as a command: worker.refs.json in, a root-only worker.env out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.aws.userdata import ENV_FILE, REFS_FILE, VENV, WORKER_ENV_COMMAND

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = "orchestrator-worker-env"


def entry_point() -> str:
    """The console script's `module:function`, as pip installs it from pyproject.toml."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    return str(scripts[SCRIPT])


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    """What pip's wrapper in VENV/bin does: import the entry point, exit with what it returns."""
    module, function = entry_point().split(":")
    code = f"import sys; from {module} import {function}; sys.exit({function}())"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker.bootenv", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


def refs_file(tmp_path: Path, secret_text: str) -> Path:
    secrets = tmp_path / "secrets.env"
    secrets.write_text(secret_text)
    refs = tmp_path / "worker.refs.json"
    refs.write_text(json.dumps({
        "ORCHESTRATOR_BOX_TYPE": "web",
        "ORCHESTRATOR_AWS_REGION": "us-east-1",
        "ORCHESTRATOR_BROKER_URL": {"secret": f"file:{secrets}#BROKER"},
    }))
    return refs


def test_the_user_data_runs_the_registered_console_script() -> None:
    assert entry_point() == "worker.bootenv:main"
    assert f"{VENV}/bin/{SCRIPT}" == WORKER_ENV_COMMAND
    assert ENV_FILE.endswith("worker.env") and REFS_FILE.endswith("worker.refs.json")


@pytest.mark.parametrize("run", [run_script, run_module], ids=["console-script", "module"])
def test_writes_plain_values_and_resolved_secrets_readable_by_root_only(
    tmp_path: Path, run: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    refs = refs_file(tmp_path, "BROKER=redis://:pw@10.0.0.5:6379/0\n")
    target = tmp_path / "worker.env"
    target.write_text("OLD=1\n")
    os.chmod(target, 0o644)
    done = run(str(refs), str(target))
    assert done.returncode == 0, done.stderr
    assert target.read_text() == (
        "ORCHESTRATOR_BOX_TYPE=web\nORCHESTRATOR_AWS_REGION=us-east-1\n"
        "ORCHESTRATOR_BROKER_URL=redis://:pw@10.0.0.5:6379/0\n"
    )
    assert os.stat(target).st_mode & 0o777 == 0o600  # the replaced file's mode, not the old
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "secrets.env", "worker.env", "worker.refs.json"]  # no temp file left


def test_a_multi_line_value_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    secret = tmp_path / "broker-url"
    secret.write_text("redis://a\nINJECTED=1\n")
    refs = tmp_path / "worker.refs.json"
    refs.write_text(json.dumps({"ORCHESTRATOR_AWS_REGION": "us-east-1",
                                "ORCHESTRATOR_BROKER_URL": {"secret": f"file:{secret}"}}))
    target = tmp_path / "worker.env"
    done = run_module(str(refs), str(target))
    assert done.returncode != 0
    assert "worker settings must be one line: ORCHESTRATOR_BROKER_URL" in done.stderr
    assert "INJECTED" not in done.stderr  # the message names the setting, never its value
    assert not target.exists()
    assert not (tmp_path / "worker.env.tmp").exists()


def test_an_unreadable_secret_and_bad_usage_fail_with_a_message(tmp_path: Path) -> None:
    refs = tmp_path / "worker.refs.json"
    refs.write_text(json.dumps({"ORCHESTRATOR_BROKER_URL": {"secret": "file:/nonexistent/x"}}))
    done = run_module(str(refs), str(tmp_path / "worker.env"))
    assert done.returncode == 1
    assert "ORCHESTRATOR_BROKER_URL: cannot read secret file /nonexistent/x" in done.stderr
    usage = run_module(str(refs))
    assert usage.returncode == 2 and "usage: orchestrator-worker-env" in usage.stderr


def test_a_value_written_as_a_reference_is_refused_without_showing_it(tmp_path: Path) -> None:
    refs = tmp_path / "worker.refs.json"
    refs.write_text(json.dumps({"ORCHESTRATOR_BROKER_URL": {"secret": "redis://:hunter2@r/0",
                                                            "note": "hunter2"}}))
    done = run_module(str(refs), str(tmp_path / "worker.env"))
    assert done.returncode == 1
    assert "ORCHESTRATOR_BROKER_URL: not a secret reference: secret: secret reference is a URL" \
        in done.stderr
    assert "hunter2" not in done.stderr  # str(ValidationError) would quote both input values


def test_a_refs_file_nested_too_deep_fails_with_a_message(tmp_path: Path) -> None:
    refs = tmp_path / "worker.refs.json"
    refs.write_text('{"ORCHESTRATOR_BOX_TYPE": ' + "[" * 5000 + "]" * 5000 + "}")
    done = run_module(str(refs), str(tmp_path / "worker.env"))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"cannot read {refs}: JSON nested too deep" in done.stderr
    assert not (tmp_path / "worker.env").exists()
