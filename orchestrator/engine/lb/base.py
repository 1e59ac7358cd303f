"""The LoadBalancer protocol every adapter implements, and the deadline-bound poll they share."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from orchestrator.errors import LoadBalancerError

# Polling faster than this only loads the LB's API; slower makes every swap longer.
DEFAULT_POLL_INTERVAL = 0.2


@dataclass(frozen=True)
class MemberState:
    """What one load balancer says about one member, in its own words and in ours."""

    member: str
    in_service: bool  # the LB sends it new traffic now
    raw: str  # the LB's own description, for messages and logs
    sessions: int | None = None  # open sessions, where the LB reports them
    port: int | None = None  # the member's port, where the LB reports one


@runtime_checkable
class LoadBalancer(Protocol):
    """Take a member out of service and put it back; every wait has a deadline."""

    @property
    def name(self) -> str:
        """Names the load balancer in messages, e.g. `haproxy backend web`."""
        ...

    def leave(self, member: str) -> None:
        """Start taking `member` out of service; a member not registered counts as done."""
        ...

    def wait_drained(self, member: str, timeout: float) -> None:
        """Block until no traffic is sent to `member`; LoadBalancerError at the deadline."""
        ...

    def join(self, member: str) -> None:
        """Put `member` back in service; the caller has proven it healthy first."""
        ...

    def wait_in_service(self, member: str, timeout: float) -> None:
        """Block until the LB sends `member` traffic; LoadBalancerError at the deadline."""
        ...

    def members(self) -> list[MemberState]:
        """Every registered member and whether it serves (the capacity guard counts them)."""
        ...

    def state(self, member: str) -> MemberState:
        """The member's current state as the load balancer reports it."""
        ...


@runtime_checkable
class MovableLB(Protocol):
    """A load balancer whose member can move to another port while it stays in service
    (start-first swaps): HAProxy's runtime API, an ELBv2 target group."""

    def member_port(self, member: str) -> int | None:
        """The port new requests for `member` go to now (None: not registered)."""
        ...

    def check_port(self, member: str) -> int | None:
        """The health check's own port, when one is configured apart from the member's."""
        ...

    def move(self, member: str, port: int, check_port: int | None = None) -> None:
        """Send `member`'s new requests to `port` (and its check to `check_port`)."""
        ...

    def wait_moved(self, member: str, old_port: int, timeout: float) -> None:
        """Block until nothing is in flight on `old_port`; LoadBalancerError at the deadline."""
        ...


def poll_state(
    lb_name: str,
    member: str,
    what: str,
    probe: Callable[[], MemberState],
    done: Callable[[MemberState], bool],
    timeout: float,
    interval: float = DEFAULT_POLL_INTERVAL,
) -> MemberState:
    """Probe until `done` holds; at the deadline raise naming the LB, member and last state."""
    deadline = time.monotonic() + timeout
    while True:
        state = probe()
        if done(state):
            return state
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LoadBalancerError(
                f"{lb_name}: {member} not {what} after {timeout:.1f}s (last state: {state.raw})"
            )
        time.sleep(min(interval, remaining))
