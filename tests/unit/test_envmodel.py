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
