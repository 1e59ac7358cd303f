"""Load box.yml and fleet.yml files into models, or raise InvalidFile listing every problem."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from orchestrator.errors import InvalidFile
from schemas.boxfile import BoxSpec
from schemas.checks import Problem, check_box
from schemas.fleet import FleetSettings

M = TypeVar("M", bound=BaseModel)

FLEET_FILE = "fleet.yml"


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _mapping(
    loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False
) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}: each key may appear once", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)

# YAML 1.1 reads an unquoted `- 22:22` as the base-60 number 1342: a silent wrong port.
# Resolve ints as YAML 1.2 does (no base 60), so `22:22` stays the string it looks like.
_UniqueKeyLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:int"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)


def _line_index(node: yaml.Node | None, prefix: str = "") -> dict[str, int]:
    """Field path -> 1-based line, from the YAML node tree, for error messages."""
    out: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            path = f"{prefix}.{k.value}" if prefix else str(k.value)
            out[path] = k.start_mark.line + 1
            out.update(_line_index(v, path))
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            path = f"{prefix}[{i}]"
            out[path] = v.start_mark.line + 1
            out.update(_line_index(v, path))
    return out


def read_yaml(path: Path) -> tuple[Any, dict[str, int]]:
    """Parse one YAML file; errors name the file, line and column."""
    name = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidFile(name, [Problem("", f"cannot read the file: {exc.strerror}")]) from None
    if b"\x00" in raw:
        raise InvalidFile(name, [Problem("", "this is not a text file; give a YAML box file")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidFile(name, [Problem("", "this is not UTF-8 text; save it as UTF-8")]) from None
    if not text.strip() or all(
        not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()
    ):
        raise InvalidFile(name, [Problem("", "the file is empty; it needs at least `apps:`")])
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
        lines = _line_index(yaml.compose(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = exc.problem or str(exc)
        raise InvalidFile(name, [Problem("", f"YAML syntax error at {at}{what}")]) from None
    except yaml.YAMLError as exc:
        raise InvalidFile(name, [Problem("", f"YAML error: {exc}")]) from None
    return data, lines


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
    out: list[Problem] = []
    for err in exc.errors():
        problem = Problem(format_loc(tuple(err["loc"])), _message(err))
        if problem not in out:
            out.append(problem)
    return out


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
    """fleet.yml beside the box file, or in its parent (boxes/ under a fleet folder)."""
    for folder in (box_path.parent, box_path.parent.parent):
        candidate = folder / FLEET_FILE
        if candidate.is_file():
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
