"""The base of every model (strict, immutable) and the secret reference all files share."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.refs import check_secret_ref


class Strict(BaseModel):
    """Base of every model: unknown keys are errors, models are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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
