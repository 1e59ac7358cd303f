"""build_run_request: names, labels, ports, volumes, log binds, hostname and restart policy."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.errors import ConfigError
from schemas.boxfile import AppSpec, ContainerSpec
from schemas.contract import Label
from worker.facts import Bind, PortBinding, RunRequest
from worker.runspec import Role, build_run_request, log_dirs, previous_name

LOG_ROOT = "/var/log/orch"


def request(
    spec: dict[str, Any] | ContainerSpec,
    *,
    role: Role = "app",
    bind_ip: str | None = None,
    hostname: str | None = "box-host",
    env: dict[str, str] | None = None,
) -> RunRequest:
    if not isinstance(spec, ContainerSpec):
        spec = ContainerSpec.model_validate(spec)
    return build_run_request(
        box_id="web-1",
        box_type="web",
        app="shop",
        container="api",
        spec=spec,
        image="reg.local/shop@sha256:" + "b" * 64,
        env=env or {},
        spec_hash="h123",
        release="r42",
        token="e1.17",
        role=role,
        log_root=LOG_ROOT,
        bind_ip=bind_ip,
        hostname=hostname,
    )


@pytest.mark.parametrize(
    ("role", "name"), [("app", "web-1.shop.api"), ("service", "web-1.svc.api")]
)
def test_names(role: Role, name: str) -> None:
    req = request({}, role=role)
    assert req.name == name
    assert previous_name(req.name) == f"{name}.prev"


def test_labels_record_every_fact() -> None:
    assert request({}, role="service").labels == {
        Label.MANAGED: "1",
        Label.BOX: "web-1",
        Label.BOX_TYPE: "web",
        Label.APP: "shop",
        Label.CONTAINER: "api",
        Label.SPEC_HASH: "h123",
        Label.RELEASE: "r42",
        Label.TOKEN: "e1.17",
        Label.ROLE: "service",
        Label.GENERATION: "current",
    }


PORTS = [
    ("no bind ip: all addresses", ["8080:80"], None, [PortBinding("", 8080, 80, "tcp")]),
    ("bind ip of the box", ["8080:80"], "127.0.0.7", [PortBinding("127.0.0.7", 8080, 80, "tcp")]),
    (
        "the port's own ip wins",
        ["127.0.0.9:8080:80", "9090"],
        "127.0.0.7",
        [PortBinding("127.0.0.9", 8080, 80, "tcp"), PortBinding("127.0.0.7", 9090, 9090, "tcp")],
    ),
    ("udp", ["5353:53/udp"], None, [PortBinding("", 5353, 53, "udp")]),
    ("none", [], "127.0.0.7", []),
]


@pytest.mark.parametrize(("what", "ports", "bind_ip", "expected"), PORTS, ids=[r[0] for r in PORTS])
def test_ports(
    what: str, ports: list[str], bind_ip: str | None, expected: list[PortBinding]
) -> None:
    assert request({"ports": ports}, bind_ip=bind_ip).ports == expected


BINDS = [
    ("volumes with and without mode", {"volumes": ["/srv/data:/data", "cache:/cache:ro"]},
     [Bind("/srv/data", "/data", "rw"), Bind("cache", "/cache", "ro")]),
    ("one log path", {"logs": {"access": ["/var/log/nginx"]}},
     [Bind(f"{LOG_ROOT}/shop/access", "/var/log/nginx", "rw")]),
    ("several log paths", {"logs": {"app": ["/var/log/app", "/opt/app/logs/"]}},
     [Bind(f"{LOG_ROOT}/shop/app/app", "/var/log/app", "rw"),
      Bind(f"{LOG_ROOT}/shop/app/logs", "/opt/app/logs/", "rw")]),
    ("a bare log list is named by its container", {"logs": ["/logs"]},
     [Bind(f"{LOG_ROOT}/shop/api", "/logs", "rw")]),
    ("volumes first, then logs", {"volumes": ["/etc/x:/x:ro"], "logs": {"l": ["/l"]}},
     [Bind("/etc/x", "/x", "ro"), Bind(f"{LOG_ROOT}/shop/l", "/l", "rw")]),
]  # fmt: skip


@pytest.mark.parametrize(("what", "spec", "expected"), BINDS, ids=[r[0] for r in BINDS])
def test_binds(what: str, spec: dict[str, Any], expected: list[Bind]) -> None:
    req = request(spec)
    assert req.binds == expected
    assert log_dirs(req) == [b.source for b in expected if b.source.startswith(LOG_ROOT)]


def test_bare_log_list_inside_an_app_is_named_by_the_container() -> None:
    app = AppSpec.model_validate({"image": "shop:1", "containers": {"api": {"logs": ["/logs"]}}})
    assert request(app.containers["api"]).binds == [Bind(f"{LOG_ROOT}/shop/api", "/logs", "rw")]


CONFLICTS = [
    ("same basename", {"logs": {"app": ["/var/log/app", "/opt/app"]}}, "share the host directory"),
    ("path mounted twice", {"volumes": ["/srv:/logs"], "logs": {"l": ["/logs"]}}, "mounted twice"),
]


@pytest.mark.parametrize(("what", "spec", "message"), CONFLICTS, ids=[r[0] for r in CONFLICTS])
def test_conflicting_mounts_are_config_errors(
    what: str, spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        request(spec)


HOSTNAMES = [
    ("own hostname by default", {}, "box-host", None),
    ("the box's hostname when asked", {"use_host_hostname": True}, "box-host", "box-host"),
    ("asked but none known", {"use_host_hostname": True}, None, None),
]


@pytest.mark.parametrize(
    ("what", "spec", "hostname", "expected"), HOSTNAMES, ids=[r[0] for r in HOSTNAMES]
)
def test_hostname(
    what: str, spec: dict[str, Any], hostname: str | None, expected: str | None
) -> None:
    assert request(spec, hostname=hostname).hostname == expected


POLICIES = [
    ("defaults", {}, False, 10, None),
    ("restart and stop timeout", {"restart_on_failure": True, "stop_timeout": 3}, True, 3, None),
    ("command string", {"command": "httpd -f -p '8080'"}, False, 10, ["httpd", "-f", "-p", "8080"]),
]


@pytest.mark.parametrize(
    ("what", "spec", "restart", "stop_timeout", "command"), POLICIES, ids=[r[0] for r in POLICIES]
)
def test_restart_stop_and_command(
    what: str,
    spec: dict[str, Any],
    restart: bool,
    stop_timeout: int,
    command: list[str] | None,
) -> None:
    req = request(spec)
    assert (req.restart_on_failure, req.stop_timeout, req.command) == (
        restart,
        stop_timeout,
        command,
    )


def test_env_is_the_resolved_env_not_the_spec() -> None:
    spec = {"env": {"DB": {"secret": "ssm:/shop/db"}}}
    assert request(spec, env={"DB": "s3cret"}).env == {"DB": "s3cret"}


def test_image_is_passed_through() -> None:
    assert request({}).image.startswith("reg.local/shop@sha256:")


def test_log_dirs_of_a_request_without_log_root() -> None:
    assert log_dirs(RunRequest(name="x", image="y", binds=[Bind("/a", "/b")])) == []
