"""Apps in dependency order (graphlib), deterministic for equal ranks; cycles named."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from graphlib import CycleError, TopologicalSorter


class DependencyCycle(ValueError):
    """The apps' `depends` form a cycle; `cycle` lists it, first app repeated at the end."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__("dependency cycle: " + " -> ".join(cycle))


def start_order(depends: Mapping[str, Sequence[str]]) -> list[str]:
    """Every app after the apps it depends on; ties broken by name. Unknown deps are ignored."""
    sorter: TopologicalSorter[str] = TopologicalSorter()
    for app in sorted(depends):
        sorter.add(app, *sorted(d for d in depends[app] if d in depends))
    try:
        sorter.prepare()
    except CycleError as exc:
        # graphlib reports the cycle with its first node repeated at the end, in reverse.
        nodes = list(reversed(exc.args[1]))
        raise DependencyCycle(nodes) from None
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order.extend(ready)
        sorter.done(*ready)
    return order


def dependents(depends: Mapping[str, Sequence[str]], changed: set[str]) -> set[str]:
    """The changed apps plus every app that depends on one of them, directly or not."""
    out = set(changed)
    grew = True
    while grew:
        grew = False
        for app, deps in depends.items():
            if app not in out and out.intersection(deps):
                out.add(app)
                grew = True
    return out
