"""redact(): the one mask every shown error goes through; what it hides and what it keeps."""

from __future__ import annotations

import logging

import pytest

from orchestrator.engine import logs
from schemas.redaction import redact, validation_text

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        ("'https://u:hunter2@x.example/p'", "hunter2", "https://u:***@x.example/p"),
        ("https://ghp_Tok3n@github.com/o/r", "ghp_Tok3n", "https://***@github.com/o/r"),
        ("'https://hooks.slack.com/services/T0/B0/Tok'", "T0/B0/Tok", "https://hooks.slack.com/***'"),
        ("https://discord.com/api/webhooks/1/Tok", "Tok", "https://discord.com/***"),
        ("https://x.webhook.office.com/webhookb2/Tok", "Tok", "https://x.webhook.office.com/***"),
        ("https://ci.example/api/hooks/Tok now", "Tok", "https://ci.example/*** now"),
        ("ftp://x.example/w.lock?token=Tok&a=1", "Tok", "w.lock?token=***&a=1"),
        ("https://b.s3.amazonaws.com/o.whl?X-Amz-Signature=Tok", "Tok", "X-Amz-Signature=***"),
        ("redis://h/0?sentinel_password=Tok", "Tok", "sentinel_password=***"),
        ("-----BEGIN PRIVATE KEY-----\nMC4Tok\n-----END PRIVATE KEY-----", "MC4Tok", "***"),
        ("cannot read '-----BEGIN PRIVATE KEY-----\\nMC4Tok", "MC4Tok", "cannot read '"),
    ],
)
def test_redact_hides_the_secret_and_keeps_the_rest(text: str, secret: str, kept: str) -> None:
    shown = redact(text)
    assert secret not in shown
    assert kept in shown


@pytest.mark.parametrize(
    "text",
    [
        "registry.example.com:5000/team/app:1.2@sha256:" + "a" * 64,
        "Redis at redis://127.0.0.1:6379/1 does not answer",
        "provision.worker.lock.url: https://x.example/w.lock?sha=1",
        "file:/srv/secrets/app.env#KEY",
    ],
)
def test_redact_leaves_text_without_secrets_alone(text: str) -> None:
    assert redact(text) == text


def test_validation_text_names_fields_and_never_quotes_input_values() -> None:
    from pydantic import ValidationError

    from schemas.base import SecretRef

    with pytest.raises(ValidationError) as caught:
        SecretRef.model_validate({"secret": "https://hooks.slack.com/services/T/B/Tok",
                                  "url": "https://u:hunter2@x.example"})
    assert "hunter2" in str(caught.value)  # what pydantic itself shows
    shown = validation_text(caught.value)
    assert shown.startswith("secret: secret reference is a URL")
    assert "url: Extra inputs are not permitted" in shown
    assert "hunter2" not in shown and "Tok" not in shown


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_lines_are_masked_in_either_format(fmt: str) -> None:
    """A library's message (kombu's, redis-py's) may quote a URL with its password."""
    record = logging.LogRecord("kombu", logging.ERROR, __file__, 1,
                               "cannot connect to %s", ("redis://:hunter2@10.0.0.5:6379/0",), None)
    line = logs.formatter(fmt).format(record)
    assert "hunter2" not in line and "10.0.0.5:6379" in line
