"""Checks beyond types: dependencies, cycles, port clashes, catalog, deadlines. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.boxfile import BoxSpec, PortMapping
from schemas.depgraph import DependencyCycle, start_order
from schemas.fleet import FleetSettings

# Room in a swap step beyond the health deadline: stop the old containers, start the new.
STEP_MARGIN = 5.0


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file, located by its field path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def _clash(a: PortMapping, b: PortMapping) -> bool:
    same_ip = a.host_ip is None or b.host_ip is None or a.host_ip == b.host_ip
    return same_ip and a.host_port == b.host_port and a.protocol == b.protocol


def check_box(spec: BoxSpec, fleet: FleetSettings | None = None) -> list[Problem]:
    """Every problem of a structurally valid box.yml that types alone can't catch."""
    return (
        _check_depends(spec)
        + _check_ports(spec, fleet)
        + _check_health(spec, fleet)
        + _check_services(spec, fleet)
        + check_provision(spec, fleet)
    )


def _check_depends(spec: BoxSpec) -> list[Problem]:
    """Each depends names another app of the file, and the apps form no cycle."""
    problems: list[Problem] = []
    for app_name, app in spec.apps.items():
        for i, dep in enumerate(app.depends):
            path = f"apps.{app_name}.depends[{i}]"
            if dep == app_name:
                problems.append(Problem(path, f"app {app_name!r} depends on itself; remove it"))
            elif dep not in spec.apps:
                known = ", ".join(sorted(spec.apps)) or "none"
                problems.append(
                    Problem(path, f"unknown app {dep!r}; depends names apps of this file ({known})")
                )
    try:
        start_order({a: [d for d in s.depends if d != a] for a, s in spec.apps.items()})
    except DependencyCycle as exc:
        problems.append(
            Problem(
                "apps",
                "dependency cycle: "
                + " depends on ".join(exc.cycle)
                + "; remove one of these depends",
            )
        )
    return problems


def _check_ports(spec: BoxSpec, fleet: FleetSettings | None) -> list[Problem]:
    """No two host ports clash, including the catalog services this box runs."""
    problems: list[Problem] = []
    seen: list[tuple[PortMapping, str]] = []
    owners: list[tuple[str, list[PortMapping]]] = [
        (f"apps.{a}.containers.{c}.ports", cs.ports)
        for a, app in spec.apps.items()
        for c, cs in app.containers.items()
    ]
    if fleet is not None:
        owners += [
            (f"services (catalog {s}).ports", fleet.services[s].ports)
            for s in spec.services
            if s in fleet.services
        ]
    for base, ports in owners:
        for i, port in enumerate(ports):
            path = f"{base}[{i}]"
            for other, other_path in seen:
                if _clash(port, other):
                    problems.append(
                        Problem(
                            path,
                            f"host port {port.host_port}/{port.protocol} is already published by "
                            f"{other_path}; use another host port",
                        )
                    )
                    break
            seen.append((port, path))
    return problems


def _check_health(spec: BoxSpec, fleet: FleetSettings | None) -> list[Problem]:
    """Each health check can reach its container and fits in the step deadline."""
    problems: list[Problem] = []
    deadline = fleet.step_deadline if fleet else FleetSettings().step_deadline
    for a, app in spec.apps.items():
        for c, cs in app.containers.items():
            path = f"apps.{a}.containers.{c}.health"
            hc = cs.health
            if hc is None:
                continue
            if hc.http is not None and hc.port is None and not cs.ports:
                problems.append(
                    Problem(path, "http health check needs `port:` (no port is published)")
                )
            if hc.deadline + cs.stop_timeout + STEP_MARGIN > deadline:
                problems.append(
                    Problem(
                        path,
                        f"health check may take {hc.deadline:.1f}s (start_period + retries x "
                        f"(interval + timeout)); with stop_timeout {cs.stop_timeout}s and "
                        f"{STEP_MARGIN:.0f}s to start containers that is "
                        f"{hc.deadline + cs.stop_timeout + STEP_MARGIN:.1f}s, which does not "
                        f"fit in the step deadline of {deadline:.0f}s; lower retries or raise "
                        "step_deadline in fleet.yml",
                    )
                )
    return problems


def _check_services(spec: BoxSpec, fleet: FleetSettings | None) -> list[Problem]:
    """Each service is in the fleet's catalog (when one is given) and listed once."""
    problems: list[Problem] = []
    if fleet is not None:
        for i, name in enumerate(spec.services):
            if name not in fleet.services:
                known = ", ".join(sorted(fleet.services)) or "none"
                problems.append(
                    Problem(
                        f"services[{i}]",
                        f"service {name!r} is not in the fleet catalog ({known}); "
                        "add it to fleet.yml or remove it",
                    )
                )
    for i, name in enumerate(spec.services):
        if name in spec.services[:i]:
            problems.append(Problem(f"services[{i}]", f"service {name!r} is listed twice"))
    return problems


def published_ports(spec: BoxSpec, fleet: FleetSettings | None = None) -> list[PortMapping]:
    """Every host port a box of this type publishes: its apps', and its catalog services'."""
    out = [p for app in spec.apps.values() for c in app.containers.values() for p in c.ports]
    if fleet is not None:
        out += [p for s in spec.services if s in fleet.services for p in fleet.services[s].ports]
    return out


def reachable(port: PortMapping) -> bool:
    """Published on an address other hosts can reach (not loopback)."""
    return port.host_ip is None or not port.host_ip.startswith("127.")


def check_provision(spec: BoxSpec, fleet: FleetSettings | None = None) -> list[Problem]:
    """The provision section's sources name ports this box type publishes to other hosts."""
    if spec.provision is None:
        return []
    problems: list[Problem] = []
    ports = published_ports(spec, fleet)
    open_ports = sorted({p.host_port for p in ports if reachable(p)})
    shown = ", ".join(map(str, open_ports)) or "none"
    for port, sources in spec.provision.port_sources.items():
        path = f"provision.sources.{port}"
        if port not in {p.host_port for p in ports}:
            problems.append(
                Problem(
                    path,
                    f"port {port} is not published by this box type ({shown}); "
                    "publish it in a container's ports or remove it here",
                )
            )
        elif port not in open_ports:
            problems.append(
                Problem(
                    path,
                    f"port {port} is published on a loopback address only, "
                    "so no other host can reach it; remove it here",
                )
            )
        if not sources:
            problems.append(Problem(path, "no sources: write who may connect, or remove the port"))
        for i, source in enumerate(sources):
            if source in sources[:i]:
                problems.append(Problem(f"{path}[{i}]", f"source {source} is listed twice"))
    return problems


def app_order(spec: BoxSpec) -> list[str]:
    """Apps in start order (only for a spec that passed check_box)."""
    return start_order({a: s.depends for a, s in spec.apps.items()})
