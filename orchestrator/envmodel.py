"""Settings read from PREFIX_* environment variables into a pydantic model (the CLI's side)."""

from __future__ import annotations

import json
import os
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from orchestrator.errors import ConfigError

# Field types whose value is written as JSON in the variable, as pydantic-settings reads them
# (the worker still reads its settings through pydantic-settings, with its env file).
_JSON_ORIGINS = (list, set, tuple, dict, frozenset)
_EXAMPLE = """'["a", "b"]'"""


class EnvModel(BaseModel):
    """A model whose unset fields come from `env_prefix` + the field's name (any case), as
    pydantic-settings' BaseSettings does, without its import: about 30 ms of every CLI start.
    Keyword arguments win over the environment; other variables are ignored."""

    model_config = ConfigDict(extra="ignore", validate_default=True, allow_inf_nan=False)
    env_prefix: ClassVar[str] = ""

    def __init__(self, **values: Any) -> None:
        super().__init__(**{**from_env(type(self), os.environ), **values})


def from_env(model: type[EnvModel], environ: Mapping[str, str]) -> dict[str, Any]:
    """The model's fields set in `environ`; a JSON field's value parsed (ConfigError if not
    JSON). Pure."""
    lowered = {k.lower(): v for k, v in environ.items()}
    found: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        var = f"{model.env_prefix}{name}"
        if (raw := lowered.get(var.lower())) is None:
            continue
        if not _is_json(field.annotation):
            found[name] = raw
            continue
        found[name] = _json(var.upper(), raw)
    return found


def _json(var: str, raw: str) -> Any:
    """`raw` parsed, or ConfigError naming `var`: not JSON, or nested past the recursion limit
    (json raises RecursionError there, which is no ValueError)."""
    try:
        return json.loads(raw)
    except ValueError:
        why = f"not JSON ({raw[:60]!r})"
    except RecursionError:
        why = "JSON nested too deep"
    raise ConfigError(f"environment variable {var}: {why}; write e.g. {_EXAMPLE}, or unset it")


def _is_json(annotation: Any) -> bool:
    """A list, set, tuple, dict or model (or an optional one): JSON in the variable."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_json(a) for a in typing.get_args(annotation) if a is not type(None))
    if origin is not None:
        return origin in _JSON_ORIGINS
    return annotation in _JSON_ORIGINS or (
        isinstance(annotation, type) and issubclass(annotation, BaseModel)
    )
