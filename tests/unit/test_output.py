"""Results written where they cannot go: a full or closed stdout is said (exit 1, no traceback);
a reader that went away (`| head`) ends the command quietly (141, as SIGPIPE would)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.output import GuardedStdout

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
# The console script's own path: `run`, its final flush and os._exit included.
CODE = "from orchestrator.cli import run; run()"
COMMANDS = [["schema"], ["schema", "--fleet"], ["validate", "examples/boxes/web.yml"], ["--help"]]


def orchestrator(args: list[str], stdout: Any, **kw: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", CODE, *args], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env, timeout=60, **kw)


def close_stdout() -> None:
    os.close(1)  # `orchestrator schema >&-`


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
@pytest.mark.parametrize(
    ("where", "said"),
    [("full", "could not write the output to standard output: No space left on device"),
     ("closed", "could not write the output: standard output is closed")],
)
def test_output_that_cannot_be_written_is_said_once(args: list[str], where: str,
                                                     said: str) -> None:
    if where == "full" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    kw: dict[str, Callable[[], None]] = {"preexec_fn": close_stdout} if where == "closed" else {}
    with open("/dev/full" if where == "full" else os.devnull, "w") as out:
        done = orchestrator(args, out, **kw)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == f"ERROR (OutputFailed): {said}"  # once, no traceback


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_a_reader_gone_ends_the_command_quietly(args: list[str]) -> None:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        done = orchestrator(args, write)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, "")


def test_the_guard_answers_for_the_real_stream_where_it_does_not_write() -> None:
    """fileno, buffer and the like are the real stream's: code that asks for them still works."""
    real = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    guard = GuardedStdout(real)
    assert guard.buffer is real.buffer and guard.line_buffering == real.line_buffering
