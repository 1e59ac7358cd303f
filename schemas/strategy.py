"""start-first swaps: which apps may use them, and which host ports each version takes. Pure."""

from __future__ import annotations

from collections.abc import Iterable

from schemas.boxfile import AppSpec, BoxSpec

START_FIRST = "start-first"
# The kinds whose member can move to another port while it stays in service.
MOVABLE_KINDS = ("haproxy", "elbv2")


def is_start_first(app: AppSpec) -> bool:
    return app.strategy == START_FIRST


def published_host_ports(app: AppSpec) -> list[int]:
    """Every host port the app's containers publish (`ports:`), in file order."""
    return [p.host_port for c in app.containers.values() for p in c.ports]


def lb_host_port(app: AppSpec) -> int | None:
    """The host port the load balancer sends to: `lb_port`, else the first published one."""
    if app.lb_port is not None:
        return app.lb_port
    ports = published_host_ports(app)
    return ports[0] if ports else None


def color_map(app: AppSpec, running: Iterable[int]) -> dict[int, int]:
    """Declared host port -> the host port the next version publishes it on: the set the
    running version does not use (the declared `ports:` when nothing runs on them)."""
    taken = set(running)
    on_alternate = any(alt in taken for alt in app.alternate_ports.values())
    if on_alternate:
        return {p: p for p in app.alternate_ports}
    return dict(app.alternate_ports)


def port_now(app: AppSpec, running: Iterable[int]) -> int | None:
    """The load balancer port of the version that publishes `running` host ports."""
    lb = lb_host_port(app)
    if lb is None:
        return None
    taken = set(running)
    alt = app.alternate_ports.get(lb)
    if alt is not None and alt in taken:
        return alt
    return lb if lb in taken else None


def other_port(app: AppSpec, port: int) -> int:
    """A host port of one set -> the same port of the other set (unknown ports unchanged)."""
    alt = app.alternate_ports
    back = {v: k for k, v in alt.items()}
    return alt.get(port, back.get(port, port))


def strategy_problems(
    spec: BoxSpec, default_kind: str
) -> list[tuple[str, str]]:
    """(field path, why and how to fix) for every app that can't use its strategy."""
    out: list[tuple[str, str]] = []
    depended = {d: a for a, s in spec.apps.items() for d in s.depends}
    every_port = {p for s in spec.apps.values() for p in published_host_ports(s)}
    alternates: dict[int, str] = {}  # alternate port -> the first field path naming it
    for name, app in spec.apps.items():
        base = f"apps.{name}"
        if not is_start_first(app):
            if app.alternate_ports:
                out.append((f"{base}.alternate_ports", "alternate ports are used only by "
                            "`strategy: start-first`; set it or remove alternate_ports"))
            continue
        kind = "none" if app.elb is None else (app.lb_kind or default_kind)
        why = _lb_refusal(app, kind)
        if why:
            out.append((f"{base}.strategy", why))
        if name in depended:
            out.append((f"{base}.strategy", f"app {depended[name]!r} depends on {name!r}: "
                        "its dependents restart with it, so it can't stay in service while "
                        "it swaps; use stop-first"))
        out += _port_problems(base, app, every_port, kind, alternates)
    return out


def _lb_refusal(app: AppSpec, kind: str) -> str:
    if kind == "none":
        return ("start-first moves the box's load balancer member to the new containers; "
                "this app has none (`elb:`): use stop-first, or name its load balancer")
    if kind not in MOVABLE_KINDS:
        return ("a classic ELB (lb_kind elb) member has a fixed instance port, so it can't move "
                "to the new containers' port: use stop-first, or an ELBv2 target group "
                "(lb_kind: elbv2) or HAProxy")
    return ""


def _port_problems(
    base: str, app: AppSpec, every_port: set[int], kind: str, alternates: dict[int, str]
) -> list[tuple[str, str]]:
    """`alternates`: the box's alternate ports so far (two apps' next versions can't share
    one), filled in here."""
    out: list[tuple[str, str]] = []
    mine = published_host_ports(app)
    if not mine:
        out.append((f"{base}.strategy", "start-first needs a published port to move the "
                    "load balancer member to; publish one in `ports:` or use stop-first"))
    if kind == "elbv2" and app.lb_port is None:
        out.append((f"{base}.lb_port", "start-first on ELBv2 registers the box on a port of "
                    "its own: set lb_port to the published host port the group sends to"))
    if app.lb_port is not None and mine and app.lb_port not in mine:
        out.append((f"{base}.lb_port", f"lb_port {app.lb_port} is not a published host "
                    f"port of the app ({', '.join(map(str, mine))}); use one of them"))
    for port in mine:
        if port not in app.alternate_ports:
            out.append((f"{base}.alternate_ports", f"host port {port} has no alternate: add "
                        f"`{port}: <a free host port>` (the next version publishes it there)"))
    for port, alt in app.alternate_ports.items():
        if port not in mine:
            out.append((f"{base}.alternate_ports.{port}", f"{port} is not a published host "
                        "port of the app; keys are host ports from `ports:`"))
        if not 1 <= alt <= 65535:
            out.append((f"{base}.alternate_ports.{port}", f"alternate port {alt} is not a "
                        "port (1-65535): pick a free host port"))
        elif alt in every_port:
            out.append((f"{base}.alternate_ports.{port}", f"alternate port {alt} is already "
                        "published on this box (`ports:`): pick a free host port"))
        elif alt in alternates:
            out.append((f"{base}.alternate_ports.{port}", f"alternate port {alt} is the "
                        f"alternate of another port too ({alternates[alt]}): give each its "
                        "own free host port"))
        alternates.setdefault(alt, f"{base}.alternate_ports.{port}")
    return out
