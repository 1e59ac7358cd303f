"""The base of every model (strict, immutable) and the secret reference all files share."""

from __future__ import annotations

import functools
import types
import typing
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from schemas.refs import check_secret_ref, octal_misread

_BOOLEAN = (
    "the YAML boolean {v} where a number is expected (YAML reads an unquoted "
    "yes/no/on/off/true/false as a boolean): write the number"
)


def _takes_number(annotation: object) -> bool:
    """An int or float field (optional or not) that does not also take a boolean."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    kinds = typing.get_args(annotation) if union else (annotation,)
    return bool not in kinds and any(k in (int, float) for k in kinds)


@functools.lru_cache(maxsize=512)
def _number_slot(annotation: object) -> str:
    """Where a field holds numbers: 'value', 'keys' and/or 'values' (of a dict), 'items' (of
    a list), or ''
    (once per annotation: every model validation asks)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict and len(args) == 2:
        return ("keys " if _takes_number(args[0]) else "") + (
            "values" if _takes_number(args[1]) else "")
    if origin in (list, tuple) and args:
        return "items" if _takes_number(args[0]) else ""
    return "value" if _takes_number(annotation) else ""


def _misread(item: object) -> str:
    """Why YAML's reading of `item` is not the number a number field wants ('' if it is)."""
    if isinstance(item, bool):
        return _BOOLEAN.format(v=str(item).lower())
    return octal_misread(item)


def _misread_in(value: object, annotation: object) -> str:
    """Where YAML read something else than the number `annotation` asks for ('' if nowhere):
    pydantic would take `true` as 1 (`stop_timeout: yes`: a one-second timeout), and YAML 1.1
    reads `010` as 8."""
    try:
        slot = _number_slot(annotation)
    except TypeError:  # an unhashable annotation holds no plain number
        return ""
    if isinstance(value, dict) and slot.startswith("keys") and (
            why := next((w for k in value if (w := _misread(k))), "")):
        return f"key {why}"
    if slot.endswith("values") and isinstance(value, dict):
        return next((f"{k}: {why}" for k, item in value.items() if (why := _misread(item))), "")
    if slot == "items" and isinstance(value, list | tuple):
        return next((f"item {i + 1}: {why}" for i, item in enumerate(value)
                     if (why := _misread(item))), "")
    return _misread(value) if slot == "value" else ""


class Strict(BaseModel):
    """Base of every model: unknown keys are errors, models are immutable, and a number
    field refuses a YAML boolean (which pydantic would read as 1 or 0) and an octal `010`."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_as_written(cls, v: object, info: ValidationInfo) -> object:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and (why := _misread_in(v, field.annotation)):
            raise ValueError(why)
        return v


class SecretRef(Strict):
    """An env value resolved on the box at start time, never written in box.yml."""

    secret: str = Field(
        description="'ssm:/param/name' (AWS SSM Parameter Store) or "
        "'file:/abs/path' / 'file:/abs/path#KEY' (a file on the box, or one KEY of an env file)"
    )

    @field_validator("secret")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        return check_secret_ref(v)


def reference_only(v: object) -> object:
    """A field that takes a secret reference only (a registry password, a webhook URL): a
    plain value there is the secret itself, so it is named as such and never shown."""
    if isinstance(v, str | int | float):
        raise ValueError(
            "a plain value where a secret reference belongs (its text is not shown: it may be "
            "the secret); store it in SSM as a SecureString and write {secret: 'ssm:/param/name'}"
            " (or {secret: 'file:/srv/secrets/app.env#KEY'})"
        )
    return v


# The optional reference of a field that must not hold the value itself.
OptionalRef = Annotated[SecretRef | None, BeforeValidator(reference_only)]
