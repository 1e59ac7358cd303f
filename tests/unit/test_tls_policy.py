"""The Redis TLS policy: a rediss:// URL is verified unless the loud insecure setting says not."""

from __future__ import annotations

import ssl

import pytest

from orchestrator.engine.tls import INSECURE_SETTING, TlsPolicy
from orchestrator.errors import ConfigError

pytestmark = pytest.mark.unit


def test_plain_redis_gets_no_tls_options() -> None:
    policy = TlsPolicy("/ca.crt")
    assert policy.redis_kwargs("redis://h:6379/0") == {}
    assert policy.broker_ssl("redis://h:6379/0") is None


def test_a_bare_rediss_url_is_verified_against_the_ca() -> None:
    policy = TlsPolicy("/etc/ca.crt")
    assert policy.redis_kwargs("rediss://h:6380/1") == {
        "ssl_cert_reqs": "required", "ssl_ca_certs": "/etc/ca.crt"}
    assert policy.broker_ssl("rediss://u:p@h:6380/0") == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/etc/ca.crt"}


def test_the_urls_own_files_win_and_reach_the_broker_too() -> None:
    url = "rediss://h:6380/0?ssl_ca_certs=/a/ca.pem&ssl_certfile=/a/c.pem&ssl_keyfile=/a/k.pem"
    assert TlsPolicy("/etc/ca.crt").broker_ssl(url) == {
        "ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/a/ca.pem",
        "ssl_certfile": "/a/c.pem", "ssl_keyfile": "/a/k.pem"}
    assert "ssl_ca_certs" not in TlsPolicy("/etc/ca.crt").redis_kwargs(url)


@pytest.mark.parametrize("value", ["none", "NONE", "optional", "CERT_NONE"])
def test_turning_checks_off_in_the_url_is_refused(value: str) -> None:
    url = f"rediss://h:6380/0?ssl_cert_reqs={value}"
    for call in (TlsPolicy().redis_kwargs, TlsPolicy().broker_ssl):
        with pytest.raises(ConfigError, match=INSECURE_SETTING):
            call(url)


def test_the_insecure_setting_turns_checks_off() -> None:
    policy = TlsPolicy(insecure=True)
    assert policy.redis_kwargs("rediss://h:6380/0?ssl_cert_reqs=none") == {"ssl_cert_reqs": "none"}
    assert policy.broker_ssl("rediss://h:6380/0") == {"ssl_cert_reqs": ssl.CERT_NONE}
