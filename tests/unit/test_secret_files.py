"""`file:` secret env files are read with python-dotenv: shell spellings work, and a line it
can't parse is an error naming the file and line (never the value)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import SecretUnavailable
from schemas.boxfile import SecretRef
from worker.secrets import resolve_secret

pytestmark = pytest.mark.unit


def secret(path: Path, key: str) -> str:
    return resolve_secret(SecretRef(secret=f"file:{path}#{key}"))


@pytest.mark.parametrize(
    ("line", "want"),
    [
        ("export DB=x1", "x1"),
        ('Q="a b" # note', "a b"),
        ("Q=plain # comment", "plain"),
        ('Q="line\\nbreak"', "line\nbreak"),
        ("  Q = spaced  ", "spaced"),
    ],
)
def test_shell_spellings_read_as_a_shell_means_them(tmp_path: Path, line: str, want: str) -> None:
    path = tmp_path / "app.env"
    path.write_text(f"# secrets\nOTHER=1\n{line}\n")
    assert secret(path, line.split("=")[0].replace("export", "").strip()) == want


def test_an_unparseable_line_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "app.env"
    path.write_text("A=1\nQ='unterminated\nB=2\n")
    with pytest.raises(SecretUnavailable, match=rf"{path} line 2: cannot parse") as err:
        secret(path, "B")
    assert "unterminated" not in str(err.value)


def test_a_missing_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "app.env"
    path.write_text("A=1\n")
    with pytest.raises(SecretUnavailable, match="has no line NOPE="):
        secret(path, "NOPE")
