"""Serving a Prometheus registry over HTTP, for the coordinator's exporter and a worker's own."""

from __future__ import annotations

from typing import Any

from orchestrator.errors import ConfigError


def serve_registry(registry: Any, listen: str, what: str) -> Any:
    """prometheus_client's server on `host:port` (a thread): (server, thread). An address that
    can't be served (taken, not this machine's, a port the user may not bind) is a ConfigError
    naming `what` (the option or setting), not a traceback from the socket."""
    from prometheus_client import start_http_server

    host, _, port = listen.rpartition(":")
    try:
        return start_http_server(int(port), addr=host or "0.0.0.0", registry=registry)
    except OSError as exc:
        raise ConfigError(
            f"{what} {listen}: cannot serve there ({exc.strerror}); choose a free port or an "
            "address of this machine"
        ) from None
