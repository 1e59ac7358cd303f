"""The load balancer of an app that has none: every step is done at once."""

from __future__ import annotations

from orchestrator.engine.lb.base import MemberState


class NoopLB:
    """No load balancer (or a benchmark without one): members are always in service."""

    def __init__(self, name: str = "none") -> None:
        self.name = f"no load balancer ({name})"

    def leave(self, member: str) -> None:
        return None

    def wait_drained(self, member: str, timeout: float) -> None:
        return None

    def join(self, member: str) -> None:
        return None

    def wait_in_service(self, member: str, timeout: float) -> None:
        return None

    def members(self) -> list[MemberState]:
        return []

    def state(self, member: str) -> MemberState:
        return MemberState(member, in_service=True, raw="no load balancer", sessions=None)
