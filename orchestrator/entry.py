"""The `orchestrator` command's entry point: the CLI is imported with the collector paused."""

from __future__ import annotations

import gc
from typing import NoReturn


def run() -> NoReturn:
    """Import the CLI, then run it. Its imports leave ~80,000 objects for the collector to
    track and no garbage; its passes over them cost 12-13 ms of every command's start
    (measured with gc.callbacks), so it waits, and what they made is frozen: later passes
    skip it."""
    gc.disable()
    try:
        from orchestrator import cli
    finally:
        gc.freeze()
        gc.enable()
    cli.run()


if __name__ == "__main__":
    run()
