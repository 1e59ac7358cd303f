"""box.yml models: the seed's two spellings normalise to equal models; examples validate."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.config import load_box, load_fleet
from schemas.boxfile import BoxSpec, ContainerSpec, PortMapping, SecretRef
from schemas.checks import app_order
from schemas.refs import parse_image

DIGEST = "sha256:" + "a" * 64
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def container(text: str) -> ContainerSpec:
    return ContainerSpec.model_validate(yaml.safe_load(text))


# Each row: two spellings that mean the same thing.
EQUAL_FORMS = [
    ("env mapping / envs list", "env: {gcenv: prod, A: '1'}", "envs: [gcenv=prod, A=1]"),
    ("ports mapping / list", "ports: {8000: 8000}", "ports: ['8000:8000']"),
    ("bare port", "ports: [9090]", "ports: ['9090:9090']"),
    ("port with ip and udp", "ports: ['127.0.0.1:53:53/udp']",
     "ports: [{host_ip: 127.0.0.1, host_port: 53, container_port: 53, protocol: udp}]"),
    ("command string / argv", "command: httpd -f -p '8080'", "command: [httpd, -f, -p, '8080']"),
    ("env integers are strings", "env: {PORT: 8080}", "env: {PORT: '8080'}"),
    ("envs value with '='", "envs: ['OPTS=a=b']", "env: {OPTS: a=b}"),
]


@pytest.mark.parametrize(("what", "a", "b"), EQUAL_FORMS, ids=[r[0] for r in EQUAL_FORMS])
def test_spellings_normalise_to_equal_models(what: str, a: str, b: str) -> None:
    assert container(a) == container(b)


def test_port_forms_parse() -> None:
    c = container("ports: ['8080:80', 9090, '127.0.0.1:8081:81', '5353:53/udp']")
    assert c.ports == [
        PortMapping(host_port=8080, container_port=80),
        PortMapping(host_port=9090, container_port=9090),
        PortMapping(host_ip="127.0.0.1", host_port=8081, container_port=81),
        PortMapping(host_port=5353, container_port=53, protocol="udp"),
    ]


def test_secret_reference_is_kept_as_reference() -> None:
    c = container("env: {DB_PASSWORD: {secret: 'ssm:/web/db'}}")
    assert c.env["DB_PASSWORD"] == SecretRef(secret="ssm:/web/db")


def test_seed_web_and_list_spelling_are_equal_models() -> None:
    fleet = load_fleet(EXAMPLES / "fleet.yml")
    seed = load_box(EXAMPLES / "boxes" / "web.yml", fleet).spec
    listed = load_box(EXAMPLES / "boxes" / "web-list.yml", fleet).spec
    assert seed == listed
    assert app_order(seed) == ["mongos", "gcweb"]
    assert seed.apps["gcweb"].containers["gcweb"].logs == {"gcweb": ["/container_location/gcweb"]}


def test_normalised_model_round_trips_through_json() -> None:
    # Releases store the normalised model as JSON; workers load it back.
    spec = load_box(EXAMPLES / "boxes" / "kafka.yml").spec
    assert BoxSpec.model_validate_json(spec.model_dump_json()) == spec


@pytest.mark.parametrize("path", sorted((EXAMPLES / "boxes").glob("*.yml")), ids=lambda p: p.name)
def test_every_example_validates(path: Path) -> None:
    fleet = load_fleet(EXAMPLES / "fleet.yml")
    assert load_box(path, fleet).spec.apps


@pytest.mark.parametrize(
    ("ref", "registry", "repo", "tag", "digest"),
    [
        ("gcweb", None, "gcweb", None, None),
        ("team/gcweb:1.2", None, "team/gcweb", "1.2", None),
        ("127.0.0.1:5000/gcweb:v2", "127.0.0.1:5000", "gcweb", "v2", None),
        ("localhost/gcweb", "localhost", "gcweb", None, None),
        ("r.example.com/a/b@" + DIGEST, "r.example.com", "a/b", None, DIGEST),
    ],
)
def test_image_references(
    ref: str, registry: str | None, repo: str, tag: str | None, digest: str | None
) -> None:
    parsed = parse_image(ref)
    assert (parsed.registry, parsed.repository, parsed.tag, parsed.digest) == (
        registry, repo, tag, digest
    )
    assert str(parsed) == ref


@pytest.mark.parametrize("port", ["0", "65536", "99999999", "9" * 5000])
def test_a_registry_port_outside_1_to_65535_is_refused(port: str) -> None:
    from schemas.refs import check_registry_host

    with pytest.raises(ValueError, match="registry port .* is out of range; ports are 1-65535"):
        parse_image(f"reg.example.com:{port}/team/app:1")
    with pytest.raises(ValueError, match="registry port .* is out of range; ports are 1-65535"):
        check_registry_host(f"reg.example.com:{port}")


@pytest.mark.parametrize("host", ["reg.example.com:1", "127.0.0.1:65535", "localhost:05000"])
def test_a_registry_port_in_range_is_kept(host: str) -> None:
    from schemas.refs import check_registry_host

    assert parse_image(f"{host}/app:1").registry == host
    assert check_registry_host(host) == host
