"""Load box.yml and fleet.yml files into models, or raise InvalidFile listing every problem."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from orchestrator.errors import ConfigError, InvalidFile
from orchestrator.settings import CoordinatorSettings
from orchestrator.yamlload import read_yaml
from schemas.boxfile import BoxSpec
from schemas.checks import Problem, check_box
from schemas.fleet import FleetSettings
from schemas.redaction import redact
from schemas.refs import NAME_RE

M = TypeVar("M", bound=BaseModel)

__all__ = ["read_yaml", "load_box", "load_fleet", "find_fleet", "validate_model", "problems_of"]

FLEET_FILE = "fleet.yml"


# Parts of pydantic error locations that name types, not fields.
def _is_type_tag(part: object) -> bool:
    return isinstance(part, str) and (
        "[" in part or part.startswith("function-") or part in {"str", "int", "float", "bool"}
    )


def format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if _is_type_tag(part):
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(err: Any) -> str:
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    kind = err.get("type")
    if kind == "extra_forbidden":
        return "unknown key; remove it or check its spelling (see `orchestrator schema`)"
    if kind == "missing":
        return "required key is missing; add it"
    if kind in ("dict_type", "model_type"):
        return f"{msg}; write a mapping (key: value lines)"
    return msg


def problems_of(exc: ValidationError) -> list[Problem]:
    """Each error at its field path, with its message only: never `input_value` (what was
    written, maybe a password), and a URL a validator quotes masked (schemas/redaction.py)."""
    # A dict keeps the first of each, in order: a list's `in` made 20,000 problems take 25 s.
    return list(dict.fromkeys(
        Problem(format_loc(tuple(err["loc"])), redact(_message(err))) for err in exc.errors()
    ))


def validate_model(model: type[M], data: Any, name: str, lines: dict[str, int]) -> M:
    if not isinstance(data, dict):
        raise InvalidFile(
            name, [Problem("", f"the top level must be a mapping, not {type(data).__name__}")]
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidFile(name, problems_of(exc), lines) from None


@dataclass(frozen=True)
class LoadedBox:
    path: Path
    box_type: str
    spec: BoxSpec


def load_fleet(path: Path) -> FleetSettings:
    data, lines = read_yaml(path)
    return validate_model(FleetSettings, data, str(path), lines)


def find_fleet(box_path: Path) -> Path | None:
    """fleet.yml beside the box file, or in its parent (boxes/ under a fleet folder). One that
    is there but unreadable (a dangling link, a link loop, a folder) is returned, for loading to
    refuse naming it: skipping it would deploy without its registries and services."""
    for folder in (box_path.parent, box_path.parent.parent):
        candidate = folder / FLEET_FILE
        if os.path.lexists(candidate):
            return candidate
    return None


def load_box(path: Path, fleet: FleetSettings | None = None) -> LoadedBox:
    """Load and fully check one box file; InvalidFile lists every problem found."""
    data, lines = read_yaml(path)
    spec = validate_model(BoxSpec, data, str(path), lines)
    problems = check_box(spec, fleet)
    if problems:
        raise InvalidFile(str(path), problems, lines)
    return LoadedBox(path, path.stem, spec)


def fleet_for(settings: CoordinatorSettings) -> FleetSettings | None:
    """The fleet.yml the coordinator uses: the configured one, or beside/above boxes/."""
    path = settings.fleet_file or find_fleet(settings.boxes_dir / "x.yml")
    return load_fleet(path) if path else None


def box_file(settings: CoordinatorSettings, box_type: str) -> Path:
    """boxes/<type>.yml: the type a name (never a path), the file there (else exit 2)."""
    if not NAME_RE.match(box_type):
        raise ConfigError(f"box type {box_type!r} must be a name, not a path")
    path = settings.boxes_dir / f"{box_type}.yml"
    if not path.is_file():
        known = sorted(p.stem for p in settings.boxes_dir.glob("*.yml"))
        raise ConfigError(
            f"no box type {box_type!r}: {path} does not exist "
            f"(box types in {settings.boxes_dir}: {', '.join(known) or 'none'})"
        )
    return path


def release_spec(
    settings: CoordinatorSettings, box_type: str, images: dict[str, str]
) -> tuple[BoxSpec, FleetSettings | None]:
    """boxes/<type>.yml with `--image` applied, fully checked; no service is asked."""
    path = box_file(settings, box_type)
    fleet = fleet_for(settings)
    spec = apply_overrides(load_box(path, fleet).spec, images, path)
    problems = check_box(spec, fleet)
    if problems:
        raise InvalidFile(f"{path} with --image", problems)
    return spec, fleet


def apply_overrides(spec: BoxSpec, images: dict[str, str], path: Path) -> BoxSpec:
    """`--image app=ref`: a new image for a known app, validated like the file itself."""
    if not images:
        return spec
    unknown = sorted(set(images) - set(spec.apps))
    if unknown:
        raise InvalidFile(
            str(path),
            [
                Problem(
                    "apps",
                    f"--image names unknown app(s) {', '.join(unknown)}; apps here: "
                    f"{', '.join(sorted(spec.apps))}",
                )
            ],
        )
    data = spec.model_dump(mode="json")
    for app, ref in images.items():
        data["apps"][app]["image"] = ref
    try:
        return BoxSpec.model_validate(data)
    except ValidationError as exc:
        raise InvalidFile(f"{path} with --image", problems_of(exc)) from None
