"""Which Redis errors no retry can help (a refused password, an untrusted certificate)."""

from __future__ import annotations

import ssl

import pytest
import redis

from orchestrator.engine.redisconn import _refused

pytestmark = pytest.mark.unit


def _raised_from(cause: BaseException, exc: BaseException) -> BaseException:
    """`exc` as redis-py raises it: inside the handler of `cause` (its __context__)."""
    try:
        try:
            raise cause
        except type(cause):
            raise exc  # noqa: B904 (the implicit context is the point)
    except BaseException as got:  # noqa: BLE001
        return got


def test_a_refused_password_or_certificate_is_final() -> None:
    assert _refused(redis.AuthenticationError("invalid username-password pair"))
    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    assert _refused(_raised_from(untrusted, redis.ConnectionError("Error 1 connecting")))


def test_a_blip_is_not() -> None:
    assert not _refused(redis.ConnectionError("Error 111 connecting: Connection refused"))
    assert not _refused(redis.TimeoutError("Timeout connecting to server"))
    reset = ConnectionResetError(104, "reset by peer")
    assert not _refused(_raised_from(reset, redis.ConnectionError("Error 104 while reading")))
    eof = ssl.SSLEOFError(8, "EOF occurred in violation of protocol")  # a server restarting
    assert not _refused(_raised_from(eof, redis.ConnectionError("Error 8 connecting")))
    assert not _refused(None)
