"""`orchestrator keys`: make the Ed25519 key pair that signs releases and orders."""

from __future__ import annotations

from pathlib import Path

import click

from orchestrator.errors import ConfigError


@click.group()
def keys() -> None:
    """Signing keys: the coordinator signs with the private key; boxes trust public keys."""


def key_path(_ctx: click.Context, _param: click.Parameter, text: str) -> Path:
    """--out names a new file, as ORCHESTRATOR_SIGNING_KEY will name it: not empty, no blank at
    either end of it or of its name, no control character, not a directory."""
    value = Path(text)
    if not text:
        raise ConfigError("--out is empty: name the file to write, e.g. --out signing.key")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ConfigError(f"--out {text!r}: a control character in the path; remove it")
    if text != text.strip() or value.name != value.name.strip():
        raise ConfigError(f"--out {text!r}: a blank at the start or end of the name (the "
                          "environment variable would not name the same file); remove it")
    try:
        directory = value.is_dir()
    except OSError as exc:  # a name too long, a loop: nothing could be written there
        from schemas.refs import clipped

        raise ConfigError(f"--out {clipped(text)}: {exc.strerror}; name another file") from None
    if directory:
        raise ConfigError(f"--out {text}: a directory; name a file in it, e.g. "
                          f"--out {value / 'orchestrator-signing.key'}")
    return value


@keys.command()
@click.option(
    "--out",
    metavar="PATH",
    callback=key_path,
    default="orchestrator-signing.key",
    show_default=True,
    help="Where to write the private key (mode 600; never overwritten).",
)
def generate(out: Path) -> None:
    """Write a new private key to --out and print its public key (for ORCHESTRATOR_TRUSTED_KEYS)."""
    from orchestrator.engine.trust import generate as make_pair
    from orchestrator.engine.trust import write_private

    pem, public = make_pair()
    try:
        write_private(out, pem)
    except FileExistsError:
        raise ConfigError(
            f"--out {out}: a file is already there; keys are never overwritten "
            "(choose another path, or remove the old key once no box trusts it)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write it ({exc.strerror})") from None
    click.echo(f"private key written to {out} (mode 600): set ORCHESTRATOR_SIGNING_KEY={out}",
               err=True)
    click.echo(
        "public key (boxes: ORCHESTRATOR_TRUSTED_KEYS; list the old and new key, comma-"
        "separated, while rotating):",
        err=True,
    )
    click.echo(public)
