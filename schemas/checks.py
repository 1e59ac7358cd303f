"""Checks beyond types: dependencies, cycles, port clashes, catalog, deadlines. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.boxfile import BoxSpec, ContainerSpec, PortMapping
from schemas.depgraph import DependencyCycle, start_order
from schemas.fleet import FleetSettings
from schemas.onbox import (
    SERVICE_NAMESPACE,
    duplicate_mount,
    lb_name_problem,
    log_binds,
    name_problem,
    volume_binds,
)
from schemas.strategy import strategy_problems

# Room in a swap step beyond the health deadline: stop the old containers, start the new.
STEP_MARGIN = 5.0


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file, located by its field path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def check_box(spec: BoxSpec, fleet: FleetSettings | None = None) -> list[Problem]:
    """Every problem of a structurally valid box.yml that types alone can't catch."""
    return (
        _check_depends(spec)
        + _check_ports(spec, fleet)
        + _check_health(spec, fleet)
        + _check_services(spec, fleet)
        + check_on_box(spec, fleet)
        + check_provision(spec, fleet)
        + _check_migrate(spec)
        + _check_strategy(spec, fleet)
    )


def _check_strategy(spec: BoxSpec, fleet: FleetSettings | None) -> list[Problem]:
    default_kind = fleet.load_balancer if fleet else "elb"
    return [Problem(path, why) for path, why in strategy_problems(spec, default_kind)]


def _check_migrate(spec: BoxSpec) -> list[Problem]:
    if spec.migrate is None or spec.migrate.app in spec.apps:
        return []
    return [Problem("migrate.app", f"no app {spec.migrate.app!r} in this file; write one of "
                    f"{', '.join(sorted(spec.apps))}")]


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
    """No two host ports clash, including the catalog services this box runs. Linear: one
    lookup per port (a port on every address clashes with any address)."""
    problems: list[Problem] = []
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
    # (port, protocol) -> {address or None: the first path publishing it there}
    taken: dict[tuple[int, str], dict[str | None, str]] = {}
    for base, ports in owners:
        for i, port in enumerate(ports):
            path = f"{base}[{i}]"
            there = taken.setdefault((port.host_port, port.protocol), {})
            ip = None if port.host_ip in (None, "0.0.0.0") else port.host_ip  # every address
            anywhere = next(iter(there.values()), None)
            same = anywhere if ip is None else there.get(ip)
            other = there.get(None) or same
            if other is not None:
                problems.append(
                    Problem(
                        path,
                        f"host port {port.host_port}/{port.protocol} is already published by "
                        f"{other}; use another host port",
                    )
                )
                continue
            there[ip] = path
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
            published = cs.published_container_ports
            if hc.http is not None and hc.port is None and not cs.ports:
                problems.append(
                    Problem(path, "http health check needs `port:` (no port is published)")
                )
            wanted = hc.tcp if hc.tcp is not None else hc.port if hc.http is not None else None
            if wanted is not None and wanted not in published:
                problems.append(
                    Problem(
                        path,
                        f"container port {wanted} is not published, and the box checks it "
                        f"through its published port (published: "
                        f"{', '.join(map(str, published)) or 'none'}); publish it in `ports:`",
                    )
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
    seen: set[str] = set()
    for i, name in enumerate(spec.services):
        if name in seen:
            problems.append(Problem(f"services[{i}]", f"service {name!r} is listed twice"))
        seen.add(name)
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


def check_on_box(spec: BoxSpec, fleet: FleetSettings | None = None) -> list[Problem]:
    """What the worker's run spec, naming and load balancer adapters would refuse on the box."""
    problems: list[Problem] = []
    settings = fleet or FleetSettings()
    names: dict[str, str] = {}  # `<app>.<container>` -> its path: our Docker names, less the box
    services = set(spec.services)
    for a, app in spec.apps.items():
        if a == SERVICE_NAMESPACE or a in services:
            what = (
                "the namespace of a box's services"
                if a == SERVICE_NAMESPACE
                else "also the name of a service this box runs"
            )
            problems.append(Problem(f"apps.{a}", f"app name {a!r} is {what}; rename the app"))
        if app.elb is not None:
            kind = app.lb_kind or settings.load_balancer
            if (why := lb_name_problem(kind, app.elb)) is not None:
                problems.append(Problem(f"apps.{a}.elb", why))
        for c, cs in app.containers.items():
            path = f"apps.{a}.containers.{c}"
            if (why := name_problem(a, c)) is not None:
                problems.append(Problem(path, why))
            full = f"{a}.{c}"
            if full in names:
                problems.append(
                    Problem(
                        path,
                        f"its Docker name (<box>.{full}) is also {names[full]}'s; rename one",
                    )
                )
            names.setdefault(full, path)
            problems += _mount_problems(path, a, c, cs, settings.log_root)
    return problems


def _mount_problems(
    path: str, app: str, container: str, cs: ContainerSpec, log_root: str
) -> list[Problem]:
    try:
        logs = log_binds(app, container, cs.logs, log_root)
    except ValueError as exc:
        return [Problem(f"{path}.logs", str(exc))]
    why = duplicate_mount(volume_binds(cs.volumes) + logs)
    return [Problem(path, why)] if why else []
