"""Fencing at every action: a step changes a container or a load balancer only while its token
is still the box's and its rollout still lives, checked just before the action.

What this cannot close: the one action whose check passed just before the process was paused
(or the check's answer was in flight), and a request already sent to dockerd or the load
balancer. docs/architecture.md names this window.
"""

from __future__ import annotations

import builtins
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import redis

from orchestrator.engine.lb.base import LoadBalancer, MemberState, MovableLB
from orchestrator.engine.lease import Lease
from orchestrator.engine.redisconn import RedisClient
from orchestrator.errors import Fenced
from schemas.contract import Keys
from worker.facts import ContainerFact, ContainerRuntime, RunRequest

log = logging.getLogger("orchestrator.worker.fence")

# Checks `action` (e.g. "stop", "leave") and raises Fenced when the chain may no longer act.
Guard = Callable[[str], None]


@dataclass(frozen=True)
class ChainFence:
    """A chain may act while the box's owner is its token and, for a token a rollout claimed,
    while that rollout is recorded and has not ended (one round trip: lua/fence.lua)."""

    redis: RedisClient
    keys: Keys
    box_id: str
    token: str

    def __call__(self, action: str) -> None:
        try:
            why = Lease(self.redis, self.keys).may_act(self.box_id, self.token)
        except redis.RedisError as exc:  # cannot prove it may act: it does not
            raise Fenced(f"{action} not done: Redis does not answer ({exc})") from None
        if why:
            raise Fenced(f"{action} not done: this box's token {self.token} {why}")


class Fault:
    """Drills and tests only (ORCHESTRATOR_FAULT_POINT=`<step>:<action>[=stop|kill]`): the worker
    stops (SIGSTOP) or dies (SIGKILL) just before that action, at a point tests can name."""

    def __init__(self, point: str | None) -> None:
        where, _, how = (point or "").partition("=")
        self.where, self.how = where, how or "stop"

    def hit(self, step: str, action: str) -> None:
        if not self.where or self.where not in (f"{step}:{action}", action):
            return
        self.where = ""  # once per process
        log.warning("fault point %s:%s reached: %s", step, action, self.how)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os.kill(os.getpid(), signal.SIGKILL if self.how == "kill" else signal.SIGSTOP)


class FencedRuntime:
    """The container runtime, with the guard asked before every change (reads pass)."""

    def __init__(self, inner: ContainerRuntime, guard: Guard, fault: Callable[[str], None]):
        self.inner, self.guard, self.fault = inner, guard, fault

    def _act(self, action: str) -> None:
        self.fault(action)
        self.guard(action)

    def list(
        self, labels: dict[str, str] | None = None, names: builtins.list[str] | None = None,
        *, brief: bool = False,
    ) -> builtins.list[ContainerFact]:
        return self.inner.list(labels=labels, names=names, brief=brief)

    def pull(self, ref: str, auth: dict[str, str] | None = None) -> str:
        return self.inner.pull(ref, auth)

    def has_image(self, ref: str) -> bool:
        return self.inner.has_image(ref)

    def run(self, req: RunRequest) -> ContainerFact:
        self._act("run")
        return self.inner.run(req)

    def stop(self, container_id: str, timeout: int) -> None:
        self._act("stop")
        self.inner.stop(container_id, timeout)

    def start(self, container_id: str) -> None:
        self._act("start")
        self.inner.start(container_id)

    def rename(self, container_id: str, new_name: str) -> None:
        self._act("rename")
        self.inner.rename(container_id, new_name)

    def remove(self, container_id: str) -> None:
        self._act("remove")
        self.inner.remove(container_id)

    def logs_tail(self, container_id: str, lines: int = 20) -> str:
        return self.inner.logs_tail(container_id, lines)

    def exec(self, container_id: str, argv: builtins.list[str], timeout: float) -> int:
        return self.inner.exec(container_id, argv, timeout)


class FencedLB:
    """A load balancer adapter, with the guard asked before a member leaves or joins."""

    def __init__(self, inner: LoadBalancer, guard: Guard, fault: Callable[[str], None]):
        self.inner, self.guard, self.fault = inner, guard, fault

    @property
    def name(self) -> str:
        return self.inner.name

    def leave(self, member: str) -> None:
        self.fault("leave")
        self.guard("leave")
        self.inner.leave(member)

    def wait_drained(self, member: str, timeout: float) -> None:
        self.inner.wait_drained(member, timeout)

    def join(self, member: str) -> None:
        self.fault("join")
        self.guard("join")
        self.inner.join(member)

    def wait_in_service(self, member: str, timeout: float) -> None:
        self.inner.wait_in_service(member, timeout)

    def members(self) -> list[MemberState]:
        return self.inner.members()

    def state(self, member: str) -> MemberState:
        return self.inner.state(member)

    # start-first: the member moves while in service (the adapter is a MovableLB).
    def member_port(self, member: str) -> int | None:
        return cast(MovableLB, self.inner).member_port(member)

    def check_port(self, member: str) -> int | None:
        return cast(MovableLB, self.inner).check_port(member)

    def move(self, member: str, port: int, check_port: int | None = None) -> None:
        self.fault("move")
        self.guard("move")
        cast(MovableLB, self.inner).move(member, port, check_port)
        self.fault("moved")  # drills: a worker dying just after the move

    def wait_moved(self, member: str, old_port: int, timeout: float) -> None:
        cast(MovableLB, self.inner).wait_moved(member, old_port, timeout)
