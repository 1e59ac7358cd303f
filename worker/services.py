"""Standard services from the fleet catalog: ensured after the apps, reconciled on a timer."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace

from orchestrator.errors import OrchestratorError
from schemas.contract import Label
from schemas.release import Release, service_spec_hash
from worker.facts import BoxEnv
from worker.runspec import build_run_request, log_dirs
from worker.secrets import resolve_env

log = logging.getLogger("orchestrator.worker.services")


def ensure_services(env: BoxEnv, release: Release, token: str) -> list[str]:
    """Start what is missing, replace what changed, remove what is no longer named."""
    import os

    changed: list[str] = []
    facts = env.runtime.list(labels={Label.BOX: env.box_id, Label.ROLE: "service"})
    for name, spec in release.services.items():
        wanted = service_spec_hash(spec)
        mine = [f for f in facts if f.labels.get(Label.CONTAINER) == name]
        if len(mine) == 1 and mine[0].spec_hash == wanted and mine[0].state == "running":
            continue
        for fact in mine:
            env.runtime.remove(fact.id)
        req = build_run_request(
            box_id=env.box_id,
            box_type=env.box_type,
            app="svc",
            container=name,
            spec=spec,
            image=spec.image,
            env=resolve_env(spec.env, env.ssm),
            spec_hash=wanted,
            release=release.id,
            token=token,
            role="service",
            log_root=env.log_root,
            bind_ip=env.bind_ip,
            hostname=env.hostname,
        )
        if env.extra_labels:
            req = replace(req, labels={**req.labels, **env.extra_labels})
        for d in log_dirs(req):
            os.makedirs(d, exist_ok=True)
        env.runtime.run(req)
        changed.append(name)
    for fact in facts:
        if fact.labels.get(Label.CONTAINER) not in release.services:
            env.runtime.remove(fact.id)
            changed.append(f"-{fact.labels.get(Label.CONTAINER)}")
    return changed


class ServiceReconciler(threading.Thread):
    """Every `interval` seconds, bring the services back to the last ensured release."""

    def __init__(
        self, interval: float, tick: Callable[[], None], name: str = "services-reconciler"
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.interval = interval
        self.tick = tick
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.tick()
            except OrchestratorError as exc:
                log.warning("service reconcile failed: %s", exc)
            except Exception:
                log.exception("service reconcile crashed; trying again next interval")

    def stop(self) -> None:
        self.stopped.set()
