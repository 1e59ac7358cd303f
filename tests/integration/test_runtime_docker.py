"""DockerRuntime and wait_healthy against the real engine, with the FROM-scratch test images."""

from __future__ import annotations

import dataclasses
import gc
import os
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from devstack.registry import Registry
from orchestrator.errors import HealthCheckFailed, RuntimeFailure, ServiceUnavailable
from schemas.boxfile import ContainerSpec
from schemas.contract import Label
from tests.harness.common import TEST_LABEL, free_port, wait_for
from tests.harness.docker_fx import TEST_CONTAINER_LABELS, WebImages
from worker.facts import ContainerFact, PortBinding, RunRequest
from worker.health import wait_healthy
from worker.runspec import build_run_request, log_dirs, previous_name
from worker.runtime import DockerRuntime

BIND_IP = "127.0.0.11"  # one simulated box's address: ports never clash with other tests'


@pytest.fixture
def runtime(docker_client: docker.DockerClient) -> DockerRuntime:
    return DockerRuntime(docker_client)


@pytest.fixture
def box(runtime: DockerRuntime) -> Iterator[str]:
    """A box id of this test alone; its containers are removed at teardown."""
    box_id = f"t{uuid.uuid4().hex[:8]}"
    yield box_id
    for fact in runtime.list(labels={Label.BOX: box_id, TEST_LABEL: "1"}):
        runtime.remove(fact.id)


Make = Callable[..., RunRequest]


@pytest.fixture
def make(box: str, tmp_path: Path, test_images: WebImages) -> Make:
    """make(container, spec fields..., image=, port=) -> a RunRequest with the test labels."""

    def make_request(
        container: str = "web", *, image: str = test_images.v1, **spec: Any
    ) -> RunRequest:
        req = build_run_request(
            box_id=box,
            box_type="web",
            app="shop",
            container=container,
            spec=ContainerSpec.model_validate(spec),
            image=image,
            env={"GREETING": "hi"},
            spec_hash="h1",
            release="r1",
            token="e1.7",
            role="app",
            log_root=str(tmp_path / "logs"),
            bind_ip=BIND_IP,
            hostname="box-test",
        )
        for directory in log_dirs(req):
            os.makedirs(directory, exist_ok=True)
        return dataclasses.replace(req, labels={**req.labels, **TEST_CONTAINER_LABELS})

    return make_request


def get(port: int, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://{BIND_IP}:{port}{path}", timeout=1) as response:
        return str(response.read().decode().strip())


def healthy(
    runtime: DockerRuntime, fact: ContainerFact, req: RunRequest, budget: float = 10.0, **h: Any
) -> float:
    """wait_healthy with `h` as the health check (none: settle 0.3s); seconds it took."""
    spec = ContainerSpec.model_validate({"health": h or None})
    start = time.monotonic()
    wait_healthy(
        runtime,
        fact,
        spec,
        host="127.0.0.1",
        ports=req.ports,
        settle=0.3,
        deadline=start + budget,
    )
    return time.monotonic() - start


def test_run_v1_with_labels_ports_binds_hostname_and_policy(
    runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    make: Make,
    box: str,
    tmp_path: Path,
    test_images: WebImages,
) -> None:
    port = free_port(BIND_IP)
    req = make(
        ports=[f"{port}:8080"],
        logs={"web": ["/var/log/web"]},
        restart_on_failure=True,
        stop_timeout=3,
        use_host_hostname=True,
    )
    fact = runtime.run(req)
    assert (fact.name, fact.state, fact.image) == (f"{box}.shop.web", "running", test_images.v1)
    assert fact.image_id == test_images.ids[test_images.v1]
    assert wait_for(lambda: get(port), "v1 to answer") == "v1"

    [listed] = runtime.list(labels={Label.BOX: box, Label.APP: "shop"})
    assert listed.id == fact.id
    assert (listed.box, listed.app, listed.container, listed.token) == (box, "shop", "web", "e1.7")
    assert (listed.role, listed.generation, listed.release) == ("app", "current", "r1")
    assert listed.labels[TEST_LABEL] == "1"

    attrs = docker_client.api.inspect_container(fact.id)
    assert attrs["HostConfig"]["Init"] is True
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "on-failure"
    assert attrs["Config"]["StopTimeout"] == 3
    assert attrs["Config"]["Hostname"] == "box-test"
    assert attrs["HostConfig"]["PortBindings"]["8080/tcp"] == [
        {"HostIp": BIND_IP, "HostPort": str(port)}
    ]

    assert runtime.exec(fact.id, ["sh", "-c", 'test "$GREETING" = hi'], timeout=5) == 0
    assert runtime.exec(fact.id, ["sh", "-c", "exit 5"], timeout=5) == 5
    with pytest.raises(RuntimeFailure, match="executable file not found"):
        runtime.exec(fact.id, ["no-such-binary"], timeout=5)
    with pytest.raises(RuntimeFailure, match="still running after 0.3s"):
        runtime.exec(fact.id, ["sleep", "5"], timeout=0.3)

    # The container writes into its log path; the box sees it under the log root.
    assert runtime.exec(fact.id, ["sh", "-c", "echo hello > /var/log/web/app.log"], 5) == 0
    assert (tmp_path / "logs" / "shop" / "web" / "app.log").read_text() == "hello\n"


def test_list_matches_exact_names_only(runtime: DockerRuntime, make: Make, box: str) -> None:
    fact = runtime.run(make(command=["sleep", "30"]))
    assert [f.id for f in runtime.list(names=[fact.name])] == [fact.id]
    assert runtime.list(names=[f"{box}.shop"]) == []  # a prefix
    assert runtime.list(names=[fact.name.replace(".", "x")]) == []  # '.' is no wildcard
    assert runtime.list(names=[]) == []


def test_a_brief_listing_says_who_runs_what_where_as_inspect_does(
    runtime: DockerRuntime, make: Make, box: str,
) -> None:
    """`brief`: the engine's one listing, no inspect a container (the heartbeat lists the
    whole engine every beat): the same ids, names, states, labels and published ports."""
    port = free_port(BIND_IP)
    serving = runtime.run(make(ports=[f"{port}:8080"]))
    stopped = runtime.run(make("worker", command=["sleep", "30"]))
    runtime.stop(stopped.id, timeout=0)
    full = {f.id: f for f in runtime.list(labels={Label.BOX: box})}
    brief = {f.id: f for f in runtime.list(labels={Label.BOX: box}, brief=True)}
    assert set(brief) == set(full) == {serving.id, stopped.id}
    for fid, fact in brief.items():
        same = (fact.name, fact.state, fact.labels, fact.image_id)
        assert same == (full[fid].name, full[fid].state, full[fid].labels,
                        full[fid].image_id), fid
    assert brief[serving.id].ports == full[serving.id].ports == (
        PortBinding(BIND_IP, port, 8080),)
    assert brief[stopped.id].state == "exited" and brief[stopped.id].ports == ()
    assert [f.id for f in runtime.list(names=[serving.name], brief=True)] == [serving.id]


def test_rename_stop_start_logs_and_remove(
    runtime: DockerRuntime, make: Make, docker_client: docker.DockerClient
) -> None:
    port = free_port(BIND_IP)
    script = "for i in 1 2 3; do echo line$i; done; exec httpd -f -p 8080 -h /www"
    fact = runtime.run(make(ports=[f"{port}:8080"], command=["sh", "-c", script]))
    wait_for(lambda: get(port), "the container to answer")
    assert runtime.logs_tail(fact.id, lines=2) == "line2\nline3\n"

    runtime.rename(fact.id, previous_name(fact.name))
    assert runtime.list(names=[fact.name]) == []
    [renamed] = runtime.list(names=[f"{fact.name}.prev"])
    assert renamed.id == fact.id

    started = time.monotonic()
    runtime.stop(fact.id, timeout=5)
    # With init=True the SIGTERM ends httpd; without it the stop would wait the full 5 s.
    assert time.monotonic() - started < 2.0
    [stopped] = runtime.list(names=[renamed.name])
    assert (stopped.state, stopped.exit_code) == ("exited", 143)

    runtime.start(fact.id)
    assert wait_for(lambda: get(port), "the restarted container to answer") == "v1"

    runtime.remove(fact.id)  # running: removed with force
    assert runtime.list(names=[renamed.name]) == []
    runtime.remove(fact.id)  # already gone: done
    runtime.remove("0" * 64)
    assert runtime.logs_tail(fact.id) == ""
    with pytest.raises(RuntimeFailure, match="No such container"):
        runtime.start(fact.id)


def test_a_used_host_port_fails_the_start_and_leaves_nothing(
    runtime: DockerRuntime, make: Make
) -> None:
    port = free_port(BIND_IP)
    runtime.run(make("first", ports=[f"{port}:8080"]))
    second = make("second", ports=[f"{port}:8080"])
    with pytest.raises(RuntimeFailure, match="port is already allocated"):
        runtime.run(second)
    assert runtime.list(names=[second.name]) == []


def test_a_taken_name_fails_the_create(runtime: DockerRuntime, make: Make) -> None:
    req = make(command=["sleep", "30"])
    runtime.run(req)
    with pytest.raises(RuntimeFailure, match="is already in use"):
        runtime.run(req)


def test_a_missing_image_fails_the_create(runtime: DockerRuntime, make: Make) -> None:
    assert not runtime.has_image("orch-test/web:missing")
    with pytest.raises(RuntimeFailure, match="orch-test/web:missing"):
        runtime.run(make(image="orch-test/web:missing"))


def test_wait_healthy_passes_for_v1_over_http(runtime: DockerRuntime, make: Make) -> None:
    req = make(ports=[f"{free_port(BIND_IP)}:8080"])
    took = healthy(runtime, runtime.run(req), req, http="/health", interval=0.05)
    assert took < 2.0


def test_wait_healthy_fails_the_broken_image_within_the_deadline(
    runtime: DockerRuntime, make: Make, test_images: WebImages
) -> None:
    req = make(image=test_images.broken, ports=[f"{free_port(BIND_IP)}:8080"])
    fact = runtime.run(req)
    started = time.monotonic()
    with pytest.raises(HealthCheckFailed, match="failed 3 counted attempts.*HTTP 404"):
        healthy(runtime, fact, req, budget=5.0, http="/health", interval=0.2, retries=3)
    assert time.monotonic() - started < 2.0


def test_wait_healthy_fails_at_once_when_the_command_exits(
    runtime: DockerRuntime, make: Make
) -> None:
    req = make(ports=[f"{free_port(BIND_IP)}:8080"], command=["sh", "-c", "exit 3"])
    fact = runtime.run(req)
    started = time.monotonic()
    with pytest.raises(HealthCheckFailed, match="container exited with code 3"):
        healthy(runtime, fact, req, http="/health", interval=1.0, retries=100)
    assert time.monotonic() - started < 1.0


def test_wait_healthy_without_a_check_sees_a_crash_loop(runtime: DockerRuntime, make: Make) -> None:
    req = make(command=["sh", "-c", "sleep 0.1; exit 4"], restart_on_failure=True)
    # Seen exited (code 4), or seen after the restart policy started it again (the engine
    # then no longer reports the code): a crash loop either way, never "healthy".
    with pytest.raises(HealthCheckFailed, match="code 4|restarted by its restart policy"):
        healthy(runtime, runtime.run(req), req)


def test_wait_healthy_without_a_check_settles(runtime: DockerRuntime, make: Make) -> None:
    req = make(command=["sleep", "30"])
    assert 0.3 <= healthy(runtime, runtime.run(req), req) < 1.0


def test_tcp_check_sees_through_docker_proxy(runtime: DockerRuntime, make: Make) -> None:
    # docker-proxy accepts on 9000 although nothing listens there in the container.
    req = make(ports=[f"{free_port(BIND_IP)}:8080", f"{free_port(BIND_IP)}:9000"])
    fact = runtime.run(req)
    healthy(runtime, fact, req, tcp=8080, interval=0.05)
    with pytest.raises(HealthCheckFailed, match="closed at once"):
        healthy(runtime, fact, req, tcp=9000, interval=0.05, retries=2)


def test_command_check(runtime: DockerRuntime, make: Make, test_images: WebImages) -> None:
    check: dict[str, Any] = {
        "command": ["test", "-f", "/www/health"],
        "interval": 0.05,
        "retries": 2,
    }
    good = make("good")
    healthy(runtime, runtime.run(good), good, **check)
    bad = make("bad", image=test_images.broken)
    with pytest.raises(HealthCheckFailed, match="exit code 1"):
        healthy(runtime, runtime.run(bad), bad, **check)


def test_pull_from_the_private_registry(
    runtime: DockerRuntime,
    docker_client: docker.DockerClient,
    registry: Registry,
    test_images: WebImages,
) -> None:
    tag = uuid.uuid4().hex[:8]
    ref = registry.push(docker_client, test_images.v1, "runtime-pull", tag)  # HOST/repo@digest
    tagged = f"{registry.host}/runtime-pull:{tag}"
    docker_client.images.remove(tagged)  # only the reference: v1 keeps its own tag
    assert not runtime.has_image(tagged)

    assert runtime.pull(tagged) == test_images.ids[test_images.v1]
    assert runtime.has_image(tagged)
    assert runtime.pull(ref) == test_images.ids[test_images.v1]
    with pytest.raises(RuntimeFailure, match="not found|unknown"):
        runtime.pull(f"{registry.host}/runtime-pull:no-such-tag")
    with pytest.raises(ServiceUnavailable, match="registry not reachable.*connection refused"):
        runtime.pull(f"127.0.0.1:{free_port()}/nothing:here")


def test_version_and_disk_free(runtime: DockerRuntime, tmp_path: Path) -> None:
    # Read from a ping's Server header: the same string the engine's GET /version answers.
    assert runtime.version() == runtime._api.version()["Version"]
    assert runtime.version().split(".")[0].isdigit()
    assert runtime.disk_free(str(tmp_path)) > 0
    assert runtime.disk_free() > 0


# docker-py leaves the socket of a failed unix connect open; collect it here, not at exit.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_an_engine_that_does_not_answer_is_service_unavailable(tmp_path: Path) -> None:
    client = docker.DockerClient(base_url=f"unix://{tmp_path}/no-engine.sock", version="1.41")
    try:
        with pytest.raises(ServiceUnavailable, match="Docker engine did not answer"):
            DockerRuntime(client).list()
    finally:
        client.close()
        gc.collect()
