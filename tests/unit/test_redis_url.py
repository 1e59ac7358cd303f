"""The one Redis URL form for Sentinel: parsed once, for the state client and kombu alike."""

from __future__ import annotations

import pytest

from orchestrator.engine.redisurl import SentinelTarget, kombu_broker, parse_sentinel_url
from orchestrator.errors import ConfigError
from schemas.redaction import redact

URL = "sentinel://:S3cret@10.0.0.1:26379,10.0.0.2:26380,sent3/1?master_name=mymaster"


def test_a_sentinel_url_names_every_sentinel_the_master_and_the_database() -> None:
    got = parse_sentinel_url(URL)
    assert got == SentinelTarget(
        sentinels=(("10.0.0.1", 26379), ("10.0.0.2", 26380), ("sent3", 26379)),
        master_name="mymaster",
        db=1,
        password="S3cret",
    )
    assert got.wait_replicas == 1 and got.wait_timeout == 1.0
    assert "S3cret" not in repr(got)


def test_wait_settings_and_the_sentinels_password() -> None:
    got = parse_sentinel_url(
        "sentinel://u:p%40ss@h:1/0?master_name=m&wait_replicas=2&wait_timeout=0.5"
        "&sentinel_password=sp"
    )
    assert (got.username, got.password, got.sentinel_password) == ("u", "p@ss", "sp")
    assert (got.wait_replicas, got.wait_timeout, got.db) == (2, 0.5, 0)
    assert parse_sentinel_url("sentinel://h:1?master_name=m&wait_replicas=0").wait_replicas == 0
    assert parse_sentinel_url("sentinel://h:1?master_name=m&wait_timeout=.5").wait_timeout == 0.5


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("sentinel://h:1/1", "master_name is missing"),
        ("sentinel://h:1/x?master_name=m", "the database (the path) is not a number"),
        ("sentinel:///1?master_name=m", "no sentinel address"),
        ("sentinel://h:port/1?master_name=m", "sentinel address 1 is not HOST:PORT"),
        ("sentinel://a:1,h:99999/1?master_name=m", "sentinel address 2 is not HOST:PORT"),
        ("sentinel://h:1/1?master_name=m&master=x", "unknown parameter master"),
        ("sentinel://h:1/1?master_name=m&wait_replicas=one", "wait_replicas must be"),
        ("sentinel://h:1/1?master_name=m&wait_timeout=0", "wait_timeout more than 0"),
        ("sentinel://h:1/²?master_name=m", "the database (the path) is not a number"),
        ("sentinel://h:1/١?master_name=m", "the database (the path) is not a number"),
        ("sentinel://h:1/1?master_name=m&wait_replicas=١", "in digits"),
        ("sentinel://h:1/1?master_name=m&wait_replicas=-1", "in digits"),
        ("sentinel://h:1/1?master_name=m&wait_replicas=101", "wait_replicas must be 0-100"),
        ("sentinel://h:1/1?master_name=m&wait_timeout=nan", "in digits"),
        ("sentinel://h:1/1?master_name=m&wait_timeout=inf", "in digits"),
        ("sentinel://h:1/1?master_name=m&wait_timeout=1e9", "in digits"),
        ("sentinel://h:1/1?master_name=m&wait_timeout=61", "at most 60 seconds"),
        ("redis://h:1/1", "not a sentinel:// or sentinels:// URL"),
        ("sentinels://h:1/1?master_name=m&ssl_ca=x", "unknown parameter ssl_ca"),
    ],
)
def test_a_bad_sentinel_url_says_what_is_wrong_and_the_form(url: str, why: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_sentinel_url(url, "ORCHESTRATOR_BROKER_URL")
    text = str(err.value)
    assert text.startswith("ORCHESTRATOR_BROKER_URL: ") and why in text, text
    assert "expected sentinel://" in text


def test_a_bad_url_never_repeats_the_password() -> None:
    with pytest.raises(ConfigError) as err:
        parse_sentinel_url("sentinel://:Hunter2@h:1/1")
    assert "Hunter2" not in str(err.value)


def test_kombu_gets_one_url_per_sentinel_and_the_master_name_as_an_option() -> None:
    url, options = kombu_broker(URL.replace("/1?", "/0?") + "&sentinel_password=sp")
    assert url == (
        "sentinel://:S3cret@10.0.0.1:26379/0;sentinel://:S3cret@10.0.0.2:26380/0;"
        "sentinel://:S3cret@sent3:26379/0"
    )
    assert options == {"master_name": "mymaster", "sentinel_kwargs": {"password": "sp"}}


def test_a_plain_broker_url_is_kombus_as_it_is() -> None:
    assert kombu_broker("redis://h:6379/0") == ("redis://h:6379/0", {})


def test_redact_hides_every_password_of_a_sentinel_url() -> None:
    shown = redact(URL + "&sentinel_password=Sp1")
    assert "S3cret" not in shown and "Sp1" not in shown
    assert shown.startswith("sentinel://:***@10.0.0.1:26379,10.0.0.2:26380")


TLS_URL = ("sentinels://worker:pw@h1:26379,h2:26380/0?master_name=m&sentinel_username=su"
           "&sentinel_password=sp&ssl_ca_certs=/etc/ca.pem")


def test_sentinels_url_means_tls_to_the_sentinels_and_the_master() -> None:
    from orchestrator.engine.tls import TlsPolicy

    got = parse_sentinel_url(TLS_URL)
    assert got.tls and got.sentinel_username == "su" and got.sentinel_password == "sp"
    assert not parse_sentinel_url(URL).tls
    url, options = kombu_broker(TLS_URL, TlsPolicy(ca="/other/ca.pem"))
    assert url == "sentinel://worker:pw@h1:26379/0;sentinel://worker:pw@h2:26380/0"
    # The URL's own CA wins over the setting; the certificate is checked.
    assert options["sentinel_kwargs"] == {
        "username": "su", "password": "sp", "ssl": True, "ssl_cert_reqs": "required",
        "ssl_ca_certs": "/etc/ca.pem",
    }
    assert TlsPolicy(ca="/x").broker_ssl(TLS_URL)["ssl_ca_certs"] == "/etc/ca.pem"


def test_sentinels_url_without_verification_needs_the_loud_setting() -> None:
    from orchestrator.engine.tls import TlsPolicy

    off = TLS_URL + "&ssl_cert_reqs=none"
    with pytest.raises(ConfigError, match="ORCHESTRATOR_INSECURE_REDIS_TLS"):
        kombu_broker(off)
    _, options = kombu_broker(off, TlsPolicy(insecure=True))
    assert options["sentinel_kwargs"]["ssl_cert_reqs"] == "none"
    # A plain sentinel:// URL speaks no TLS to the sentinels.
    assert "ssl" not in kombu_broker(URL.replace("/1?", "/0?") + "&sentinel_password=sp")[1][
        "sentinel_kwargs"]



@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://x", "not a URL starting with redis://"),
        ("", "not a URL starting with redis://"),
        ("redis://127.0.0.1:notaport/1", "port is not a number from 1 to 65535"),
        ("redis://:Hunter2@127.0.0.1:99999/1", "port is not a number from 1 to 65535"),
        ("redis://u:Hun/ter2@h:6379/1", "must be percent-encoded"),
        ("redis://h:0/1", "port is not a number"),
        ("redis://h:6379/one", "database (the path) is not a number"),
        ("redis://h:6379/1?fo=1", "redis-py takes no parameter fo"),
        ("redis://h:6379/1?ssl_ca_certs=/ca.pem", "no parameter ssl_ca_certs in a redis://"),
        ("redis://h:6379/1?socket_timeout=soon", "Invalid value for 'socket_timeout'"),
        ("redis://h:6379/1?socket_timeout=nan", "socket_timeout must be a number in digits"),
        ("redis://h:6379/1?socket_timeout=-1", "socket_timeout must be a number in digits"),
        ("redis://h:6379/1?db=١", "db must be a whole number in digits"),
        ("redis://h:6379/1?health_check_interval=-5", "must be a whole number in digits"),
        ("redis://h:6379/١", "database (the path) is not a number"),
        ("unix://", "names no socket"),
        ("sentinel://:Hunter2@h:99999/1?master_name=m", "sentinel address 1"),
    ],
)
def test_a_url_redis_py_cannot_use_is_refused_without_repeating_it(url: str, why: str) -> None:
    from orchestrator.engine.redisurl import url_problem

    said = url_problem(url)
    assert why in said, said
    assert "Hunter" not in said and "ter2" not in said and "notaport" not in said


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/1", "redis://:pw@h/0", "redis://h", "redis:///1",
        "rediss://u:p%2Fw@h:6380/1?ssl_ca_certs=/ca.pem&ssl_cert_reqs=required",
        "redis://h:6379/1?socket_timeout=5&health_check_interval=10", "unix:///run/r.sock?db=2",
        URL, "sentinels://h:1/0?master_name=m&ssl_ca_certs=/ca.pem",
    ],
)
def test_every_url_form_the_readme_names_is_taken(url: str) -> None:
    from orchestrator.engine.redisurl import url_problem

    assert url_problem(url) == ""


def test_the_broker_takes_kombus_schemes_and_refuses_a_state_only_one() -> None:
    from orchestrator.engine.redisurl import url_problem

    assert url_problem("redis+socket:///run/r.sock", broker=True) == ""
    assert url_problem("rediss://h:6380/0?ssl_cert_reqs=required", broker=True) == ""
    assert "not a URL starting with" in url_problem("unix:///run/r.sock", broker=True)
    assert "database" in url_problem("redis://h:6379/zero", broker=True)
