"""Run `orchestrator` commands, each in its own forked process under RLIMIT_AS and RLIMIT_CPU.

A server process imports the CLI once, then forks one child per case (so a case costs a fork,
not an interpreter start); the child sets its limits, runs `main(argv)` and exits with its code.
Protocol: one JSON object per line on stdin ({"argv", "env"}), one per line on stdout
({"rc", "out", "err"}; rc < 0 is the signal that ended the child).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

MEMORY_LIMIT = 200 * 1024 * 1024
CPU_SECONDS = 10


def _child(argv: list[str], env: dict[str, str], out: int, err: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.environ.update(env)
    code = 99
    try:
        from orchestrator.cli import main

        code = main(argv)
    except BaseException:  # noqa: BLE001 - a traceback is what the test looks for
        import traceback

        traceback.print_exc()
        code = 98
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    import orchestrator.cli  # noqa: F401 - imported once, before any fork

    for line in sys.stdin:
        case = json.loads(line)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            pid = os.fork()
            if pid == 0:
                _child(case["argv"], case.get("env", {}), out.fileno(), err.fileno())
            _, status = os.waitpid(pid, 0)
            rc = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            answer = {
                "rc": rc,
                "out": out.read().decode(errors="replace")[-4000:],
                "err": err.read().decode(errors="replace")[-4000:],
            }
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


class LimitedCli:
    """The server, from the test's side: `run(argv, env)` -> {"rc", "out", "err"}."""

    def __init__(self, cwd: Path) -> None:
        root = Path(__file__).resolve().parents[2]
        env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.harness.limits"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=str(cwd),
            env=env,
            text=True,
        )

    def run(self, argv: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"argv": argv, "env": env or {}}) + "\n")
        self.proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return answer

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()


if __name__ == "__main__":
    serve()
