"""box.yml's `migrate:` task: its shape and its app."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from schemas.boxfile import BoxSpec
from schemas.checks import check_box

pytestmark = pytest.mark.unit

APPS = {"web": {"image": "reg/web", "containers": {"web": {}}}}


def test_a_command_string_is_split_like_a_shell_and_the_deadline_defaults() -> None:
    spec = BoxSpec.model_validate({"apps": APPS, "migrate": {"app": "web",
                                                             "command": "rake 'db:migrate now'"}})
    assert spec.migrate is not None
    assert spec.migrate.command == ["rake", "db:migrate now"] and spec.migrate.deadline == 600
    assert check_box(spec) == []


@pytest.mark.parametrize("migrate", [{"app": "web", "command": []},
                                     {"app": "web", "command": ["x"], "deadline": 0},
                                     {"app": "web", "command": ["x"], "deadline": 7200},
                                     {"command": ["x"]}])
def test_bad_shapes_are_refused(migrate: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        BoxSpec.model_validate({"apps": APPS, "migrate": migrate})


def test_the_app_must_be_in_the_file() -> None:
    spec = BoxSpec.model_validate({"apps": APPS, "migrate": {"app": "api", "command": ["x"]}})
    (problem,) = check_box(spec)
    assert problem.path == "migrate.app" and "web" in str(problem)
