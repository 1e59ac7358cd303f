"""Fixtures: the Docker engine, small FROM-scratch test images, labelled test containers."""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.models.containers import Container
from docker.models.images import Image

from tests.harness.common import TEST_LABEL, need

BUSYBOX = Path("/bin/busybox")
# Which pytest process made a container: session clean-up removes its own and orphans' only,
# so two test sessions on one engine do not remove each other's containers.
OWNER_LABEL = f"{TEST_LABEL}.owner-pid"
# Every container a test (or product code under test) starts should carry these labels.
TEST_CONTAINER_LABELS: dict[str, str] = {TEST_LABEL: "1", OWNER_LABEL: str(os.getpid())}

APP_PORT = 8080
HEALTH_PATH = "/health"
_WEB_DOCKERFILE = f"""\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/bin
COPY www /www
LABEL {TEST_LABEL}=1 {TEST_LABEL}.web={{version}}
EXPOSE {APP_PORT}
CMD ["busybox", "httpd", "-f", "-p", "{APP_PORT}", "-h", "/www"]
"""


@dataclass(frozen=True)
class WebImages:
    """Tags of the test web images. `broken` runs and serves "/" but answers 404 on /health."""

    v1: str = "orch-test/web:v1"
    v2: str = "orch-test/web:v2"
    broken: str = "orch-test/web:broken"
    port: int = APP_PORT  # the port httpd listens on inside the container
    health_path: str = HEALTH_PATH
    ids: dict[str, str] = field(default_factory=dict)  # tag -> image id


def _is_static_elf(path: Path) -> bool:
    """True when the ELF has no PT_INTERP header: it runs in an image FROM scratch."""
    data = path.read_bytes()
    if data[:5] != b"\x7fELF\x02":  # 64-bit ELF only; that is what Debian ships here
        return False
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    types = (struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum))
    return 3 not in types  # PT_INTERP = 3


def build_image(
    client: docker.DockerClient,
    tag: str,
    dockerfile: str,
    files: dict[str, bytes | Path],
) -> Image:
    """Build with the legacy builder (what docker-py uses); the image always gets TEST_LABEL."""
    with tempfile.TemporaryDirectory(prefix="orch-build-") as ctx:
        root = Path(ctx)
        (root / "Dockerfile").write_text(dockerfile)
        for name, content in files.items():
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                shutil.copy2(content, target)
            else:
                target.write_bytes(content)
        image, _logs = client.images.build(
            path=ctx, tag=tag, rm=True, forcerm=True, labels={TEST_LABEL: "1"}
        )
    return image


def run_test_container(client: docker.DockerClient, image: str, **kwargs: Any) -> Container:
    """Run detached with init=True (busybox as PID 1 ignores SIGTERM) and the test labels."""
    kwargs["labels"] = {**kwargs.get("labels", {}), **TEST_CONTAINER_LABELS}
    kwargs.setdefault("init", True)
    kwargs.setdefault("detach", True)
    return client.containers.run(image, **kwargs)


def published_port(container: Container, container_port: str = f"{APP_PORT}/tcp") -> int:
    """The host port Docker bound for `container_port` (for ports={...: (ip, None)})."""
    container.reload()
    bindings = container.attrs["NetworkSettings"]["Ports"][container_port]
    return int(bindings[0]["HostPort"])


def remove_test_containers(client: docker.DockerClient, only_orphans: bool) -> None:
    """Remove labelled containers of this session (unless only_orphans) or of dead sessions."""
    # sparse: no inspect per container, which races with other sessions removing theirs.
    for container in client.containers.list(all=True, sparse=True, filters={"label": TEST_LABEL}):
        owner = (container.attrs.get("Labels") or {}).get(OWNER_LABEL, "")
        mine = owner == str(os.getpid())
        if (mine and not only_orphans) or (not mine and not _pid_alive(owner)):
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                # Another session is removing the same leftover right now: that is fine.
                if exc.status_code != 409:
                    raise


def _pid_alive(pid: str) -> bool:
    if not pid.isdigit():
        return False  # no owner recorded: nobody else can be relying on it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env()
    except docker.errors.DockerException as exc:
        need(False, f"Docker engine not reachable: {exc}")
        raise
    try:
        try:
            answered = bool(client.ping())
        except docker.errors.DockerException:
            answered = False
        need(answered, "Docker engine does not answer ping (start dockerd)")
        remove_test_containers(client, only_orphans=True)
        yield client
        remove_test_containers(client, only_orphans=False)
    finally:
        client.close()


@pytest.fixture(scope="session")
def test_images(docker_client: docker.DockerClient) -> WebImages:
    """Build (cached by the engine across sessions) the web images; kept after the session."""
    need(
        BUSYBOX.is_file() and _is_static_elf(BUSYBOX),
        f"{BUSYBOX} must be Debian's statically linked busybox (apt-get install busybox-static)",
    )
    images = WebImages()
    pages: dict[str, dict[str, bytes]] = {
        images.v1: {"www/index.html": b"v1\n", "www/health": b"ok\n"},
        images.v2: {"www/index.html": b"v2\n", "www/health": b"ok\n"},
        images.broken: {"www/index.html": b"broken\n"},  # no /health: httpd answers 404
    }
    for tag, files in pages.items():
        version = tag.rsplit(":", 1)[1]
        built = build_image(
            docker_client,
            tag,
            _WEB_DOCKERFILE.format(version=version),
            {"busybox": BUSYBOX, **files},
        )
        images.ids[tag] = built.id
    return images


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
