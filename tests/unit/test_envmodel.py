"""The coordinator's settings read the environment as pydantic-settings did, without it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from orchestrator.envmodel import from_env
from orchestrator.errors import ConfigError
from orchestrator.settings import CoordinatorSettings, load_settings

pytestmark = pytest.mark.unit

# The same fields, read by pydantic-settings: what the CLI read before this module.
Twin = create_model(  # type: ignore[call-overload]
    "Twin",
    __base__=BaseSettings,
    __config__=None,
    **{name: (f.annotation, f) for name, f in CoordinatorSettings.model_fields.items()},
)
Twin.model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_", extra="ignore")
Twin.model_rebuild(force=True)

ENVIRONMENTS: list[dict[str, str]] = [
    {},
    {"ORCHESTRATOR_KEY_PREFIX": "a:", "ORCHESTRATOR_REDIS_WAIT": "2.5"},
    {"orchestrator_key_prefix": "lower:", "Orchestrator_Lease_Ttl": "12"},
    {"ORCHESTRATOR_INSECURE_REGISTRIES": '["reg.local", "10."]'},
    {"ORCHESTRATOR_INSECURE_REGISTRIES": "[]", "ORCHESTRATOR_ALLOW_NO_REASON": "yes"},
    {"ORCHESTRATOR_FLEET_SOURCE": "asg", "ORCHESTRATOR_BOXES_DIR": "/srv/boxes",
     "ORCHESTRATOR_FLEET_FILE": "/srv/fleet.yml", "ORCHESTRATOR_INSECURE_UNSIGNED": "0"},
    {"ORCHESTRATOR_BROKER_URL": "rediss://r:6380/0", "ORCHESTRATOR_REDIS_CA": "/ca.pem",
     "ORCHESTRATOR_INSECURE_REDIS_TLS": "off", "ORCHESTRATOR_HAPROXY_SOCKET": ""},
    {"ORCHESTRATOR_WORKER_ONLY_THING": "x", "OTHER": "y", "ORCHESTRATOR_": "z"},
]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_environment_reads_as_pydantic_settings_read_it(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for name in [k for k in __import__("os").environ if k.upper().startswith("ORCHESTRATOR")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert CoordinatorSettings().model_dump() == Twin().model_dump()


def test_a_keyword_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_KEY_PREFIX", "env:")
    assert CoordinatorSettings(key_prefix="kw:").key_prefix == "kw:"
    assert CoordinatorSettings().key_prefix == "env:"


def test_a_list_that_is_not_json_names_the_variable() -> None:
    env = {"ORCHESTRATOR_INSECURE_REGISTRIES": "localhost,127."}
    with pytest.raises(ConfigError, match="ORCHESTRATOR_INSECURE_REGISTRIES: not JSON"):
        from_env(CoordinatorSettings, env)


def test_only_the_models_own_prefix_is_read() -> None:
    found: dict[str, Any] = from_env(CoordinatorSettings, {
        "ORCHESTRATOR_KEY_PREFIX": "p:", "KEY_PREFIX": "no", "XORCHESTRATOR_REDIS_WAIT": "1",
    })
    assert found == {"key_prefix": "p:"}


def test_a_bad_value_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_ORDER_TTL", "-1")
    with pytest.raises(ConfigError, match="^environment variable ORCHESTRATOR_ORDER_TTL: "):
        load_settings()


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("ORCHESTRATOR_REDIS_URL", "http://x"),
        ("ORCHESTRATOR_REDIS_URL", "redis://u:Hunter2@127.0.0.1:99999/1"),
        ("ORCHESTRATOR_BROKER_URL", "redis://u:Hunter2@127.0.0.1:notaport/0"),
        ("ORCHESTRATOR_BROKER_URL", ""),
    ],
)
def test_a_url_setting_is_checked_at_load_without_its_password(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=f"^environment variable {var}: ") as caught:
        load_settings()
    assert "Hunter2" not in str(caught.value)


@pytest.mark.parametrize("where", ["ca", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile"])
def test_a_tls_file_that_cannot_be_read_is_bad_input_naming_its_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, where: str
) -> None:
    missing = tmp_path / "missing.pem"
    if where == "ca":
        monkeypatch.setenv("ORCHESTRATOR_REDIS_URL", "rediss://h:6380/1")
        monkeypatch.setenv("ORCHESTRATOR_REDIS_CA", str(missing))
        var = "ORCHESTRATOR_REDIS_CA"
    else:
        monkeypatch.setenv("ORCHESTRATOR_BROKER_URL", f"rediss://:pw@h:6380/0?{where}={missing}")
        var = "ORCHESTRATOR_BROKER_URL"
    with pytest.raises(ConfigError, match=f"^environment variable {var}: .*No such file"):
        load_settings()


def test_a_ca_that_holds_no_certificate_is_refused_and_plain_redis_needs_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate\n")
    monkeypatch.setenv("ORCHESTRATOR_REDIS_CA", str(garbage))
    assert load_settings().redis_ca == str(garbage)  # redis://: the CA is not used
    monkeypatch.setenv("ORCHESTRATOR_REDIS_URL", "rediss://h:6380/1")
    with pytest.raises(ConfigError, match="ORCHESTRATOR_REDIS_CA: .* holds no PEM certificate"):
        load_settings()


@pytest.mark.parametrize("raw", ["[" * 2000 + "]" * 2000, "[" * 100_000 + "]" * 100_000])
def test_json_nested_too_deep_is_bad_input_naming_the_variable(raw: str) -> None:
    # json.loads raises RecursionError there, which is no ValueError.
    env = {"ORCHESTRATOR_INSECURE_REGISTRIES": raw}
    with pytest.raises(ConfigError, match="ORCHESTRATOR_INSECURE_REGISTRIES: JSON nested too"):
        from_env(CoordinatorSettings, env)


@pytest.mark.parametrize("raw", ['[""]', '["localhost", " "]', '["\\t"]'])
def test_a_blank_insecure_registry_prefix_is_refused(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    # Every host starts with "": it would send every pull over plain HTTP.
    monkeypatch.setenv("ORCHESTRATOR_INSECURE_REGISTRIES", raw)
    with pytest.raises(ConfigError, match="ORCHESTRATOR_INSECURE_REGISTRIES: an entry is empty"):
        load_settings()


@pytest.mark.parametrize(
    ("var", "value"),
    [("ORCHESTRATOR_REDIS_WAIT", "1e308"), ("ORCHESTRATOR_HOOK_TIMEOUT", "86400.5"),
     ("ORCHESTRATOR_WATCH_INTERVAL", "1e5")],
)
def test_a_duration_setting_is_at_most_a_day(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    # ORCHESTRATOR_REDIS_WAIT=1e308 waited for Redis for ever.
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=f"^environment variable {var}: .* at most 86400 "):
        load_settings()
    monkeypatch.setenv(var, "86400")
    assert load_settings()
