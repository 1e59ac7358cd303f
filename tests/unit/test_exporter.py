"""An exporter's listen address that can't be served is one ConfigError naming its option."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from orchestrator.engine.exporter import serve_registry
from orchestrator.errors import ConfigError
from worker.metrics import WorkerMetrics
from worker.runtime_noop import NoopRuntime

pytestmark = pytest.mark.unit


@pytest.fixture
def taken() -> Iterator[str]:
    """host:port a listening socket already holds."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield f"127.0.0.1:{holder.getsockname()[1]}"


def test_a_taken_port_names_the_option(taken: str) -> None:
    with pytest.raises(ConfigError, match=rf"--listen {taken}: cannot serve there \(Address "
                                          "already in use\\); choose a free port"):
        serve_registry(CollectorRegistry(), taken, "--listen")


def test_an_address_not_of_this_machine_names_the_option() -> None:
    with pytest.raises(ConfigError, match=r"--listen 192\.0\.2\.1:9464: cannot serve there"):
        serve_registry(CollectorRegistry(), "192.0.2.1:9464", "--listen")  # TEST-NET-1


def test_the_workers_own_exporter_names_its_setting(taken: str) -> None:
    metrics = WorkerMetrics(NoopRuntime(), ["box1"])
    with pytest.raises(ConfigError, match=f"ORCHESTRATOR_METRICS_LISTEN {taken}: cannot serve"):
        metrics.serve(taken)


def test_a_free_port_is_served() -> None:
    server, thread = serve_registry(CollectorRegistry(), "127.0.0.1:0", "--listen")
    try:
        assert server.server_address[1] > 0 and thread.is_alive()
    finally:
        server.shutdown()
        server.server_close()
