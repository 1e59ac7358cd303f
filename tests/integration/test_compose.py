"""compose.dev.yml, the demo's stack for machines with Compose: `docker-compose config` checks.

The images it needs can't be pulled here, so the stack itself is not started: these tests
check what Compose makes of the file, and that its parts fit together (worker ids, bind
addresses, HAProxy servers, the runtime API socket, the Docker socket, the build context).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.common import need_binary

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose.dev.yml"
WORKERS = ("box1", "box2", "box3")
DOCKER_SOCKET = "/var/run/docker.sock"


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> source of a service's volumes, in Compose v1's short or v2's long form."""
    out = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        out[target] = source
    return out


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    binary = need_binary("docker-compose")
    run = subprocess.run(
        [binary, "-f", str(COMPOSE), "config"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
        env={**os.environ, "FLOWER_PASSWORD": "from-the-environment"},
    )
    assert run.returncode == 0, run.stderr
    loaded: dict[str, Any] = yaml.safe_load(run.stdout)
    return loaded


def test_the_demo_stack_services(config: dict[str, Any]) -> None:
    services = config["services"]
    assert set(services) == {"redis", "moto", "registry", "haproxy", "flower", *WORKERS}
    # Everything on the host network, binding loopback like the demo: nothing published.
    for name, service in services.items():
        assert service.get("network_mode") == "host", name
        assert "ports" not in service, name
    flower = " ".join(services["flower"]["command"])
    assert "--basic-auth=demo:from-the-environment" in flower
    assert "--address=127.0.0.1" in flower


def test_workers_use_the_host_network_and_docker_socket(config: dict[str, Any]) -> None:
    services = config["services"]
    bind_ips = set()
    for name in WORKERS:
        worker = services[name]
        env = worker["environment"]
        assert worker["network_mode"] == "host"
        assert mounts(worker).get(DOCKER_SOCKET) == DOCKER_SOCKET
        assert "orchestrator-worker" in worker["command"]
        assert env["ORCHESTRATOR_BOX_ID"] == name and env["ORCHESTRATOR_BOX_TYPE"] == "web"
        assert env["ORCHESTRATOR_BIND_IP"].startswith("127.")
        assert env["ORCHESTRATOR_BROKER_URL"].startswith("redis://:")  # over AUTH
        assert "@127.0.0.1:6379/" in env["ORCHESTRATOR_BROKER_URL"]
        bind_ips.add(env["ORCHESTRATOR_BIND_IP"])
        # The log root has one path inside and outside: the engine mounts host paths.
        log_root = env["ORCHESTRATOR_LOG_ROOT"]
        assert mounts(worker).get(log_root) == log_root
        assert (REPO / worker["build"]["context"] / worker["build"]["dockerfile"]).is_file()
    assert len(bind_ips) == len(WORKERS)  # each box publishes on its own address


def test_haproxy_servers_are_the_workers(config: dict[str, Any], tmp_path: Path) -> None:
    services = config["services"]
    haproxy = services["haproxy"]
    text = haproxy["environment"]["HAPROXY_CFG"]
    servers = dict(re.findall(r"^\s*server (\S+) (\S+) check$", text, re.MULTILINE))
    expected = {
        name: f"{services[name]['environment']['ORCHESTRATOR_BIND_IP']}:8080" for name in WORKERS
    }
    assert servers == expected
    # The workers reach the runtime API through the volume both mount.
    socket_path = re.search(r"stats socket (\S+) ", text)
    assert socket_path is not None
    run_dir = str(Path(socket_path[1]).parent)
    for name in WORKERS:
        assert services[name]["environment"]["ORCHESTRATOR_HAPROXY_SOCKET"] == socket_path[1]
        assert mounts(services[name])[run_dir] == mounts(haproxy)[run_dir]
    # And HAProxy itself accepts the configuration.
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(text)
    check = subprocess.run([need_binary("haproxy"), "-c", "-f", str(cfg)],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_worker_image_copies_what_exists() -> None:
    dockerfile = (REPO / "Dockerfile.worker").read_text()
    sources = [
        src
        for line in dockerfile.splitlines() if line.startswith("COPY ")
        for src in line.split()[1:-1]
    ]
    assert sources and all((REPO / src).exists() for src in sources), sources


def test_redis_keeps_an_append_only_file(config: dict[str, Any]) -> None:
    command = config["services"]["redis"]["command"]
    flags = dict(zip(command[1::2], command[2::2], strict=False))
    assert (flags["--appendonly"], flags["--appendfsync"]) == ("yes", "everysec")
    assert mounts(config["services"]["redis"]).get("/data")


def test_workers_keep_their_own_record_on_the_host(config: dict[str, Any]) -> None:
    for name in WORKERS:
        assert mounts(config["services"][name])["/var/lib/orchestrator"] == "/var/lib/orchestrator"
