"""The YAML layer on bad input: one clear error (file, line, field path, fix), never a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
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
