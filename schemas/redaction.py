"""Secrets out of any text we show: URL passwords, credential parameters, webhook paths, keys."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

# The password of `scheme://user:password@host`; `scheme://token@host` (a token as the user).
_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", re.IGNORECASE)
_TOKEN_USER = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^:/@\s]+@", re.IGNORECASE)
# Query (or kombu `;`) parameters that carry a credential, by a word in their name:
# sentinel_password, access_token, api_key, X-Amz-Signature, X-Amz-Credential.
_SECRET_PARAM = re.compile(
    r"([?&;][\w-]*(?:password|passwd|pass|pwd|token|secret|key|sig|signature|auth|"
    r"credential|credentials)=)[^&\s]*",  # to the next parameter: a quote may be in it
    re.IGNORECASE,
)
# A webhook's URL is its credential: whoever has it may post. The path (and query) of one is
# hidden: hosts that serve webhooks (hooks.slack.com, *.webhook.office.com, Discord, Google
# Chat, Telegram bots, IFTTT), or any URL whose host or path names a hook.
_HOOK_HOST = (
    r"[^/\s'\"@]*hook[^/\s'\"@]*"
    r"|(?:[^/\s'\"@]+\.)?(?:discord(?:app)?\.com|chat\.googleapis\.com|api\.telegram\.org"
    r"|maker\.ifttt\.com)(?::\d+)?"
    r"|[^/\s'\"@]+(?=/[^\s'\"]*hook)"
)
_WEBHOOK = re.compile(
    rf"(\b[a-z][a-z0-9+.-]*://(?:[^/\s@'\"]*@)?(?:{_HOOK_HOST}))[/?#][^\s'\"]*",
    re.IGNORECASE,
)
# Key text: unterminated (cut off, or quoted with its newlines as `\n`) it hides the rest.
_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
    re.DOTALL,
)
# The body of a key without its PEM lines: 32 characters or more of base64 between slashes.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+]{32,}={0,2}")
HIDDEN = "***"


def redact(text: str) -> str:
    """`text` with every secret a URL or key text carries shown as ***: URL passwords (and
    tokens written as the user), credential parameters, webhook paths, private key text."""
    text = _PRIVATE_KEY.sub(f"[private key text, {HIDDEN}]", text)
    text = _WEBHOOK.sub(rf"\1/{HIDDEN}", text)
    text = _USERINFO.sub(rf"\1{HIDDEN}@", text)
    text = _TOKEN_USER.sub(rf"\1{HIDDEN}@", text)
    return _SECRET_PARAM.sub(rf"\1{HIDDEN}", text)


def looks_like_key_text(text: str) -> bool:
    """Key text (PEM, several lines, or one long base64 run) where a path to a key was
    expected: a path a file could not be read from, so it is not shown."""
    return (
        "-----BEGIN" in text
        or "PRIVATE KEY" in text
        or "\n" in text
        or any(_base64_run(part) for part in text.split("/"))
    )


def _base64_run(part: str) -> bool:
    # Random base64 mixes cases and digits; a file or folder name rarely does, at this length.
    return (
        _BASE64_RUN.fullmatch(part) is not None
        and any(c.isupper() for c in part)
        and any(c.islower() for c in part)
        and any(c.isdigit() for c in part)
    )


def validation_text(exc: ValidationError) -> str:
    """A pydantic error as `field.path: message; ...`, without the input values `str(exc)`
    quotes (`input_value=...`: a password or a webhook URL, as written)."""
    return redact("; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors()
    ))
