"""Command-line arguments checked before any command connects or writes: names, policy, images."""

from __future__ import annotations

import re
from typing import Any

import click
from pydantic import ValidationError

from orchestrator.errors import ConfigError
from schemas.durations import MAX_SAID, MAX_SECONDS
from schemas.refs import NAME_RE, parse_image, shown
from schemas.rollout import Policy


def check_box_type(name: str) -> str:
    """A box type is a name (boxes/<name>.yml), never a path."""
    if not NAME_RE.match(name):
        raise ConfigError(
            f"box type {shown(name)} must be a name: letters, digits, '_', '.', '-', starting "
            "with a letter or digit (it names boxes/<type>.yml; not a path)"
        )
    return name


def release_id_arg(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback for a RELEASE id option: a name (it names Redis keys), never a path."""
    if value is not None and not ROLLOUT_ID_RE.match(value):
        raise click.BadParameter(
            f"release id {shown(value)} is not one: ids look like r1796316540482-ac20caa2 "
            "(`orchestrator history BOX_TYPE` lists them)"
        )
    return value


def box_types_arg(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
                  ) -> tuple[str, ...]:
    """Click callback for a repeated --box-type option."""
    for value in values:
        box_type_arg(ctx, param, value)
    return values


def listen_arg(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """HOST:PORT to serve on: an IPv4 address or a host name, and a port from 1 to 65535."""
    host, sep, port = value.rpartition(":")
    ok_host = host == "" or re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}", host) is not None
    if not (sep and ok_host and port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise click.BadParameter(
            f"{shown(value)}: write HOST:PORT with a port from 1 to 65535, e.g. 127.0.0.1:9464"
        )
    return value


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level_arg(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if value.upper() not in LOG_LEVELS:
        raise click.BadParameter(f"{shown(value)}: write one of {', '.join(LOG_LEVELS)}")
    return value.upper()


def box_type_arg(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Click callback for every BOX_TYPE argument: refused before anything connects."""
    try:
        return check_box_type(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


# A box type's name (NAME_RE, up to 63 characters), a kind, a time and a suffix.
ROLLOUT_ID_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,159}\Z")


def box_id_arg(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Click callback for every BOX_ID argument: a box id is a name (an EC2 instance id, or
    the worker's ORCHESTRATOR_BOX_ID), refused before anything connects."""
    if not NAME_RE.match(value):
        raise click.BadParameter(
            f"box id {shown(value)} is not one: letters, digits, '_', '.', '-' (e.g. "
            "i-0123456789abcdef0; `orchestrator status BOX_TYPE` lists them)"
        )
    return value


def check_text(flag: str, text: str, *, limit: int = 1000) -> str:
    """A free-text flag (a reason, a freeze message) is one printable line under `limit`
    characters: history, `lock status`, hooks and notifications show it as written."""
    if len(text) > limit:
        raise ConfigError(f"{flag} is {len(text)} characters: keep it under {limit}")
    if bad := next((c for c in text if not c.isprintable()), None):
        raise ConfigError(
            f"{flag} has the control character {bad!r}: write one line of plain text "
            "(history, `lock status` and notifications show it as written)"
        )
    return text


def rollout_id_arg(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Click callback for every ROLLOUT_ID argument: a rollout id is a name, never a path or
    a line of text (it names Redis keys), refused before anything connects."""
    if not ROLLOUT_ID_RE.match(value):
        raise click.BadParameter(
            f"rollout id {shown(value)} is not one: ids look like web-20261203-092329-2c45 "
            "(`orchestrator history BOX_TYPE` lists them)"
        )
    return value


# Numbers on the command line are ASCII digits: int() and float(), and so click's INT and
# FLOAT, read '١٠' as 10 (and float() takes 'nan', 'inf' and '1e9').
_WHOLE = re.compile(r"-?[0-9]+")
_DECIMAL = re.compile(r"-?([0-9]+(\.[0-9]*)?|\.[0-9]+)")


class Whole(click.IntRange):
    """A whole number in ASCII digits, within the range."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, str) and not _WHOLE.fullmatch(value.strip()):
            self.fail(f"{value!r} is not a whole number in digits, e.g. 20", param, ctx)
        return int(super().convert(value, param, ctx))


class Number(click.ParamType[float]):
    """A number in ASCII digits (e.g. 0.05): no exponent, no nan or inf."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        if not (isinstance(value, str) and _DECIMAL.fullmatch(value.strip())):
            self.fail(f"{value!r} is not a number in digits, e.g. 0.05", param, ctx)
        return float(value)


def seconds_arg(ctx: click.Context, param: click.Parameter, value: str) -> float:
    """Click callback for an option of seconds: above zero and at most MAX_SECONDS, in
    digits (inf and nan refused: nan passes click's FloatRange, failing every comparison)."""
    if not _DECIMAL.fullmatch(value.strip()):
        raise click.BadParameter(f"{value!r} is not a number of seconds in digits, e.g. 1 or 0.5")
    seconds = float(value)
    if not 0 < seconds <= MAX_SECONDS:
        raise click.BadParameter(f"{value!r}: write a number of seconds above 0, {MAX_SAID}")
    return seconds


def make_policy(canary: str, batch: str, max_failed: str, on_failure: str) -> Policy:
    """The policy flags, checked now: one line naming the flag, exit 2."""
    try:
        return Policy(canary=canary, batch=batch, max_failed=max_failed, on_failure=on_failure)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(str(err["msg"]).removeprefix("Value error, ")) from None


def parse_images(pairs: tuple[str, ...]) -> dict[str, str]:
    """`--image APP=REF` pairs, each reference checked as the file's would be."""
    out = {}
    for pair in pairs:
        app, sep, ref = pair.partition("=")
        shown = repr(pair) if len(pair) <= 100 else repr(pair[:100]) + "..."  # one line
        if not sep or not app or not ref:
            raise ConfigError(f"--image {shown}: write APP=IMAGE, e.g. --image gcweb=reg/gcweb:v2")
        if not NAME_RE.match(app):
            raise ConfigError(f"--image {shown}: {app[:64]!r} is not an app name")
        try:
            parse_image(ref.strip())
        except ValueError as exc:
            raise ConfigError(f"--image {shown}: {exc}") from None
        if app in out:
            raise ConfigError(f"--image names app {app!r} twice; give one image per app")
        out[app] = ref.strip()
    return out
