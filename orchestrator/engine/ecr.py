"""ECR pull credentials (both sides): tokens from get_authorization_token, kept by expiry."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from orchestrator.errors import ConfigError

# A token is fetched again this long before the expiry ECR gave it (ECR's last 12 hours).
REFRESH_MARGIN = 300.0


@dataclass
class _Cached:
    username: str
    password: str
    expires_at: float  # unix time, as ECR said


@dataclass
class EcrTokens:
    """Pull credentials per (account, region), fetched with get_authorization_token and kept
    until REFRESH_MARGIN before their expiry. A token that arrives already past that point
    (moto's say 2015) is used for the one pull that asked and not kept: the next pull asks
    again, once; nothing loops on it."""

    endpoint_url: str | None = None
    now: Callable[[], float] = time.time  # the clock expiries are compared with
    fetches: int = 0
    _cache: dict[tuple[str, str], _Cached] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def credentials(self, account: str, region: str) -> dict[str, str]:
        """{"username": "AWS", "password": <token>} for the registry of `account`/`region`."""
        clock = self.now
        with self._lock:
            got = self._cache.get((account, region))
            if got is not None and got.expires_at - REFRESH_MARGIN > clock():
                return {"username": got.username, "password": got.password}
            fresh = self._fetch(account, region)
            if fresh.expires_at - REFRESH_MARGIN > clock():
                self._cache[(account, region)] = fresh
            else:
                self._cache.pop((account, region), None)
            return {"username": fresh.username, "password": fresh.password}

    def _fetch(self, account: str, region: str) -> _Cached:
        # Imported here: boto3 costs every CLI start 0.1 s, and only an ECR registry needs it.
        from orchestrator.engine.aws import aws_client, call

        what = f"ECR {account}.dkr.ecr.{region}: get_authorization_token"
        client = aws_client("ecr", region, self.endpoint_url)
        try:
            # registryIds is deprecated but still names the account (cross-account pulls).
            answer = call(what, client.get_authorization_token, refused=ConfigError,
                          registryIds=[account])
        finally:
            client.close()
        self.fetches += 1
        data = (answer.get("authorizationData") or [{}])[0]
        try:
            user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        except (KeyError, ValueError):
            raise ConfigError(f"{what}: the answer holds no token") from None
        expires = data.get("expiresAt")
        at = expires.timestamp() if isinstance(expires, datetime) else float(expires or 0)
        return _Cached(user, password, at)
