"""Who this box is: from settings, or from EC2 instance metadata (IMDSv2) when unset."""

from __future__ import annotations

import urllib.error
import urllib.request

from orchestrator.errors import ConfigError
from schemas.contract import BOX_TYPE_TAG

TOKEN_TTL = "60"


def _imds(base: str, path: str, token: str, timeout: float) -> str:
    req = urllib.request.Request(
        f"{base}/latest/{path}", headers={"X-aws-ec2-metadata-token": token}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - fixed IMDS URL
        return str(resp.read().decode()).strip()


def resolve_identity(
    box_id: str | None, box_type: str | None, imds_url: str, timeout: float = 2.0
) -> tuple[str, str]:
    """(box id, box type). IMDS is not probed when both are set."""
    if box_id and box_type:
        return box_id, box_type
    try:
        put = urllib.request.Request(
            f"{imds_url}/latest/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": TOKEN_TTL},
        )
        with urllib.request.urlopen(put, timeout=timeout) as resp:  # noqa: S310
            token = resp.read().decode()
        box_id = box_id or _imds(imds_url, "meta-data/instance-id", token, timeout)
        box_type = box_type or _imds(
            imds_url, f"meta-data/tags/instance/{BOX_TYPE_TAG}", token, timeout
        )
    except (urllib.error.URLError, OSError) as exc:
        raise ConfigError(
            "set ORCHESTRATOR_BOX_ID and ORCHESTRATOR_BOX_TYPE: EC2 instance metadata at "
            f"{imds_url} did not answer ({exc}); on EC2, enable instance metadata tags and tag "
            f"the instance {BOX_TYPE_TAG}"
        ) from None
    return box_id, box_type
