"""Ed25519 signing and verifying over canonical JSON; the coordinator signs, boxes verify."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from pydantic import BaseModel

from orchestrator.errors import ConfigError
from schemas.redaction import looks_like_key_text
from schemas.release import Release
from schemas.rollout import Policy
from schemas.trust import Current, Order, OrderKind, Sig, SignedCurrent, SignedOrder

# An order claims boxes for this long by default; a claimed box may take as long as it needs.
ORDER_TTL = 6 * 3600.0


def canonical(data: Any) -> bytes:
    """The one byte form that is signed: sorted keys, no spaces, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def payload(record: BaseModel, *exclude: str) -> bytes:
    return canonical(record.model_dump(mode="json", exclude=set(exclude)))


def public_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def parse_keys(text: str) -> list[str]:
    """ORCHESTRATOR_TRUSTED_KEYS: comma-separated public keys (two during a rotation)."""
    return [k.strip() for k in text.split(",") if k.strip()]


@dataclass(frozen=True)
class Signer:
    """The coordinator's private key: it signs here and is never written anywhere else."""

    key: Ed25519PrivateKey

    @property
    def public(self) -> str:
        return public_text(self.key.public_key())

    def sign(self, data: bytes) -> Sig:
        return Sig(key=self.public, sig=base64.b64encode(self.key.sign(data)).decode())

    def release(self, release: Release) -> Release:
        return release.model_copy(update={"signature": self.sign(payload(release, "signature"))})

    def order(
        self,
        kind: OrderKind,
        rollout_id: str,
        release: Release,
        policy: Policy,
        *,
        box_id: str = "",
        ttl: float = ORDER_TTL,
        now: float | None = None,
    ) -> SignedOrder:
        issued = time.time() if now is None else now
        order = Order(
            kind=kind,
            rollout_id=rollout_id,
            box_type=release.box_type,
            release_id=release.id,
            release_hash=release.hash,
            policy=policy,
            box_id=box_id,
            issued_at=issued,
            expires_at=issued + ttl,
        )
        return SignedOrder(order=order, sig=self.sign(payload(order)))

    def current(self, rollout_id: str, release: Release, seq: int | None = None) -> SignedCurrent:
        cur = Current(
            box_type=release.box_type,
            release_id=release.id,
            release_hash=release.hash,
            seq=time.time_ns() // 1000 if seq is None else seq,
            rollout_id=rollout_id,
        )
        return SignedCurrent(current=cur, sig=self.sign(payload(cur)))


def generate() -> tuple[bytes, str]:
    """A new key pair: the private key as unencrypted PKCS#8 PEM, and the public key text."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem, public_text(key.public_key())


def write_private(path: Path, pem: bytes) -> None:
    """Mode 600 from the first byte: the key is never readable by others, even briefly."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


# A PKCS#8 Ed25519 key in PEM is 119 bytes: a file far larger is not one (nor is /dev/zero).
_KEY_FILE_MAX = 64 * 1024
_SSM_NAME = re.compile(r"[A-Za-z0-9_.\-/:]{1,2048}\Z")  # a name, a path or an ARN (+ :version)
_VAR = "ORCHESTRATOR_SIGNING_KEY"
_MAKE = "make one with `orchestrator keys generate --out PATH`"


def load_signer(ref: str, aws: tuple[str, str | None] = ("us-east-1", None)) -> Signer:
    """ORCHESTRATOR_SIGNING_KEY: a path, `file:<path>` or `ssm:<parameter>` (a SecureString)."""
    pem = _ssm_key(ref, aws) if ref.startswith("ssm:") else _file_key(ref)
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        # The content is never shown: it is a private key, or meant to be.
        raise ConfigError(
            f"{_VAR}: {ref} is not an unencrypted Ed25519 private key in PEM; {_MAKE}"
        )
    return Signer(key)


def _file_key(ref: str) -> bytes:
    if not os.path.exists(ref) and looks_like_key_text(ref):
        # Never echoed: it is the private key.
        raise ConfigError(
            f"{_VAR} holds what looks like the text of a key, not where the key is (it is not "
            "shown): write the key to a file only you can read (mode 600) and set the variable "
            "to its path, `file:<path>` or `ssm:<parameter>`"
        )
    path = Path(ref.removeprefix("file:")).expanduser()
    try:
        # Non-blocking: opening a FIFO would wait for a writer; only a regular file is read.
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ConfigError(f"{_VAR}: {path} is not a regular file; {_MAKE}")
            pem = f.read(_KEY_FILE_MAX + 1)
    except OSError as exc:
        raise ConfigError(f"{_VAR}: cannot read {path} ({exc.strerror}); {_MAKE}") from None
    if len(pem) > _KEY_FILE_MAX:
        raise ConfigError(f"{_VAR}: {path} is over {_KEY_FILE_MAX // 1024} KiB: not a key; {_MAKE}")
    return pem


def _ssm_key(ref: str, aws: tuple[str, str | None]) -> bytes:
    name = ref.removeprefix("ssm:")
    if not _SSM_NAME.match(name):
        raise ConfigError(
            f"{_VAR}: after `ssm:` comes an SSM parameter's name (letters, digits, "
            "'_.-/:'), e.g. ssm:/orchestrator/signing-key"
        )
    from orchestrator.engine.aws import aws_client, call

    got = call(
        f"read the signing key {ref}",
        aws_client("ssm", *aws).get_parameter,
        refused=ConfigError,
        Name=name,
        WithDecryption=True,
    )
    return str(got["Parameter"]["Value"]).encode()


def check(sig: Sig | None, data: bytes, trusted: list[str]) -> str:
    """Why the signature does not stand ('' when it does): unsigned, unknown key, bad."""
    if sig is None:
        return "unsigned"
    if sig.key not in trusted:
        return f"signed by an unknown key {sig.key[:12]}… (not in ORCHESTRATOR_TRUSTED_KEYS)"
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(sig.key, validate=True)).verify(
            base64.b64decode(sig.sig, validate=True), data
        )
    except (InvalidSignature, ValueError):
        return "bad signature: the record was changed after it was signed"
    return ""


def check_release(release: Release, trusted: list[str]) -> str:
    why = check(release.signature, payload(release, "signature"), trusted)
    return f"release {release.id}: {why}" if why else ""


def check_order(signed: SignedOrder, trusted: list[str]) -> str:
    why = check(signed.sig, payload(signed.order), trusted)
    return f"order of {signed.order.rollout_id}: {why}" if why else ""


def check_current(signed: SignedCurrent, trusted: list[str]) -> str:
    why = check(signed.sig, payload(signed.current), trusted)
    return f"current record of {signed.current.box_type}: {why}" if why else ""
