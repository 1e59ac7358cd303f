"""`keys generate --out`: a refused path writes nothing; a good one gets a key, mode 600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from orchestrator.cli import main

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("out", "said"), [
    ("", "is empty"),
    (" ", "a blank at the start or end"),
    ("signing.key ", "a blank at the start or end"),
    ("\tsigning.key", "control character"),
    ("a\nb", "control character"),
    (".", "a directory"),
    ("keys", "a directory"),
])
def test_a_bad_out_path_is_refused_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    out: str, said: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keys").mkdir()
    assert main(["keys", "generate", "--out", out]) == 2
    assert said in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["keys"] and not os.listdir(tmp_path / "keys")


def test_a_good_out_path_gets_a_private_key_readable_by_its_owner_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "my keys" / "signing.key"
    out.parent.mkdir()
    assert main(["keys", "generate", "--out", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in out.read_bytes()
    assert f"ORCHESTRATOR_SIGNING_KEY={out}" in capsys.readouterr().err
    assert main(["keys", "generate", "--out", str(out)]) == 2  # never overwritten
    assert "already there" in capsys.readouterr().err
