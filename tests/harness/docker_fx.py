"""Fixtures: the Docker engine, small FROM-scratch test images, labelled test containers."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.models.containers import Container
from docker.models.images import Image

from devstack import engine, images
from devstack.process import MissingTool, ServiceError
from schemas.contract import Label
from tests.harness.common import TEST_LABEL, need

# Every container a test (or product code under test) starts should carry these labels: the
# session's clean-up removes its own and dead sessions' only (engine.owner_labels).
TEST_CONTAINER_LABELS: dict[str, str] = engine.owner_labels(TEST_LABEL)


@dataclass(frozen=True)
class WebImages:
    """Tags of the test web images. `broken` runs and serves "/" but answers 404 on /health."""

    v1: str = "orch-test/web:v1"
    v2: str = "orch-test/web:v2"
    broken: str = "orch-test/web:broken"
    port: int = images.APP_PORT  # the port httpd listens on inside the container
    health_path: str = images.HEALTH_PATH
    ids: dict[str, str] = field(default_factory=dict)  # tag -> image id


def build_image(
    client: docker.DockerClient, tag: str, dockerfile: str, files: dict[str, bytes | Path]
) -> Image:
    """Build with the legacy builder (what docker-py uses); the image always gets TEST_LABEL."""
    return images.build_image(client, tag, dockerfile, dict(files), {TEST_LABEL: "1"})


def run_test_container(client: docker.DockerClient, image: str, **kwargs: Any) -> Container:
    """Run detached with init=True (busybox as PID 1 ignores SIGTERM) and the test labels."""
    kwargs["labels"] = {**kwargs.get("labels", {}), **TEST_CONTAINER_LABELS}
    kwargs.setdefault("init", True)
    kwargs.setdefault("detach", True)
    return client.containers.run(image, **kwargs)


def published_port(container: Container, container_port: str = f"{images.APP_PORT}/tcp") -> int:
    """The host port Docker bound for `container_port` (for ports={...: (ip, None)})."""
    container.reload()
    bindings = container.attrs["NetworkSettings"]["Ports"][container_port]
    return int(bindings[0]["HostPort"])


def container_events(client: docker.DockerClient, box: str, since: datetime) -> list[dict]:
    """The engine's events for the box's containers from `since` (to the nanosecond) to now.

    docker-py sends a datetime as whole seconds, so the engine also returns events of the
    second before `since` (the last deploy's `start`, when a test begins within its second).
    """
    after = int(since.timestamp() * 1e9)
    events = client.events(since=int(since.timestamp()), until=datetime.now(UTC), decode=True,
                           filters={"type": "container", "label": f"{Label.BOX}={box}"})
    return [e for e in events if int(e.get("timeNano", 0)) >= after]


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = engine.connect()
    except ServiceError as exc:
        need(False, str(exc))
        raise
    try:
        engine.remove_owned(client, TEST_LABEL, only_orphans=True)
        yield client
        engine.remove_owned(client, TEST_LABEL, only_orphans=False)
    finally:
        client.close()


@pytest.fixture(scope="session")
def test_images(docker_client: docker.DockerClient) -> WebImages:
    """Build (cached by the engine across sessions) the web images; kept after the session."""
    try:
        images.check_busybox()
    except MissingTool as exc:
        need(False, str(exc))
    web = WebImages()
    for tag in (web.v1, web.v2, web.broken):
        version = tag.rsplit(":", 1)[1]
        built = images.build_web_image(
            docker_client, tag, f"{version}\n", {TEST_LABEL: "1"},
            extra_labels={f"{TEST_LABEL}.web": version}, health=version != "broken",
        )  # broken: no /health, httpd answers 404
        web.ids[tag] = built.id
    return web


@pytest.fixture
def run_container(docker_client: docker.DockerClient) -> Iterator[Callable[..., Container]]:
    """run_container(image, **docker_run_kwargs) -> Container; removed when the test ends."""
    started: list[Container] = []

    def run(image: str, **kwargs: Any) -> Container:
        container = run_test_container(docker_client, image, **kwargs)
        started.append(container)
        return container

    yield run
    for container in started:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
