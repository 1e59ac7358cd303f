"""Nothing printed is a secret: a bad input that holds one (a password, a webhook URL, key
text) is refused with exit 2, its file and field path, and a fix, never the secret itself.
The corpus (tests/data/bad) can only say what must appear; this says what must not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from orchestrator.engine.trust import generate, load_signer
from orchestrator.errors import ConfigError
from tests.harness.limits import LimitedCli

pytestmark = pytest.mark.unit

NOWHERE = {
    "ORCHESTRATOR_REDIS_URL": "redis://127.0.0.1:1/1",
    "ORCHESTRATOR_BROKER_URL": "redis://127.0.0.1:1/0",
    "ORCHESTRATOR_REDIS_WAIT": "0",
}
PW = "hunter2SuperSecret"
HOOK = "https://hooks.slack.com/services/T0SECRET/B0SECRET/XoXbTok3n"
SHA = "a" * 64
SERVICES = "services:\n  rsyslog: {image: registry.example.com/rsyslog:1}\n"
BOX = """services: [rsyslog]
apps:
  web:
    image: registry.example.com/web:1
    containers:
      web: {ports: ['8080:80'], health: {http: /health}}
"""


class Case(NamedTuple):
    name: str
    file: str  # "fleet.yml" or "box.yml": which one holds the bad input
    text: str
    path: str  # the field path the message must name
    fix: str  # a fragment of the fix the message must give
    secrets: tuple[str, ...]  # none of these may be printed


def registry(password: str, host: str = "r.example.com") -> str:
    return SERVICES + f"registries: [{{registry: '{host}', username: u, password: {password}}}]\n"


def webhook(value: str) -> str:
    return SERVICES + f"notifications: [{{webhook: {value}}}]\n"


def worker(broker: str = "{secret: 'ssm:/b'}", wheel: str = "https://x.example/o.whl",
           lock: str = "https://x.example/w.lock", more: str = "") -> str:
    return (
        "apps:\n  web: {image: a, containers: {web: {ports: [8000]}}}\n"
        "provision:\n  ami: ami-0abc1234def567890\n  subnets: [subnet-0aaa1111bbbb22223]\n"
        f"  worker:\n    broker_url: {broker}\n"
        f"    wheel: {{url: '{wheel}', sha256: {SHA}}}\n"
        f"    lock: {{url: '{lock}', sha256: {SHA}}}\n{more}"
    )


def container(spec: str, image: str = "a") -> str:
    return f"apps:\n  web:\n    image: '{image}'\n    containers:\n      web: {{{spec}}}\n"


CASES = [
    Case("registry password reference is a URL", "fleet.yml",
         registry(f"{{secret: 'https://u:{PW}@x.example/p'}}"),
         "registries[0].password.secret", "ssm:/param/name", (PW,)),
    Case("registry password reference is the password", "fleet.yml",
         registry(f"{{secret: {PW}}}"), "registries[0].password.secret", "ssm:/param/name", (PW,)),
    Case("registry password as a plain value", "fleet.yml", registry(PW),
         "registries[0].password", "{secret: 'ssm:/param/name'}", (PW,)),
    Case("registry host as a URL with a password", "fleet.yml",
         registry("{secret: 'ssm:/p'}", host=f"https://u:{PW}@r.example.com"),
         "registries[0].registry", "write 'r.example.com'", (PW,)),
    Case("webhook reference is the webhook URL", "fleet.yml", webhook(f"{{secret: '{HOOK}'}}"),
         "notifications[0].webhook.secret", "ssm:/param/name", ("XoXbTok3n", "T0SECRET")),
    Case("webhook reference with a blank", "fleet.yml", webhook(f"{{secret: '{HOOK} x'}}"),
         "notifications[0].webhook.secret", "ssm:/param/name", ("XoXbTok3n", "T0SECRET")),
    Case("webhook as a plain value", "fleet.yml", webhook(f"'{HOOK}'"),
         "notifications[0].webhook", "{secret: 'ssm:/param/name'}", ("XoXbTok3n", "T0SECRET")),
    Case("broker URL without a scheme", "box.yml", worker(f"'deploy:{PW}@redis.internal'"),
         "provision.worker.broker_url", "redis://10.0.0.5:6379/0", (PW,)),
    Case("redis URL without a scheme", "box.yml",
         worker(more=f"    redis_url: 'deploy:{PW}@redis.internal'\n"),
         "provision.worker.redis_url", "redis://10.0.0.5:6379/0", (PW,)),
    Case("broker URL reference is the URL", "box.yml", worker(f"{{secret: 'redis://:{PW}@r/0'}}"),
         "provision.worker.broker_url.secret", "ssm:/param/name", (PW,)),
    Case("wheel URL over http with a password", "box.yml",
         worker(wheel=f"http://u:{PW}@x.example/o.whl"),
         "provision.worker.wheel.url", "must be an https:// URL", (PW,)),
    Case("wheel URL with a space and a password", "box.yml",
         worker(wheel=f"https://u:{PW}@x.example/o .whl"),
         "provision.worker.wheel.url", "must be an https:// URL", (PW,)),
    Case("lock URL over ftp with a token", "box.yml",
         worker(lock=f"ftp://x.example/w.lock?token={PW}"),
         "provision.worker.lock.url", "must be an https:// URL", (PW,)),
    Case("wheel URL not a wheel, with a token", "box.yml",
         worker(wheel=f"https://x.example/o.tgz?token={PW}"),
         "provision.worker.wheel", "(.whl)", (PW,)),
    Case("worker setting reference is a URL", "box.yml",
         worker(more=f"    settings: {{db: {{secret: 'https://u:{PW}@x/p'}}}}\n"),
         "provision.worker.settings.db.secret", "ssm:/param/name", (PW,)),
    Case("env reference is a URL with a password", "box.yml",
         container(f"env: {{DB: {{secret: 'postgres://u:{PW}@db/x'}}}}"),
         "apps.web.containers.web.env.DB.secret", "ssm:/param/name", (PW,)),
    Case("env reference is the password", "box.yml", container(f"env: {{DB: {{secret: {PW}}}}}"),
         "apps.web.containers.web.env.DB.secret", "ssm:/param/name", (PW,)),
    Case("env value a mapping beside a reference", "box.yml",
         container(f"env: {{DB: {{secret: 'ssm:/x', value: {PW}}}}}"),
         "apps.web.containers.web.env.DB", "must be a string", (PW,)),
    Case("env value a list", "box.yml", container(f"env: {{DB: ['postgres://u:{PW}@db/x']}}"),
         "apps.web.containers.web.env.DB", "must be a string", (PW,)),
    Case("envs line without '='", "box.yml", container(f"envs: ['postgres://u:{PW}@db/x']"),
         "apps.web.containers.web", "'KEY=value'", (PW,)),
    Case("image as a URL with a password", "box.yml",
         container("", image=f"https://u:{PW}@r.example.com/web:1"),
         "apps.web.image", "registry.example.com:5000/team/app:1.2", (PW,)),
    Case("volume as a URL with a password", "box.yml",
         container(f"volumes: ['https://u:{PW}@x/a:/b']"),
         "apps.web.containers.web.volumes", "SOURCE:/container/path", (PW,)),
    Case("health path as a URL with a password", "box.yml",
         container(f"ports: [80], health: {{http: 'http://u:{PW}@x/h'}}"),
         "apps.web.containers.web.health.http", "e.g. '/health'", (PW,)),
]


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimitedCli]:
    runner = LimitedCli(tmp_path_factory.mktemp("cwd"))
    yield runner
    runner.close()


def fleet_folder(root: Path, case: Case) -> Path:
    """fleet.yml beside boxes/web.yml, one of them holding the case's bad input."""
    (root / "boxes").mkdir()
    (root / "fleet.yml").write_text(case.text if case.file == "fleet.yml" else SERVICES)
    (root / "boxes" / "web.yml").write_text(case.text if case.file == "box.yml" else BOX)
    return root


def refused_without_secrets(answer: dict[str, str], case: Case, file: Path) -> None:
    text = answer["out"] + answer["err"]
    assert answer["rc"] == 2, text
    assert "Traceback" not in text, text
    assert str(file) in text and f": {case.path}: " in text, text
    assert case.fix in text, text
    for secret in case.secrets:
        assert secret not in text, text


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize("command", ["validate", "rollout"])
def test_a_bad_input_holding_a_secret_is_refused_without_it(
    cli: LimitedCli, tmp_path: Path, case: Case, command: str
) -> None:
    root = fleet_folder(tmp_path, case)
    if command == "validate":
        answer = cli.run(["validate", str(root / "boxes" / "web.yml")])
    else:
        env = dict(NOWHERE, ORCHESTRATOR_BOXES_DIR=str(root / "boxes"))
        answer = cli.run(["rollout", "web", "--reason", "test"], env)
    bad = root / "fleet.yml" if case.file == "fleet.yml" else root / "boxes" / "web.yml"
    refused_without_secrets(answer, case, bad)


def test_a_usage_error_is_masked_too(cli: LimitedCli) -> None:
    answer = cli.run(["watch", f"https://u:{PW}@x.example"])
    assert answer["rc"] == 2 and "ROLLOUT_ID" in answer["err"], answer
    assert PW not in answer["out"] + answer["err"], answer


@pytest.mark.parametrize("form", ["pem", "pem with \\n", "file: and pem", "base64 body"])
def test_key_text_in_the_signing_key_variable_is_named_not_echoed(form: str) -> None:
    pem = generate()[0].decode()  # a real key's text, as `keys generate` writes it
    body = pem.splitlines()[1]
    value = {"pem": pem, "pem with \\n": pem.replace("\n", "\\n"), "file: and pem": f"file:{pem}",
             "base64 body": body}[form]
    with pytest.raises(ConfigError) as caught:
        load_signer(value)
    shown = str(caught.value)
    assert caught.value.exit_code == 2
    assert shown.startswith("ORCHESTRATOR_SIGNING_KEY holds what looks like the text of a key")
    assert "set the variable to its path" in shown
    assert body[:16] not in shown and "BEGIN" not in shown


def test_a_missing_key_file_is_still_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"cannot read {tmp_path}/nope.key"):
        load_signer(str(tmp_path / "nope.key"))
