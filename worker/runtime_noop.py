"""A container runtime that does nothing, in memory: only for benchmarking orchestration."""

from __future__ import annotations

import builtins
import itertools
import threading

from schemas.contract import Label
from worker.facts import ContainerFact, RunRequest

BOX_LABEL = Label.BOX


class NoopRuntime:
    """Remembers containers instead of running them (ORCHESTRATOR_RUNTIME=noop).

    Used by benchmarks/ to measure the orchestration itself: every step takes the same code
    path as on a real box, but create, start, stop and remove cost nothing.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._containers: dict[str, ContainerFact] = {}
        # box label -> its containers' ids: a worker serving thousands of simulated boxes lists
        # one box's in O(its own), not O(all) (the heartbeat lists every box, every beat).
        self._by_box: dict[str, set[str]] = {}

    def list(
        self, labels: dict[str, str] | None = None, names: builtins.list[str] | None = None,
        *, brief: bool = False,
    ) -> builtins.list[ContainerFact]:
        box = (labels or {}).get(BOX_LABEL)  # brief or not: what it keeps is all there is
        with self._lock:
            if box is None:
                found = list(self._containers.values())
            else:
                found = [self._containers[i] for i in self._by_box.get(box, ())]
        if labels:
            found = [f for f in found if all(f.labels.get(k) == v for k, v in labels.items())]
        if names is not None:
            found = [f for f in found if f.name in names]
        return found

    def pull(self, ref: str, auth: dict[str, str] | None = None) -> str:
        return "sha256:noop"

    def has_image(self, ref: str) -> bool:
        return True

    def run(self, req: RunRequest) -> ContainerFact:
        fact = ContainerFact(
            id=f"noop{next(self._ids)}",
            name=req.name,
            image=req.image,
            image_id="sha256:noop",
            state="running",
            labels=dict(req.labels),
            created="",
            ports=tuple(req.ports),
        )
        with self._lock:
            self._containers[fact.id] = fact
            self._by_box.setdefault(fact.labels.get(BOX_LABEL, ""), set()).add(fact.id)
        return fact

    def _set(self, container_id: str, **changes: object) -> None:
        from dataclasses import replace

        with self._lock:
            if container_id in self._containers:
                self._containers[container_id] = replace(
                    self._containers[container_id],
                    **changes,  # type: ignore[arg-type]
                )

    def stop(self, container_id: str, timeout: int) -> None:
        self._set(container_id, state="exited")

    def start(self, container_id: str) -> None:
        self._set(container_id, state="running")

    def rename(self, container_id: str, new_name: str) -> None:
        self._set(container_id, name=new_name)

    def remove(self, container_id: str) -> None:
        with self._lock:
            fact = self._containers.pop(container_id, None)
            if fact is not None:
                self._by_box.get(fact.labels.get(BOX_LABEL, ""), set()).discard(container_id)

    def logs_tail(self, container_id: str, lines: int = 20) -> str:
        return ""

    def exec(self, container_id: str, argv: builtins.list[str], timeout: float) -> int:
        return 0

    def version(self) -> str:
        return "noop"
