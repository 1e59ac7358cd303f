"""Registry credentials: carried by reference in the release, resolved on the box, never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.engine.releases import make_release
from orchestrator.errors import RegistryAuthFailed, RuntimeFailure, SecretUnavailable
from schemas.boxfile import BoxSpec, SecretRef
from schemas.fleet import FleetSettings, RegistryAuth
from schemas.release import Release
from worker.facts import BoxEnv
from worker.runtime import refused_credentials
from worker.secrets import registry_auth, resolve_env, resolve_secret
from worker.steps.apps import pull_image

DIGEST = "sha256:" + "a" * 64
SPEC = BoxSpec.model_validate(
    {"apps": {"web": {"image": "reg.example.com:5000/web", "containers": {"web": {}}}}}
)


def entry(registry: str, secret: str, username: str = "deploy") -> RegistryAuth:
    return RegistryAuth(registry=registry, username=username, password=SecretRef(secret=secret))


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / "reg.env"
    path.write_text("# comment\nREGISTRY_PASSWORD='hunter2'\nOTHER=x\n")
    return path


def test_resolve_secret_file_and_ssm(env_file: Path) -> None:
    assert resolve_secret(SecretRef(secret=f"file:{env_file}#REGISTRY_PASSWORD")) == "hunter2"
    assert resolve_secret(SecretRef(secret="ssm:/reg/pw"), lambda name: f"v{name}") == "v/reg/pw"
    with pytest.raises(SecretUnavailable, match="no SSM access configured for ssm:/reg/pw"):
        resolve_secret(SecretRef(secret="ssm:/reg/pw"))
    with pytest.raises(SecretUnavailable, match="has no line NOPE="):
        resolve_secret(SecretRef(secret=f"file:{env_file}#NOPE"))


def test_resolve_env_still_names_the_key(env_file: Path) -> None:
    env = {"A": "1", "PW": SecretRef(secret=f"file:{env_file}#REGISTRY_PASSWORD")}
    assert resolve_env(env) == {"A": "1", "PW": "hunter2"}
    with pytest.raises(SecretUnavailable, match=r"^DB: no SSM access configured for ssm:/db$"):
        resolve_env({"DB": SecretRef(secret="ssm:/db")})


def test_registry_auth_matches_the_image_host(env_file: Path) -> None:
    registries = [
        entry("other.example.com", "ssm:/other"),
        entry("Reg.Example.com:5000", f"file:{env_file}#REGISTRY_PASSWORD"),
        entry("docker.io", "ssm:/hub", username="hubuser"),
    ]
    fetched: list[str] = []

    def ssm(name: str) -> str:
        fetched.append(name)
        return "from-ssm"

    assert registry_auth(f"reg.example.com:5000/team/web@{DIGEST}", registries, ssm) == {
        "username": "deploy",
        "password": "hunter2",
    }
    assert fetched == []  # only the matching entry is resolved
    # The same host without the port is another registry.
    assert registry_auth("reg.example.com/team/web:1", registries, ssm) is None
    # A bare name is on Docker Hub.
    assert registry_auth("library/busybox:1", registries, ssm) == {
        "username": "hubuser",
        "password": "from-ssm",
    }
    assert fetched == ["/hub"]
    assert registry_auth("127.0.0.1:5000/web:1", [], ssm) is None


def test_release_carries_references_and_hashes_them(env_file: Path) -> None:
    ref = f"file:{env_file}#REGISTRY_PASSWORD"
    fleet = FleetSettings(registries=[entry("reg.example.com:5000", ref)])
    pinned = {"web": f"reg.example.com:5000/web@{DIGEST}"}
    with_auth = make_release("web", SPEC, pinned, fleet, now=1.0, created_by="t")
    bare = make_release("web", SPEC, pinned, None, now=1.0, created_by="t")
    assert with_auth.registries == fleet.registries and bare.registries == []
    assert with_auth.hash != bare.hash and with_auth.verify() and bare.verify()
    assert "hunter2" not in with_auth.model_dump_json() and ref in with_auth.model_dump_json()
    # Round trip through JSON (as stored in Redis) keeps the hash valid.
    assert Release.model_validate_json(with_auth.model_dump_json()).verify()
    # A tampered reference no longer matches its hash.
    tampered = with_auth.model_copy(
        update={"registries": [entry("reg.example.com:5000", "ssm:/elsewhere")]}
    )
    assert not tampered.verify()
    # A release stored before the field existed still verifies: no registries, same hash.
    legacy = bare.model_dump(mode="json")
    del legacy["registries"]
    assert Release.model_validate(legacy).verify()
    assert bare.hash == Release.content_hash("web", SPEC, pinned, {}, "elb")


class RefusingRuntime:
    """Just enough of a runtime to see what the pull step hands it and how it fails: like
    DockerRuntime, it says itself (RegistryAuthFailed) when the registry refused credentials."""

    def __init__(self, error: str) -> None:
        self.error = error
        self.auths: list[dict[str, str] | None] = []

    def pull(self, ref: str, auth: dict[str, str] | None = None) -> str:
        self.auths.append(auth)
        typed = RegistryAuthFailed if refused_credentials(None, self.error) else RuntimeFailure
        raise typed(f"pull {ref}: {self.error}")


def _env(runtime: RefusingRuntime) -> BoxEnv:
    return BoxEnv(box_id="b", box_type="web", runtime=runtime, log_root="/tmp")  # type: ignore[arg-type]


def test_pull_refused_names_image_and_user_never_the_password(env_file: Path) -> None:
    image = f"reg.example.com:5000/web@{DIGEST}"
    fleet = FleetSettings(
        registries=[entry("reg.example.com:5000", f"file:{env_file}#REGISTRY_PASSWORD")]
    )
    release = make_release("web", SPEC, {"web": image}, fleet, now=1.0, created_by="t")
    # An engine that echoed the password would still not get it into the reason.
    runtime = RefusingRuntime("unauthorized: authentication required (hunter2)")
    with pytest.raises(RegistryAuthFailed) as info:
        pull_image(_env(runtime), release, image)
    assert runtime.auths == [{"username": "deploy", "password": "hunter2"}]
    message = str(info.value)
    assert image in message and "authentication failed" in message and "'deploy'" in message
    assert "hunter2" not in message

    bare = make_release("web", SPEC, {"web": image}, None, now=1.0, created_by="t")
    runtime = RefusingRuntime('Get "http://reg/v2/": no basic auth credentials')
    with pytest.raises(RegistryAuthFailed, match="without credentials"):
        pull_image(_env(runtime), bare, image)
    assert runtime.auths == [None]

    # Any other refusal stays what it was.
    runtime = RefusingRuntime("manifest unknown")
    with pytest.raises(RuntimeFailure, match="manifest unknown") as other:
        pull_image(_env(runtime), release, image)
    assert not isinstance(other.value, RegistryAuthFailed)


@pytest.mark.parametrize(
    ("status", "text", "refused"),
    [
        (401, "Head https://reg/v2/web/manifests/v1: something", True),
        (403, "forbidden", True),
        (500, 'Get "https://reg/v2/": no basic auth credentials', True),
        (500, "unauthorized: authentication required", True),
        (None, "denied: requested access to the resource is denied", True),
        (None, "unauthorized: incorrect username or password", True),
        (404, "manifest for reg/web:v9 not found: manifest unknown", False),
        (500, "received unexpected HTTP status: 502 Bad Gateway", False),
        (None, "manifest unknown", False),
    ],
)
def test_the_runtime_tells_a_refused_login(status: int | None, text: str, refused: bool) -> None:
    assert refused_credentials(status, text) is refused
