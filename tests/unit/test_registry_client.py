"""Registry client and secret rotation decisions, pure: challenges, ECR hosts, change sets."""

from __future__ import annotations

import pytest

from orchestrator.engine.changes import box_changes
from orchestrator.registry import parse_challenge
from schemas.boxfile import BoxSpec, SecretRef
from schemas.contract import Label
from schemas.fleet import RegistryAuth, ecr_host
from schemas.release import Release, _digest
from worker.decide import decide_swap
from worker.facts import ContainerFact
from worker.secrethash import secret_hash

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("header", "scheme", "params"),
    [
        ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
         'scope="repository:library/nginx:pull"', "bearer",
         {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
          "scope": "repository:library/nginx:pull"}),
        ('Basic realm="devstack"', "basic", {"realm": "devstack"}),
        ('Bearer realm="http://127.0.0.1:1/token",service="r",scope="repository:a:pull,push",'
         'error="invalid_token"', "bearer",
         {"realm": "http://127.0.0.1:1/token", "service": "r",
          "scope": "repository:a:pull,push", "error": "invalid_token"}),
        ("", "", {}),
    ],
)
def test_parse_challenge(header: str, scheme: str, params: dict[str, str]) -> None:
    assert parse_challenge(header) == (scheme, params)


@pytest.mark.parametrize(
    ("host", "want"),
    [
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com", ("123456789012", "us-east-1")),
        ("210987654321.dkr.ecr.eu-central-1.amazonaws.com", ("210987654321", "eu-central-1")),
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", ("123456789012", "cn-north-1")),
        ("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
         ("123456789012", "us-gov-west-1")),
        ("12345.dkr.ecr.us-east-1.amazonaws.com", None),
        ("registry.example.com:5000", None),
        (None, None),
    ],
)
def test_ecr_host(host: str | None, want: tuple[str, str] | None) -> None:
    assert ecr_host(host) == want


def test_registry_entries_are_one_kind_and_keep_old_release_hashes() -> None:
    with pytest.raises(ValueError, match="either ecr"):
        RegistryAuth(registry="r", username="u", password=SecretRef(secret="file:/x"),
                     ecr="123456789012.dkr.ecr.us-east-1.amazonaws.com")
    spec = BoxSpec.model_validate({"apps": {"web": {"image": "r/web", "containers": {"web": {}}}}})
    old = RegistryAuth(registry="r", username="u", password=SecretRef(secret="file:/x"))
    # The content an older release hashed (no `ecr` key): its stored hash still verifies.
    before_ecr = _digest({
        "box_type": "t", "spec": spec.model_dump(mode="json"), "images": {}, "services": {},
        "lb_default": "elb",
        "registries": [{"registry": "r", "username": "u", "password": {"secret": "file:/x"}}],
    })
    assert Release.content_hash("t", spec, {}, {}, "elb", [old]) == before_ecr


def _release() -> Release:
    spec = BoxSpec.model_validate({"apps": {
        "db": {"image": "r/db", "containers": {"db": {}}},
        "web": {"image": "r/web", "depends": ["db"], "elb": "web",
                "containers": {"web": {"env": {"DB": {"secret": "ssm:/web/db"}}}}},
        "other": {"image": "r/other", "containers": {"other": {}}},
    }})
    images = {a: f"r/{a}@sha256:{'a' * 64}" for a in spec.apps}
    h = Release.content_hash("t", spec, images, {}, "haproxy")
    return Release(id="r1", box_type="t", spec=spec, images=images, lb_default="haproxy",
                   created_at=0, hash=h)


def test_a_rotated_secret_is_a_change_of_exactly_that_app() -> None:
    release = _release()
    running = {a: release.spec_hash(a) for a in release.spec.apps}
    assert box_changes(release, running) == ([], [])
    assert box_changes(release, running, ["web"]) == (["web"], ["web"])
    # A rotated db swaps db; web, which depends on it, leaves its load balancer meanwhile.
    assert box_changes(release, running, ["db"]) == (["db"], ["web"])


def test_secret_hash_is_keyed_and_covers_only_secret_values() -> None:
    env = {"DB": SecretRef(secret="ssm:/db"), "PLAIN": "x"}
    a = secret_hash(b"k1", env, {"DB": "v1", "PLAIN": "x"})
    assert a == secret_hash(b"k1", env, {"DB": "v1", "PLAIN": "other"})
    assert a != secret_hash(b"k1", env, {"DB": "v2", "PLAIN": "x"})
    assert a != secret_hash(b"k2", env, {"DB": "v1", "PLAIN": "x"})  # another box's key
    assert "v1" not in a and secret_hash(b"k1", {"PLAIN": "x"}, {"PLAIN": "x"}) == ""


def _fact(secret: str | None, state: str = "running") -> ContainerFact:
    labels = {Label.MANAGED: "1", Label.BOX: "b1", Label.APP: "web", Label.CONTAINER: "web",
              Label.SPEC_HASH: "h", Label.RELEASE: "r1", Label.ROLE: "app"}
    if secret is not None:
        labels[Label.SECRET_HASH] = secret
    return ContainerFact(id="id1", name="b1.web.web", image="i", image_id="sha256:x",
                         state=state, labels=labels, created="")


@pytest.mark.parametrize(
    ("label", "wanted", "needed", "reason"),
    [
        ("s1", {"web": "s1"}, False, "already running"),
        ("s1", {"web": "s2"}, True, "secret changed"),
        (None, {"web": "s2"}, False, "already running"),  # made before secret hashes
        ("s1", {}, False, "already running"),  # nothing to compare with (no key on the box)
    ],
)
def test_swap_replaces_a_container_started_with_other_secret_values(
    label: str | None, wanted: dict[str, str], needed: bool, reason: str
) -> None:
    got = decide_swap([_fact(label)], container_names=["web"], spec_hash="h",
                      secret_hashes=wanted)
    assert got.needed is needed and got.reason.startswith(reason), got
    if needed:
        assert [f.id for f in got.keep] == ["id1"] and got.previous_hash == "h"
