"""The bad-input corpus: every file and command line is refused with exit 2, its token, no
traceback, each in its own process under RLIMIT_AS 200 MB and RLIMIT_CPU 10 s."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.engine.trust import generate, write_private
from tests.harness.limits import LimitedCli

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parents[1] / "data"
BAD = sorted(p for p in (DATA / "bad").glob("*.yml"))
# A corpus kept outside the repository (e.g. a reviewer's): every file must be refused cleanly.
OUTSIDE = os.environ.get("ORCHESTRATOR_BAD_CORPUS")
OUTSIDE_FILES = sorted(p for p in Path(OUTSIDE).iterdir() if p.is_file()) if OUTSIDE else []
# Nothing answers here: a command that connects before refusing fails with another exit code.
NOWHERE = {
    "ORCHESTRATOR_REDIS_URL": "redis://127.0.0.1:1/1",
    "ORCHESTRATOR_BROKER_URL": "redis://127.0.0.1:1/0",
    "ORCHESTRATOR_REDIS_WAIT": "0",
}
VALID = """apps:
  web:
    image: registry.example.com/web:1
    containers:
      web: {ports: ['8080:80'], health: {http: /health}}
"""


def expected_token(path: Path) -> str:
    sidecar = path.with_name(path.name + ".expect")
    if sidecar.exists():
        return sidecar.read_text().strip()
    first = path.read_bytes().split(b"\n", 1)[0].decode()
    assert first.startswith("# expect: "), f"{path.name}: no `# expect:` line and no sidecar"
    return first.removeprefix("# expect: ").strip()


def cli_lines() -> list[tuple[str, list[str]]]:
    out = []
    for line in (DATA / "bad" / "cli.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            token, args = line.split("\t", 1)
            out.append((token, shlex.split(args)))
    return out


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimitedCli]:
    root = tmp_path_factory.mktemp("corpus")
    (root / "boxes").mkdir()
    (root / "boxes" / "web.yml").write_text(VALID)
    runner = LimitedCli(root)
    yield runner
    runner.close()


def refused(answer: dict[str, Any], token: str) -> None:
    text = answer["out"] + answer["err"]
    assert "Traceback" not in text, text
    assert answer["rc"] == 2, f"exit {answer['rc']}: {text}"
    assert token in text, f"{token!r} not in: {text}"


def test_the_corpus_covers_every_class() -> None:
    assert len(BAD) >= 60
    assert len(cli_lines()) >= 20


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_a_bad_file_is_refused_with_its_token(cli: LimitedCli, path: Path) -> None:
    refused(cli.run(["validate", str(path)]), expected_token(path))


@pytest.mark.parametrize("path", OUTSIDE_FILES, ids=[p.name for p in OUTSIDE_FILES])
def test_a_file_of_the_outside_corpus_is_refused_cleanly(cli: LimitedCli, path: Path) -> None:
    answer = cli.run(["validate", str(path)])
    assert "Traceback" not in answer["err"], answer["err"]
    assert answer["rc"] in (0, 2), answer


@pytest.mark.parametrize(("token", "argv"), cli_lines(), ids=[" ".join(a) for _, a in cli_lines()])
def test_a_bad_command_line_is_refused_before_connecting(
    cli: LimitedCli, token: str, argv: list[str]
) -> None:
    env = dict(NOWHERE, ORCHESTRATOR_BOXES_DIR="boxes")
    while argv and re.fullmatch(r"[A-Z_]+=.*", argv[0]):
        key, value = argv.pop(0).split("=", 1)
        env[key] = value
    refused(cli.run(argv, env), token)


def test_a_good_command_line_gets_as_far_as_redis(cli: LimitedCli, tmp_path: Path) -> None:
    """The rig can fail: a command line with nothing wrong (its signing key included)
    reaches the closed port."""
    key = tmp_path / "signing.key"
    write_private(key, generate()[0])
    env = dict(NOWHERE, ORCHESTRATOR_BOXES_DIR="boxes", ORCHESTRATOR_SIGNING_KEY=str(key))
    answer = cli.run(["rollout", "web", "--reason", "test"], env)
    assert answer["rc"] != 2 and "Redis" in answer["err"], answer


def test_files_that_are_not_regular_are_refused(cli: LimitedCli, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yml"
    os.mkfifo(fifo)
    for path, token in (
        ("/dev/zero", "not a regular file"),
        (str(fifo), "not a regular file"),
        (str(tmp_path), "directory"),
        (str(tmp_path / "missing.yml"), "cannot read"),
    ):
        refused(cli.run(["validate", path]), token)


def test_a_huge_file_is_refused_unread(cli: LimitedCli, tmp_path: Path) -> None:
    path = tmp_path / "huge.yml"
    with path.open("w") as f:
        f.write("apps:\n  web:\n    image: web\n    containers: {web: {}}\n# ")
        f.write("x" * (9 * 1024 * 1024))
    refused(cli.run(["validate", str(path)]), "larger than")


def apps_file(n: int) -> str:
    lines = ["apps:"]
    for i in range(n):
        lines += [
            f"  app{i}:",
            f"    image: registry.example.com/app{i}:1",
            f"    containers: {{c: {{ports: ['{10000 + i}:80'], env: {{N: {i}}}}}}}",
        ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "name", ["merge_key.yml", "bom.yml", "min_healthy_number.yml", "20000-apps"]
)
def test_valid_odd_yaml_is_accepted(cli: LimitedCli, tmp_path: Path, name: str) -> None:
    if name == "20000-apps":
        path = tmp_path / "many.yml"
        path.write_text(apps_file(20_000))
    else:
        path = DATA / "good" / name
    answer = cli.run(["validate", str(path)])
    assert answer["rc"] == 0, answer
    assert answer["out"].rstrip().endswith(("8080", "9090", "29999")) and not answer["err"], answer


def test_an_error_in_a_big_deep_file_is_located_within_the_limit(
    cli: LimitedCli, tmp_path: Path
) -> None:
    # The line index once held a full dotted path per node: 940 MB for these 85 KB.
    keys = "".join(f"{{k{i}{'x' * 1000}: " for i in range(45))
    path = tmp_path / "deep.yml"
    path.write_text("apps: " + keys + "[" + ",".join(["1"] * 9_000) + "]" + "}" * 45 + "\n")
    refused(cli.run(["validate", str(path)]), "deep.yml:1: apps.k0x")


def test_a_list_too_long_for_any_field_is_refused_at_its_item(
    cli: LimitedCli, tmp_path: Path
) -> None:
    """Each bad item costs a validation error of its own (200,000 outgrew any memory limit):
    a list longer than any field takes is refused while it is read."""
    path = tmp_path / "long.yml"
    path.write_text(VALID.replace("health: {http: /health}",
                                  "command: [" + ",".join(["1"] * 200_000) + "]"))
    refused(cli.run(["validate", str(path)]), "command[10000]: a list of more than 10,000 items")


def test_a_file_with_many_problems_lists_the_first_fifty_and_counts_the_rest(
    cli: LimitedCli, tmp_path: Path
) -> None:
    path = tmp_path / "many.yml"
    path.write_text(VALID.replace("health: {http: /health}",
                                  "command: [" + ",".join(["1"] * 9_000) + "]"))
    answer = cli.run(["validate", str(path)])
    refused(answer, "many.yml: ... and 8950 more problem(s) not shown")
    text = answer["out"] + answer["err"]  # the rig keeps the last 4,000 characters
    assert "command[49]: " in text and "command[50]: " not in text
    assert "9000 problems in 1 file(s)" in answer["err"]
