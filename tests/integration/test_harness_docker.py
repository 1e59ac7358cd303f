"""The Docker harness: a container from the locally built v1 image serves "v1" on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable

import docker
import requests
from docker.models.containers import Container

from tests.harness.common import TEST_LABEL, wait_for
from tests.harness.docker_fx import WebImages, published_port


def _get(port: int, path: str) -> requests.Response:
    with requests.Session() as session:
        return session.get(f"http://127.0.0.1:{port}{path}", timeout=1)


def _ok(port: int, path: str) -> requests.Response | None:
    response = _get(port, path)
    return response if response.ok else None


def test_v1_container_serves_v1_then_is_removed(
    docker_client: docker.DockerClient,
    test_images: WebImages,
    run_container: Callable[..., Container],
) -> None:
    container = run_container(
        test_images.v1, ports={f"{test_images.port}/tcp": ("127.0.0.1", None)}
    )
    assert container.labels[TEST_LABEL] == "1"
    port = published_port(container)

    page = wait_for(lambda: _ok(port, "/"), "v1 container to answer HTTP")
    assert page.text.strip() == "v1"
    assert _get(port, test_images.health_path).status_code == 200

    container.remove(force=True)
    # One listing call: docker-py's containers.list() inspects each container and fails when
    # another test (a parallel session) removes one meanwhile.
    ids = {c["Id"] for c in docker_client.api.containers(all=True)}
    assert container.id not in ids


def test_broken_image_fails_its_health_check(
    test_images: WebImages, run_container: Callable[..., Container]
) -> None:
    container = run_container(
        test_images.broken, ports={f"{test_images.port}/tcp": ("127.0.0.1", None)}
    )
    port = published_port(container)
    wait_for(lambda: _ok(port, "/"), "broken container to answer on /")
    assert _get(port, test_images.health_path).status_code == 404
