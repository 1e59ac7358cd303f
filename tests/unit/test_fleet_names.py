"""fleet.yml entries that could never apply, or apply as a guess, are refused with their path."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from orchestrator.config import problems_of
from schemas.fleet import FleetSettings

pytestmark = pytest.mark.unit


def problem(data: dict[str, object]) -> str:
    with pytest.raises(ValidationError) as caught:
        FleetSettings.model_validate(data)
    return "\n".join(str(p) for p in problems_of(caught.value))


def test_one_registry_spelled_in_two_cases_is_one_registry() -> None:
    entry = {"username": "u", "password": {"secret": "ssm:/p"}}
    said = problem({"registries": [{"registry": "R.example.com", **entry},
                                   {"registry": "r.example.com", **entry}]})
    assert "registries: registries[1] is r.example.com again (registries[0])" in said


def test_alarms_name_box_types_by_their_file_names() -> None:
    said = problem({"alarms": {"../x": ["high-5xx"]}})
    assert "alarms: alarms: '../x' is not a box type's name" in said
