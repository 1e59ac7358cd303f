"""Start order: any dependency graph yields an order respecting every edge, or a named cycle."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.depgraph import DependencyCycle, dependents, start_order

NAMES = st.sampled_from([f"app{i}" for i in range(8)])
GRAPHS = st.dictionaries(NAMES, st.lists(NAMES, max_size=4, unique=True), max_size=8)


@settings(max_examples=400, deadline=None)
@given(GRAPHS)
def test_order_respects_every_edge_or_names_a_real_cycle(graph: dict[str, list[str]]) -> None:
    try:
        order = start_order(graph)
    except DependencyCycle as exc:
        cycle = exc.cycle
        assert cycle[0] == cycle[-1] and len(cycle) >= 2
        for a, b in zip(cycle, cycle[1:], strict=False):
            assert b in graph[a], f"{a} -> {b} is not an edge of {graph}"
        return
    assert sorted(order) == sorted(graph)
    position = {app: i for i, app in enumerate(order)}
    for app, deps in graph.items():
        for dep in deps:
            if dep in graph:
                assert position[dep] < position[app]


@settings(max_examples=100, deadline=None)
@given(GRAPHS)
def test_order_is_deterministic(graph: dict[str, list[str]]) -> None:
    reordered = dict(reversed(list(graph.items())))
    try:
        assert start_order(graph) == start_order(reordered)
    except DependencyCycle:
        with pytest.raises(DependencyCycle):
            start_order(reordered)


def test_equal_ranks_sorted_by_name() -> None:
    assert start_order({"b": [], "a": [], "c": ["a", "b"]}) == ["a", "b", "c"]


def test_self_loop_is_a_cycle() -> None:
    with pytest.raises(DependencyCycle) as exc:
        start_order({"a": ["a"]})
    assert exc.value.cycle == ["a", "a"]


def test_dependents_of_a_changed_app() -> None:
    graph = {"mongos": [], "gcweb": ["mongos"], "cron": ["gcweb"], "other": []}
    assert dependents(graph, {"mongos"}) == {"mongos", "gcweb", "cron"}
    assert dependents(graph, {"other"}) == {"other"}
