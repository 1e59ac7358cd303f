"""A worker's shared AWS clients: one per service, region and endpoint, kept only once the
credentials chain found credentials (made locally: no AWS call)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.engine import aws

pytestmark = pytest.mark.unit

ENDPOINT = "http://127.0.0.1:9"  # never called: making a client asks nothing


@pytest.fixture
def no_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3's chain finds nothing: no env keys, no files, no instance metadata."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(aws, "_shared", {})  # this test's own cache, not the process's


def test_one_client_per_service_once_credentials_are_found(
    no_credentials: None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = aws.shared_client("ssm", "us-east-1", ENDPOINT)
    second = aws.shared_client("ssm", "us-east-1", ENDPOINT)
    try:
        assert first is not second  # none kept: credentials may come later (IMDS at boot)
        assert aws._shared == {}
    finally:
        first.close()
        second.close()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    kept = aws.shared_client("ssm", "us-east-1", ENDPOINT)
    try:
        assert aws.shared_client("ssm", "us-east-1", ENDPOINT) is kept
        other = aws.shared_client("elbv2", "us-east-1", ENDPOINT)
        assert other is not kept and aws.shared_client("elbv2", "us-east-1", ENDPOINT) is other
        assert aws.shared_client("ssm", "eu-west-1", ENDPOINT) is not kept
        assert len(aws._shared) == 3
    finally:
        for client in aws._shared.values():
            client.close()
