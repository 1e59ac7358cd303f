"""The engine's version read from its `Server` header (worker/runtime.py: engine_version)."""

from __future__ import annotations

import pytest

from worker.runtime import engine_version


@pytest.mark.parametrize(("server", "version"), [
    ("Docker/20.10.24+dfsg1 (linux)", "20.10.24+dfsg1"),
    ("Docker/27.3.1 (linux)", "27.3.1"),
    ("Docker/26.1.0-ce (windows)", "26.1.0-ce"),
    ("Docker/28.0.0~rc1 ()", "28.0.0~rc1"),
])
def test_the_docker_engines_form(server: str, version: str) -> None:
    assert engine_version(server) == version


@pytest.mark.parametrize("server", [
    None, "", "Libpod/4.9.3 (linux)", "Docker/ (linux)", "Docker/20.10 (linux) extra",
    "docker/20.10 (linux)", "Docker/20.10", "Docker/20 10 (linux)", "Docker/٢٠.10 (linux)",
    "nginx/1.25.3", "Docker/v20.10 (linux)",
])
def test_anything_else_is_not_read(server: str | None) -> None:
    assert engine_version(server) is None  # the caller asks GET /version instead
