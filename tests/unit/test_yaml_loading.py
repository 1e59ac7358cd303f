"""The YAML layer on bad input: one clear error (file, line, field path, fix), never a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.config import load_box
from orchestrator.errors import InvalidFile
from orchestrator.yamlload import parse

# An explicit tag on text its constructor can't read: PyYAML raises KeyError, IndexError,
# AttributeError ... (whatever its code hits), not a YAML error.
UNREADABLE = ["!!bool", "!!bool maybe", '!!int ""', '!!int "-"', '!!int 0x', '!!float "_"',
              '!!float ""', '!!timestamp ""', "!!timestamp 2020-13-45", "!!binary 123",
              "!!seq abc", "!!set abc", "!!omap abc", "!!python/object x"]


@pytest.mark.parametrize("value", UNREADABLE)
def test_a_tag_on_text_it_cannot_read_is_refused_at_its_field(value: str) -> None:
    with pytest.raises(InvalidFile) as caught:
        parse(f"apps:\n  web:\n    env: [1, {{A: {value} }}]\n", "box.yml")
    assert str(caught.value).startswith("box.yml: line 3, column "), caught.value
    assert "apps.web.env[1].A: " in str(caught.value)
    assert "remove" in str(caught.value)


def test_a_value_yaml_types_wrongly_untagged_says_to_quote_it() -> None:
    with pytest.raises(InvalidFile, match="image: YAML reads '2020-13-45' as !!timestamp"):
        parse("image: 2020-13-45\n", "box.yml")


def test_a_bad_tag_in_fleet_yml_stops_a_rollout_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "boxes").mkdir()
    (tmp_path / "boxes" / "web.yml").write_text(
        "apps:\n  web:\n    image: web:1\n    containers: {web: {ports: ['8080:80']}}\n"
    )
    (tmp_path / "fleet.yml").write_text('step_deadline: !!int "-"\n')
    monkeypatch.chdir(tmp_path)
    for key, value in {"ORCHESTRATOR_BOXES_DIR": "boxes", "ORCHESTRATOR_REDIS_WAIT": "0",
                       "ORCHESTRATOR_REDIS_URL": "redis://127.0.0.1:1/1",
                       "ORCHESTRATOR_BROKER_URL": "redis://127.0.0.1:1/0"}.items():
        monkeypatch.setenv(key, value)
    assert main(["rollout", "web", "--reason", "test"]) == 2
    err = capsys.readouterr().err
    assert "fleet.yml: line 1, column 16: step_deadline: !!int takes" in err, err
    assert "Traceback" not in err


LINES = """\
name: &name web
apps:
  a.b:
    image: web:1
  *name : {image: x}
  ~ : {image: y}
  list:
    - {image: z}
    - image: w
      env: {A: 1}
"""


def test_lines_are_looked_up_for_the_paths_asked_and_their_parents_only() -> None:
    _, lines = parse(LINES, "box.yml")
    assert lines.get("apps.a.b.image") == 4  # a key holding a dot
    assert lines.get("apps.web.image") == 5  # a key given by an alias
    assert lines.get("apps.None.image") == 6  # a null key, as pydantic names it
    assert lines.get("apps.list[1].env.A") == 10
    assert lines.get("apps.list[1]") == 9  # a list item: its own first line
    assert "apps.nothing" not in lines
    assert sorted(dict(lines)) == ["apps", "apps.None", "apps.None.image", "apps.a.b",
                                   "apps.a.b.image", "apps.list", "apps.list[1]",
                                   "apps.list[1].env", "apps.list[1].env.A", "apps.web",
                                   "apps.web.image"]


def test_a_problem_deep_in_a_long_list_gets_its_line(tmp_path: Path) -> None:
    items = "".join("          - x\n" for _ in range(9_999))
    path = tmp_path / "box.yml"
    path.write_text("apps:\n  web:\n    image: web:1\n    containers:\n      web:\n"
                    f"        command:\n{items}          - 5\n")
    with pytest.raises(InvalidFile) as caught:
        load_box(path)
    assert "box.yml:10006: apps.web.containers.web.command[9999]: " in str(caught.value)
