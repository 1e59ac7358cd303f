"""One version, from the package metadata: both entry points and the heartbeat report it."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version as dist_version

import pytest

from orchestrator.engine.version import DIST, version
from worker.heartbeat import WORKER_VERSION

pytestmark = pytest.mark.unit


def test_both_entry_points_and_the_heartbeat_say_the_installed_version() -> None:
    installed = dist_version(DIST)
    assert version() == WORKER_VERSION == installed
    for module, prog in (("orchestrator.cli", "orchestrator"), ("orchestrator.entry",
                         "orchestrator"), ("worker.main", "orchestrator-worker")):
        run = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True,
                             text=True, timeout=60)
        assert run.returncode == 0 and run.stdout == f"{prog} {installed}\n", run
