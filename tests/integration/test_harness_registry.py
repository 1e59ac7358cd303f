"""The registry harness: push an image, remove it locally, pull it back by digest."""

from __future__ import annotations

import contextlib
import uuid

import docker
import pytest

from devstack.registry import Registry
from tests.harness.common import TEST_LABEL
from tests.harness.docker_fx import WebImages, build_image


def test_push_rmi_pull_by_digest(
    docker_client: docker.DockerClient, test_images: WebImages, registry: Registry
) -> None:
    # A unique image (a nonce layer on top of v1), so removing it cannot hurt shared images
    # and the pull has a layer the engine really lacks.
    nonce = uuid.uuid4().hex[:12]
    local = f"orch-test/pushme:{nonce}"
    built = build_image(
        docker_client,
        local,
        f"FROM {test_images.v1}\nCOPY nonce /nonce\n",
        {"nonce": nonce.encode()},
    )
    try:
        ref = registry.push(docker_client, local, "pushme", nonce)
        host, _, digest = ref.partition("/pushme@")
        assert host == registry.host and digest.startswith("sha256:")
        assert registry.manifest_digest("pushme", nonce) == digest

        docker_client.images.remove(built.id, force=True)  # drops both local tags
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.images.get(built.id)

        pulled = docker_client.images.pull(ref)
        assert pulled.id == built.id  # same config digest: the very same image came back
        assert ref in pulled.attrs["RepoDigests"]
        assert pulled.labels[TEST_LABEL] == "1"
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(built.id, force=True)
