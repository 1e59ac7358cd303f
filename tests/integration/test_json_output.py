"""Every read command's --json is one JSON document (python -m json.tool takes it), with the
documented shape, and [] when there is nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

from tests.harness.rollout_fx import Fleet


def json_tool(text: str) -> object:
    run = subprocess.run([sys.executable, "-m", "json.tool"], input=text, capture_output=True,
                         text=True, timeout=30)
    assert run.returncode == 0, (text, run.stderr)
    return json.loads(text)


def test_read_commands_print_one_json_document(fleet_factory: Callable[..., Fleet]) -> None:
    fleet = fleet_factory(2)
    fleet.write(f"{fleet.images.repo}:v1")
    assert json_tool(fleet.cli("history", fleet.box_type, "--json").stdout) == []
    assert fleet.cli("rollout", fleet.box_type, "--reason", "first").returncode == 0
    fleet.wait_all_in_service()

    rows = json_tool(fleet.cli("status", fleet.box_type, "--json").stdout)
    assert isinstance(rows, list) and {r["box"] for r in rows} == {w.box_id for w in fleet.workers}
    (h,) = json_tool(fleet.cli("history", fleet.box_type, "--json").stdout)  # type: ignore[misc]
    assert h["state"] == "succeeded" and h["current"] and h["reason"] == "first"
    assert h["ok"] == h["total"] == 2 and h["command"].startswith("orchestrator")
    lock = json_tool(fleet.cli("lock", "status", fleet.box_type, "--json").stdout)
    assert lock == {"box_type": fleet.box_type, "abandoned": None, "frozen": None,
                    "holder": None}
    plan = json_tool(fleet.cli("plan", fleet.box_type, "--json").stdout)
    assert plan["changes"] is False  # type: ignore[index]
    # A box type with no file and nothing recorded is a misspelt name, not an empty fleet.
    for command in (["status"], ["history"], ["lock", "status"]):
        other = fleet.cli(*command, "nosuchtype", "--json")
        assert other.returncode == 2 and other.stdout == "", other
        assert "no box type 'nosuchtype'" in other.stderr and fleet.box_type in other.stderr
    # Its file gone, what is recorded of a type is still shown (a retired type's history).
    (fleet.boxes_dir / f"{fleet.box_type}.yml").rename(fleet.boxes_dir / "retired.yml.bak")
    (h,) = json_tool(fleet.cli("history", fleet.box_type, "--json").stdout)  # type: ignore[misc]
    assert h["reason"] == "first"
