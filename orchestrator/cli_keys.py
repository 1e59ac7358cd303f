"""`orchestrator keys`: make the Ed25519 key pair that signs releases and orders."""

from __future__ import annotations

from pathlib import Path

import click

from orchestrator.errors import ConfigError


@click.group()
def keys() -> None:
    """Signing keys: the coordinator signs with the private key; boxes trust public keys."""


@keys.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("orchestrator-signing.key"),
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
