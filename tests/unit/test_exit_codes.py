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


def test_the_command_exits_with_mains_code_and_every_line_written(tmp_path: Path) -> None:
    """The `orchestrator` command leaves through `os._exit` (no interpreter teardown): its
    output must still reach a pipe whole, its code must still be main's, and a reader that
    closed the pipe early must not turn the code into a traceback."""
    import subprocess
    import sys

    def command(*args: str, stdout: int = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], cwd=ROOT,
                              stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=60)

    web = str(ROOT / "examples" / "boxes" / "web.yml")
    ok = command("validate", web)
    assert ok.returncode == 0 and ok.stdout == cli_output(["validate", web]), ok.stderr
    helped = command("rollout", "--help")
    assert helped.returncode == 0 and helped.stdout.rstrip().endswith("Show this message and exit.")
    bad = tmp_path / "web.yml"
    bad.write_text("apps: {web: {containers: {web: {image: 'x:1', ports: ['99999:80']}}}}\n")
    refused = command("validate", str(bad))
    assert refused.returncode == 2 and str(bad) in refused.stderr, refused.stderr
    closed = subprocess.run(f"{sys.executable} -m orchestrator.cli --help | head -c 1",
                            shell=True, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in closed.stderr, closed.stderr


@pytest.mark.parametrize("watched", [False, True])
def test_a_profiled_or_traced_command_exits_through_the_interpreter(watched: bool) -> None:
    """Under a profiler (pyinstrument: `benchmarks/run.sh profile`) or coverage, the command
    exits normally, so they write their reports at exit; otherwise through `os._exit`."""
    import subprocess
    import sys

    hook = "sys.setprofile(lambda *a: None); " if watched else ""
    script = (f"import atexit, sys; atexit.register(lambda: print('exit handlers ran')); {hook}"
              "sys.argv = ['orchestrator', '--version']; from orchestrator.cli import run; run()")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert ("exit handlers ran" in done.stdout) is watched, done.stdout


def cli_output(args: list[str]) -> str:
    """What main() prints for `args`, in this process (the reference for the command's own)."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(args) == 0
    return out.getvalue()
