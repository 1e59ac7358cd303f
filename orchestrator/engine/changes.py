"""The change decision: which apps a box swaps and which load balancers it leaves. Pure."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from schemas.depgraph import dependents, start_order
from schemas.release import Release


def box_changes(
    release: Release, running: Mapping[str, str], secret_changed: Collection[str] = ()
) -> tuple[list[str], list[str]]:
    """(apps to swap, apps whose load balancer the box leaves), both in start order.

    `running` maps app -> spec hash as the box reports it; `secret_changed` names the apps
    whose secret values the box found rotated (it compares, on the box). A changed app's
    dependents leave their load balancer too: swapping mongos under a serving gcweb breaks
    its requests.
    """
    graph = {a: s.depends for a, s in release.spec.apps.items()}
    order = start_order(graph)
    changed = {
        a for a in order if running.get(a) != release.spec_hash(a) or a in secret_changed
    }
    affected = dependents(graph, changed)
    lb = [a for a in order if a in affected and release.spec.apps[a].elb]
    return [a for a in order if a in changed], lb
