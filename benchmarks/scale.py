"""Benchmark 4: 100, 1,000 and 5,000 simulated boxes, batch 50, on this machine.

Every box is a real queue `box.<id>` with a live heartbeat, served by `orchestrator-worker`
processes through the same code path as a real box (ORCHESTRATOR_EXTRA_BOX_IDS: one process
consumes many box queues; ORCHESTRATOR_CONCURRENCY: a thread pool as large as the batch), with
the no-op container runtime and load balancer of benchmark 2 (steps that do no real work).
Boxes are dealt round-robin to the processes. Two redis-server processes: the Celery broker
(kombu's polling, task events, unacked sweeps) and the product's state, so that the product's
own commands are counted apart from kombu's (INFO commandstats of each). The product's
heartbeats are counted apart too: their rate is measured while idle (all heartbeats live, no
rollout) and subtracted.

Measured: the rollout's wall time (CLI, and rollout start -> end in the event stream), the
coordinator's peak RSS (target < 200 MB), the product's Redis commands per box and per step
(target: a constant per step, no polling storm), and, in a second rollout where one box's
worker raises in `deploy.swap` (ORCHESTRATOR_FAULT_STEP), the time from that failed step to
the halt, from stream ids (target <= 1 s): the halt is when the rollout stops starting boxes.

Each size runs on a fresh stack, one after the other; then every figure per box (wall time,
coordinator CPU, the product's commands) and the coordinator's peak RSS are fitted against N
(least squares: a line, and the exponent of a power law; benchmarks/_fit.py), and the largest
size is compared with 1,000 (targets at 5,000: RSS < 200 MB; commands per step and coordinator
CPU per box within 10 % of 1,000's). At 5,000 the wall time mostly measures the simulated
workers sharing the machine's cores, not the product.

    bash benchmarks/run.sh scale                      # 100, 1,000, 5,000: ~15 minutes
    bash benchmarks/run.sh scale --sizes 1000         # one size, with the halt: ~3 minutes
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks._attribution import attributed, per_step_table
from benchmarks._fit import change, fit
from benchmarks._measure import CpuMeter, ms, read_events
from benchmarks._report import save, table, timed, verdict
from benchmarks._stack import Stack, cli_env, fleet_arguments, wait_heartbeats, worker_env
from benchmarks.overhead import BOX_YML, DIGESTS, STEPS
from devstack.process import wait_for
from devstack.workers import BoxWorker

RSS_TARGET_MB = 200.0
HALT_TARGET_S = 1.0
IDLE_SECONDS = 12.0  # a little over two heartbeat intervals


def rss_mb(proc: BoxWorker) -> float:
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(n: int, batch: int, nproc: int, threads: int, fault: bool,
            separate: bool = True) -> dict[str, Any]:
    """One size on a fresh stack: the measured rollout, a monitored one, the halt if `fault`.
    Without `separate`, the measured rollout is the monitored one (one rollout fewer: the
    largest sizes; its wall time then includes MONITOR's cost)."""
    fault = fault and separate  # the halt's rollout must change something: after two
    load_before = os.getloadavg()[0]
    with Stack(f"scale-{n}") as stack:
        broker, product = stack.redis("broker"), stack.redis("product")
        broker_url, product_url, prefix = f"{broker.url}/0", f"{product.url}/0", "bench:"
        boxes_dir = stack.dir / "boxes"
        boxes_dir.mkdir()
        yml = boxes_dir / "web.yml"
        ids = [f"box{i + 1:04d}" for i in range(n)]
        faulty = ids[n // 3]  # mid-rollout: boxes are in flight when it fails
        served = [[b for i, b in enumerate(ids) if i % nproc == p and b != faulty]
                  for p in range(nproc)]

        def env_for(mine: list[str], **extra: str) -> dict[str, str]:
            # One process beats for 1,250 simulated boxes: with its 50 threads busy (5,000
            # preflights arrive at once) its heartbeat thread got the GIL too rarely to beat
            # within the product's 15 s, and preflight rightly failed those boxes as gone. A
            # real box beats for itself alone; the simulation's beats get 60 s.
            return worker_env(mine[0], "web", broker_url, product_url, prefix, runtime="noop",
                              extra_box_ids=json.dumps(mine[1:]), heartbeat_ttl="60",
                              log_root=str(stack.dir / "logs"), **extra)

        with timed(f"{nproc} worker processes ({threads} threads each) + 1 for {faulty}"):
            workers = [stack.worker(f"w{p}", env_for(mine, concurrency=str(threads)))
                       for p, mine in enumerate(served)]
            single = stack.worker(faulty, env_for([faulty]), name="faulty-0")
            stack.wait_ready([*workers, single], timeout=300 + n / 10)
        env = cli_env(boxes_dir, broker_url, product_url, prefix)
        client = product.client()
        wait_for(lambda: len(list(client.scan_iter(f"{prefix}box:*", count=1000))) == n,
                 f"{n} live heartbeats", timeout=60 + n / 20)

        def rollout(digest: str, label: str) -> tuple[Any, dict[str, Any], Counter[str],
                                                        Counter[str]]:
            yml.write_text(BOX_YML.format(digest=digest))
            p0, b0 = product.commandstats(), broker.commandstats()
            with timed(label):
                # 5,000 simulated boxes on a slow 2-core machine took over the default 600 s
                run = stack.cli(env, "rollout", "web", "--batch", str(batch), "--json",
                                timeout=600 + n * 0.3)
            dp, db = product.commandstats() - p0, broker.commandstats() - b0
            summary = run.json_lines()[-1]["summary"] if run.json_lines() else {}
            return run, summary, dp, db

        run, summary, _, _ = rollout(DIGESTS[0], f"first deploy of {n} boxes (not measured)")
        run.check()
        wait_heartbeats(client, prefix, ids, str(summary["release"]), timeout=120 + n / 20)

        with timed(f"idle: {n} heartbeats for {IDLE_SECONDS:.0f} s"):
            p0, b0 = product.commandstats(), broker.commandstats()
            time.sleep(IDLE_SECONDS)
            idle_p = product.commandstats() - p0
            idle_b = broker.commandstats() - b0
        hb_rate = sum(idle_p.values()) / IDLE_SECONDS
        kombu_idle_rate = sum(idle_b.values()) / IDLE_SECONDS

        meter = CpuMeter({"redis (product)": product.pid,
                          "redis (broker)": broker.pid,
                          **{f"worker {i + 1}": w.pid for i, w in enumerate(workers)}})
        label = f"measured rollout: {n} boxes, batch {batch}"
        if separate:
            run, summary, dp, db = rollout(DIGESTS[1], label)
        else:  # one rollout, monitored: its timings carry MONITOR's cost (said in the table)
            (run, summary, dp, db), who = attributed(
                stack, product, [*workers, single], prefix,
                lambda: rollout(DIGESTS[1], label + ", monitored"))
        meter.stop()
        run.check()
        cpu_rows = [[name, secs, secs / run.wall] for name, secs in meter.used.items()]
        cpu_rows.append(["coordinator (CLI, from wait4)", run.cpu_s, run.cpu_s / run.wall])
        ours_cpu = sum(meter.used.values()) + run.cpu_s
        cpu_rows.append(["all of the above", ours_cpu, ours_cpu / run.wall])
        cpu_rows.append(["the whole machine (2 cores = 2.0)", meter.machine_busy_s,
                         meter.machine_busy_s / run.wall])
        table("CPU during the measured rollout", ["process", "CPU s", "cores"], cpu_rows)
        events = read_events(client, prefix, "web", str(summary["rollout"]))
        marks = [e for e in events if e.get("step") == "rollout"]
        stream_s = (ms(marks[-1]) - ms(marks[0])) / 1000
        total_p = sum(dp.values())
        worker_rss = [rss_mb(w) for w in workers]
        wait_heartbeats(client, prefix, ids, str(summary["release"]), timeout=120 + n / 20)

        brun, bsummary = run, summary
        if separate:
            # The same rollout again, monitored: who sent which command (MONITOR slows Redis
            # a little, so the timings above come from the unmonitored one).
            (brun, bsummary, _, _), who = attributed(
                stack, product, [*workers, single], prefix,
                lambda: rollout(DIGESTS[0], "monitored rollout (who sends what)"))
            brun.check()
        steps_total = n * len(STEPS)
        bevents = read_events(client, prefix, "web", str(bsummary["rollout"]))
        bmarks = [e for e in bevents if e.get("step") == "rollout"]
        bsecs = (ms(bmarks[-1]) - ms(bmarks[0])) / 1000
        tot = who["totals"]
        # The steps' and the coordinator's, as the monitored rollout attributes them (the
        # commands clients send) at every size. INFO commandstats less the heartbeats' idle
        # rate counts each script's inner commands too, and only at the sizes measured apart:
        # the fit across sizes mixed the two (5,000 / 1,000 read 0.51).
        own = tot["steps"] + tot["coordinator"]
        unattributed = total_p - hb_rate * run.wall if separate else float("nan")
        per_box = own / n
        per_step = per_box / len(STEPS)
        table("monitored rollout: the steps' own commands, per step",
              ["command", "per step"], per_step_table(who, steps_total)[:12])
        origin_rows = [
            ["steps (the chains)", tot["steps"], tot["steps"] / n, tot["steps"] / steps_total],
            ["coordinator (preflight, fill, watch)", tot["coordinator"], tot["coordinator"] / n,
             tot["coordinator"] / steps_total],
            ["workers' heartbeat threads", tot["heartbeats"], tot["heartbeats"] / n,
             tot["heartbeats"] / steps_total],
        ]
        table(f"monitored rollout ({bsecs:.1f} s): product commands by origin",
              ["origin", "commands", "per box", "per step"], origin_rows)
        if separate:
            wait_heartbeats(client, prefix, ids, str(bsummary["release"]), timeout=120 + n / 20)

        steps_own = tot["steps"] / steps_total
        halt_rows, halt_data = halt_check(stack, client, prefix, faulty, single, env_for,
                                          rollout) if fault else ([], {})
        cmds = [[c, v, v / n] for c, v in (dp - Counter({k: int(v * run.wall / IDLE_SECONDS)
                                                          for k, v in idle_p.items()})
                                           ).most_common(15)]
        table("the product's own Redis commands in the measured rollout (heartbeats' idle rate "
              "subtracted), top 15", ["command", "calls", "per box"], cmds)
        rows = [
            ["boxes / batch / worker processes", f"{n} / {batch} / {nproc}+1", "-", "-"],
            ["measured rollout monitored too (MONITOR's cost in its times)",
             "no" if separate else "yes", "-", "-"],
            ["CLI wall s", run.wall, "-", "-"],
            ["rollout start -> end (stream) s", stream_s, "-", "-"],
            ["boxes per second", n / stream_s, "-", "-"],
            ["coordinator peak RSS MB", run.max_rss_mb, f"< {RSS_TARGET_MB:.0f}",
             verdict(run.max_rss_mb, RSS_TARGET_MB)],
            ["coordinator CPU ms / box", run.cpu_s / n * 1000, "-", "-"],
            ["worker RSS MB (each)", max(worker_rss), "-", "-"],
            ["product commands / box (steps + coordinator)", per_box, "-", "-"],
            ["product commands / step (steps + coordinator)", per_step, "-", "-"],
            ["commandstats / box (scripts' inner commands too) less idle heartbeats",
             unattributed / n, "-", "-"],
            ["steps' own commands / step (monitored)", steps_own, "constant", "-"],
            ["coordinator commands / box (monitored)", tot["coordinator"] / n, "-", "-"],
            ["coordinator commands / s (monitored)", tot["coordinator"] / bsecs, "bounded", "-"],
            [f"heartbeat commands / s (idle, {n} boxes)", hb_rate, "-", "-"],
            ["kombu commands / s idle", kombu_idle_rate, "-", "-"],
            ["kombu commands / box (rollout)", sum(db.values()) / n, "-", "-"],
            *halt_rows,
            ["load average (1 min) before; after", f"{load_before:.2f}; "
             f"{os.getloadavg()[0]:.2f}", "-", "-"],
        ]
        table(f"result, {n} boxes", ["measure", "value", "target", "verdict"], rows)
        return {
            "boxes": n, "batch": batch, "processes": nproc, "threads": threads,
            "cli_wall_s": run.wall, "stream_s": stream_s, "coordinator_max_rss_mb":
            run.max_rss_mb, "coordinator_cpu_s": run.cpu_s, "worker_rss_mb": worker_rss,
            "product_commands_total": total_p, "product_commands_own": own,
            "product_commands_less_idle_heartbeats": unattributed,
            "product_commands_per_box": per_box, "product_commands_per_step": per_step,
            "steps_own_commands_per_step": steps_own,
            "coordinator_commands_per_box": tot["coordinator"] / n,
            "product_commands_by_name": dict(dp), "heartbeat_commands_per_s": hb_rate,
            "idle_product_by_name": dict(idle_p), "broker_commands_by_name": dict(db),
            "kombu_idle_per_s": kombu_idle_rate, "idle_broker_by_name": dict(idle_b),
            "summary": summary, "rows": rows, "monitored": who, "monitored_seconds": bsecs,
            "cpu": cpu_rows, "load_average_1m": [load_before, os.getloadavg()[0]],
            **halt_data,
        }


def halt_check(stack: Stack, client: Any, prefix: str, faulty: str, single: BoxWorker,
               env_for: Any, rollout: Any) -> tuple[list[list[Any]], dict[str, Any]]:
    """A rollout where one box's swap raises: how soon the rollout halts, and no claim after."""
    # The halt: restart the faulty box's worker so that its swap raises.
    single.stop()
    single = stack.worker(faulty, env_for([faulty], fault_step="deploy.swap"), name="faulty-1")
    stack.wait_ready([single])
    fault_run, fault_summary, _, _ = rollout(DIGESTS[1], "rollout with a failing box")
    if fault_run.returncode != 1:
        raise RuntimeError(f"the rollout with a failing box exited {fault_run.returncode}")
    fevents = read_events(client, prefix, "web", str(fault_summary["rollout"]))
    raw = client.hget(f"{prefix}journal:{fault_summary['rollout']}:{faulty}", "deploy.swap:web")
    failed_at = json.loads(raw)["ended"] if raw else float("nan")
    # The halt: the `finish` whose fill set the state (its reason ends "rollout halted"),
    # or, if no finish ran, the expiry of the box's slot noticed by a watcher.
    halt = next((e for e in fevents if e.get("reason", "").endswith("rollout halted")
                 or (e.get("step") == "slot" and e.get("outcome") == "failed")), None)
    end = next(e for e in fevents if e.get("step") == "rollout" and e.get("phase") == "end")
    halt_s = (ms(halt) / 1000 - failed_at) if halt else float("nan")
    # `claim` is the only halt point: no box may be granted one after the halt. The claim
    # script reads the state the halt set, atomically; its end event is journaled after it
    # returns, so an end after the halt's event may be a grant from before the halt (in
    # flight: counted apart). A claim that *began* after the halt's event ran its script
    # after the state changed: granted, it would be a claim after the halt.
    def order(e: dict[str, str]) -> tuple[int, int]:  # the stream id: one total order
        at, _, seq = e["id"].partition("-")
        return int(at), int(seq or 0)

    began = {e["box"]: order(e) for e in fevents if e.get("step") == "deploy.claim"
             and e.get("phase") == "start"}
    halted = order(halt) if halt else (1 << 62, 0)
    granted = [e for e in fevents if e.get("step") == "deploy.claim"
               and e.get("phase") == "end" and e.get("outcome") == "ok" and order(e) > halted]
    started_after = [e["box"] for e in granted if began.get(e["box"], (0, 0)) > halted]
    in_flight = [e["box"] for e in granted if began.get(e["box"], (0, 0)) <= halted]
    end_s = ms(end) / 1000 - failed_at

    rows = [
        ["failed step -> halt s", halt_s, f"<= {HALT_TARGET_S}",
         verdict(halt_s, HALT_TARGET_S)],
        ["claims begun after the halt and granted", len(started_after), "0",
         "met" if not started_after else "NOT MET"],
        ["claims begun before the halt, journaled after it (granted before)", len(in_flight),
         "-", "-"],
        ["failed step -> rollout end s (in-flight boxes finish)", end_s, "-", "-"],
    ]
    return rows, {"faulty_box": faulty, "halt_event": halt, "failed_to_halt_s": halt_s,
                  "started_after_halt": started_after, "in_flight_at_halt": in_flight,
                  "failed_to_end_s": end_s,
                  "fault_summary": fault_summary}


def main() -> int:
    parser = fleet_arguments(__doc__, boxes=1000, batch=50, processes=4)
    parser.add_argument("--threads", type=int, default=0, help="pool per process (0: batch)")
    parser.add_argument("--sizes", default="100,1000,5000",
                        help="comma-separated fleet sizes, each on a fresh stack")
    parser.add_argument("--fault-at", type=int, default=1000,
                        help="the size whose stack also measures the halt (0: none)")
    parser.add_argument("--monitor-apart-up-to", type=int, default=1000,
                        help="larger sizes monitor their measured rollout (one rollout fewer)")
    args = parser.parse_args()
    sizes = sorted({int(x) for x in args.sizes.split(",") if x.strip()})
    threads = args.threads or args.batch
    results = [measure(n, args.batch, args.processes, threads, n == args.fault_at,
                       separate=n <= args.monitor_apart_up_to) for n in sizes]
    growth = compare(results)
    save("scale", {"sizes": sizes, "results": results, "growth": growth})
    return 0


FIGURES = (  # per-size figures fitted against N: (label, key, per box?)
    ("CLI wall s / box", "cli_wall_s", True),
    ("coordinator CPU ms / box", "coordinator_cpu_s", True),
    ("coordinator peak RSS MB", "coordinator_max_rss_mb", False),
    ("steps' own Redis commands / step", "steps_own_commands_per_step", False),
    ("product Redis commands / box", "product_commands_per_box", False),
    ("coordinator Redis commands / box", "coordinator_commands_per_box", False),
)


def compare(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Every figure at every N, its fit against N, and the largest N against 1,000."""
    ns = [float(r["boxes"]) for r in results]
    out: dict[str, Any] = {}
    rows = []
    for label, key, per_box in FIGURES:
        ys = [float(r[key]) / (r["boxes"] if per_box else 1) * (1000 if "ms" in label else 1)
              for r in results]
        entry: dict[str, Any] = {"values": dict(zip([int(n) for n in ns], ys, strict=True))}
        row: list[Any] = [label, *ys]
        if len(ns) >= 2:
            f = fit(ns, ys)
            entry.update(slope_per_box=f.slope, exponent=f.exponent, growth=f.describe())
            row += [f.slope, f.exponent, f.describe()]
        if 1000.0 in ns and max(ns) > 1000:
            entry["vs_1000"] = change(ns, ys, 1000.0, max(ns))
            row.append(f"{entry['vs_1000']:.3f}")
        out[label] = entry
        rows.append(row)
    headers = ["figure", *(f"N={int(n)}" for n in ns)]
    if len(ns) >= 2:
        headers += ["slope (per N)", "exponent", "growth"]
    if 1000.0 in ns and max(ns) > 1000:
        headers.append(f"N={int(max(ns))} / N=1000")
    table("how each cost grows with N (least squares over the sizes measured)", headers, rows)
    big = max(results, key=lambda r: r["boxes"])
    target = [["coordinator peak RSS MB at the largest N", big["coordinator_max_rss_mb"],
               f"< {RSS_TARGET_MB:.0f}", verdict(big["coordinator_max_rss_mb"], RSS_TARGET_MB)]]
    for label in ("steps' own Redis commands / step", "coordinator CPU ms / box"):
        ratio = out[label].get("vs_1000")
        if ratio is not None:
            target.append([f"{label}, N={int(max(ns))} / N=1000", ratio, "<= 1.10",
                           verdict(ratio, 1.10)])
    table("targets", ["measure", "value", "target", "verdict"], target)
    return out



if __name__ == "__main__":
    raise SystemExit(main())
