"""start-first fixtures: the box.yml of a start-first app behind HAProxy, a fleet deployed on
its first version, and what HAProxy says of the members (sampled, logged, ports)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tests.harness.rollout_fx import PORT, Fleet

ALT = PORT + 1
START_FIRST = """\
apps:
  web:
    elb: web
    lb_kind: haproxy
    strategy: start-first
    alternate_ports: {{{port}: {alt}}}
    image: {image}
    containers:
      web:
        ports: ["{port}:8080"]
        health: {{http: /health, interval: 0.1, timeout: 1, retries: 15}}
"""


def write(fleet: Fleet, tag: str) -> None:
    text = START_FIRST.format(port=PORT, alt=ALT, image=f"{fleet.images.repo}:{tag}")
    (fleet.boxes_dir / f"{fleet.box_type}.yml").write_text(text)


class Sampler:
    """`show servers state` of the backend, sampled in a thread: every admin state seen, and
    the fewest servers serving (op running, admin 0) at any sample."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet, self.admin_seen, self.fewest = fleet, set[int](), len(fleet.workers)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rows = self.fleet.lb._server_rows()
            admin = [int(r["srv_admin_state"]) for r in rows]
            serving = sum(1 for r in rows if r["srv_op_state"] == "2" and
                          r["srv_admin_state"] == "0")
            self.admin_seen.update(admin)
            self.fewest = min(self.fewest, serving)
            self.samples += 1
            self._stop.wait(0.01)

    @contextmanager
    def running(self) -> Iterator[Sampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=10)


def out_of_service_changes(fleet: Fleet) -> list[str]:
    """HAProxy's own log: every server going DOWN, to DRAIN or to maintenance."""
    return [f"{c.server}: {c.text}" for c in fleet.proxy.state_changes()
            if any(w in c.text for w in ("DOWN", "DRAIN", "maintenance"))]


def ports(fleet: Fleet) -> dict[str, int | None]:
    return {w.box_id: fleet.lb.member_port(w.box_id) for w in fleet.workers}


def deployed(fleet_factory: Callable[..., Fleet], n: int, **options: Any) -> Fleet:
    """`n` boxes (fleet_factory's `options`) on v1, start-first, every member in service."""
    fleet = fleet_factory(n, **options)
    write(fleet, "v1")
    first = fleet.cli("rollout", fleet.box_type, "--reason", "first deploy")
    assert first.returncode == 0, first.stderr
    fleet.wait_all_in_service()
    assert set(ports(fleet).values()) == {PORT}
    return fleet
