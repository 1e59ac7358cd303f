"""Test configuration: markers by folder, and the real-service fixtures from tests/harness."""

from __future__ import annotations

import pytest

# Each harness module owns the fixtures of one real service.
pytest_plugins = [
    "tests.harness.redis_fx",
    "tests.harness.sentinel_fx",
    "tests.harness.docker_fx",
    "tests.harness.registry_fx",
    "tests.harness.celery_fx",
    "tests.harness.aws_fx",
    "tests.harness.haproxy_fx",
    "tests.harness.box_fx",
    "tests.harness.rollout_fx",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.path)
        if "/tests/unit/" in path:
            item.add_marker(pytest.mark.unit)
        elif "/tests/integration/" in path:
            item.add_marker(pytest.mark.integration)
