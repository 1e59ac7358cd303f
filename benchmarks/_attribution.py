"""Who sent each of the product's Redis commands: the box steps, the workers' heartbeat
threads (heartbeat, slot renewal, lease renewal, dead-box reaping) or the coordinator.

Input: a `redis-cli monitor` capture of the product's redis-server and the client ports of
the worker processes. A worker's connection serves its step threads and its heartbeat thread
in turn (one pool), so within a worker the heartbeat's commands are told apart by what they
touch; everything else a worker sends is a step's. Commands a Lua script runs itself (`lua`)
are not counted: the EVALSHA that ran the script is.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from benchmarks._measure import Monitor, client_ports
from benchmarks._stack import Stack
from devstack.redis import RedisServer
from devstack.workers import BoxWorker

T = TypeVar("T")

BENCH_OWN = {"INFO", "CONFIG", "MONITOR", "CLIENT", "HELLO"}


def script_names() -> dict[str, str]:
    """EVALSHA sha -> the script's name in the product."""
    import orchestrator.engine.rollouts  # noqa: F401 - loads every script of the engine
    from orchestrator.engine.redisconn import LuaScript

    return {
        hashlib.sha1(s.source.encode()).hexdigest(): n for n, s in LuaScript.loaded.items()
    }


def _heartbeat_side(cmd: str, args: list[str], prefix: str, scripts: dict[str, str]) -> bool:
    key = args[0] if args else ""
    if cmd == "SET" and key.startswith((f"{prefix}box:", f"{prefix}slot:")):
        return True  # the heartbeat, and the running step's slot renewed with it
    if cmd == "SET" and key.startswith(f"{prefix}reaper:"):
        return True  # the type's reaper turn, tried each beat
    if cmd == "HSET" and key.startswith(f"{prefix}members:"):
        return True  # the heartbeat adds its box to the type's members, every beat
    if cmd == "GET" and key.startswith(f"{prefix}services:"):
        return True  # the services reconciler's tick (a step only SETs it)
    if cmd == "GET" and (key.startswith(f"{prefix}freeze:") or (
            key.startswith(f"{prefix}boxtype:") and key.endswith((":current", ":signed-current")))):
        return True  # the catch-up thread's look at the type (steps read neither)
    if cmd == "EXISTS" and key.startswith(f"{prefix}slot:"):
        return True  # reap_dead
    if cmd == "SMEMBERS" and key.endswith(":inflight"):
        return True  # reap_dead
    if cmd == "GET" and key.endswith(":active"):
        return True  # reap_dead
    return cmd == "EVALSHA" and scripts.get(key) == "lease_renew"


def attribute(monitor: Monitor, worker_ports: dict[int, int], prefix: str) -> dict[str, Any]:
    """Counts by origin ("steps", "heartbeats", "coordinator") and, for each, by command."""
    scripts = script_names()
    by: dict[str, Counter[str]] = {"steps": Counter(), "heartbeats": Counter(),
                                   "coordinator": Counter()}
    open_multi: dict[str, str | None] = {}  # connection -> class of its open MULTI
    for source, cmd, args in monitor.commands():
        if source == "lua" or cmd in BENCH_OWN:
            continue
        port = int(source.rsplit(":", 1)[1]) if ":" in source else -1
        if port not in worker_ports:
            origin = "coordinator"
        elif cmd == "MULTI":
            open_multi[source] = None  # decided by the first command inside it
            continue
        elif cmd == "EXEC":
            origin = open_multi.pop(source, None) or "steps"
            by[origin]["MULTI"] += 1
        else:
            origin = "heartbeats" if _heartbeat_side(cmd, args, prefix, scripts) else "steps"
            if source in open_multi and open_multi[source] is None:
                open_multi[source] = origin
        name = cmd
        if cmd == "EVALSHA" and args:
            name = f"EVALSHA {scripts.get(args[0], args[0][:8])}"
        by[origin][name] += 1
    return {k: dict(v) for k, v in by.items()} | {
        "totals": {k: sum(v.values()) for k, v in by.items()}}


def attributed(stack: Stack, product: RedisServer, workers: list[BoxWorker], prefix: str,
               run: Callable[[], T]) -> tuple[T, dict[str, Any]]:
    """Run `run()` with the product's redis monitored; its result and `attribute`'s counts."""
    monitor = Monitor(stack.dir, product)
    try:
        result = run()
    finally:
        ports = client_ports([w.pid for w in workers], product.port)
        monitor.stop()
    return result, attribute(monitor, ports, prefix)


def per_step_table(counts: dict[str, Any], steps: int) -> list[list[object]]:
    """[command, per step] for the steps' commands, most first."""
    return [[c, v / steps] for c, v in sorted(counts["steps"].items(), key=lambda kv: -kv[1])]
