"""Benchmark 5: where the time goes. Profiles a no-op rollout (as benchmarks 2 and 4 run it):
the coordinator (`orchestrator rollout`) under pyinstrument, the box worker under py-spy.

    bash benchmarks/run.sh profile                       # 50 boxes, batch 1 (~1 minute)
    bash benchmarks/run.sh profile --boxes 1000 --batch 50 --processes 2 --rate 20 --gil

Prints the coordinator's call tree (pyinstrument, wall time) and the workers' hottest
functions (py-spy: the product's own by inclusive share, and the leaves by self share, of the
samples of busy threads; with --gil only the thread holding the GIL: where the CPU goes);
writes both under benchmarks/results/. Boxes are dealt round-robin to the worker processes,
each with a pool as large as the batch. Keep --rate low with many threads: py-spy's sampling
takes CPU from the workers it watches.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from pathlib import Path

from benchmarks._report import RESULTS, save, table, timed
from benchmarks._stack import Stack, cli_env, fleet_arguments, need, wait_heartbeats, worker_env
from benchmarks.overhead import BOX_YML, DIGESTS

OURS = ("(worker/", "(orchestrator/", "(schemas/")


def hot_functions(raw: Path, top: int = 25) -> tuple[list[list[object]], list[list[object]], int]:
    """py-spy's raw (collapsed) stacks (busy threads only) -> the product's own functions by
    inclusive share of the samples, the leaf functions by self share, and the sample count.
    A function is counted once per sample (recursion and line numbers merged)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    busy = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [f.rsplit(":", 1)[0] + ")" if ":" in f else f for f in stack.split(";")[1:]]
        if not frames or not count.isdigit():
            continue
        n = int(count)
        busy += n
        own[frames[-1]] += n
        for frame in set(frames):
            if frame.startswith(("<module>", "main ", "cli ")):
                continue
            if any(mark in frame for mark in OURS):
                inclusive[frame] += n
    if not busy:
        return [], [], 0
    ours = [[f, c / busy] for f, c in inclusive.most_common(top)]
    leaves = [[f, c / busy] for f, c in own.most_common(top)]
    return ours, leaves, busy


def main() -> int:
    parser = fleet_arguments(__doc__, boxes=50, batch=1, processes=1)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--gil", action="store_true",
                        help="sample only the thread holding the GIL: where the CPU goes")
    args = parser.parse_args()
    n, batch = args.boxes, args.batch
    py_spy = need("py-spy")

    with Stack("profile") as stack:
        broker, product = stack.redis("broker"), stack.redis("product")
        broker_url, product_url, prefix = f"{broker.url}/0", f"{product.url}/0", "bench:"
        boxes_dir = stack.dir / "boxes"
        boxes_dir.mkdir()
        ids = [f"box{i + 1:04d}" for i in range(n)]
        workers = []
        with timed(f"{args.processes} worker process(es) for {n} boxes"):
            for p in range(args.processes):
                mine = ids[p::args.processes]
                workers.append(stack.worker(f"w{p}", worker_env(
                    mine[0], "web", broker_url, product_url, prefix, runtime="noop",
                    concurrency=str(batch), extra_box_ids=json.dumps(mine[1:]),
                    log_root=str(stack.dir / "logs"))))
            stack.wait_ready(workers, timeout=300)
        env = cli_env(boxes_dir, broker_url, product_url, prefix)
        client = product.client()
        yml = boxes_dir / "web.yml"
        yml.write_text(BOX_YML.format(digest=DIGESTS[0]))
        with timed("first deploy (not profiled)"):
            first = stack.cli(env, "rollout", "web", "--batch", str(batch), "--json").check()
        wait_heartbeats(client, prefix, ids, str(first.json_lines()[-1]["summary"]["release"]),
                        timeout=120)

        yml.write_text(BOX_YML.format(digest=DIGESTS[1]))
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        cli_report = RESULTS / f"profile-coordinator-{stamp}.txt"
        raws = [stack.dir / f"worker{i}.raw" for i in range(len(workers))]
        spies = [subprocess.Popen(
            [py_spy, "record", "--pid", str(w.pid), "--format", "raw",
             "--rate", str(args.rate), "--output", str(raw), "--nonblocking",
             *(["--gil"] if args.gil else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for w, raw in zip(
                workers, raws, strict=True)]
        time.sleep(1.0)  # py-spy attaches
        with timed("profiled rollout"):
            run = stack.cli(env, "rollout", "web", "--batch", str(batch), "--json")
        for spy in spies:
            spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
            spy.wait(60)
        run.check()
        with timed("coordinator under pyinstrument (a second, identical rollout)"):
            wait_heartbeats(client, prefix, ids, str(run.json_lines()[-1]["summary"]["release"]),
                            timeout=120)
            yml.write_text(BOX_YML.format(digest=DIGESTS[0]))
            prof = stack.cli(env, "rollout", "web", "--batch", str(batch), "--json",
                             profile_to=cli_report)
            prof.check()
        print(cli_report.read_text()[:6000])
        merged = stack.dir / "workers.raw"
        merged.write_text("".join(r.read_text() for r in raws if r.exists()))
        ours, leaves, busy = hot_functions(merged)
        table(f"workers: the product's functions, share of {busy} busy-thread samples "
              f"({args.rate} Hz), inclusive", ["function (file)", "share"],
              [[str(r[0])[:100], r[1]] for r in ours])
        table("workers: leaf functions (where the CPU or the wait is), self share",
              ["function (file)", "share"], [[str(r[0])[:100], r[1]] for r in leaves])
        save("profile", {"boxes": n, "batch": batch, "processes": args.processes,
                         "rollout_wall_s": run.wall, "coordinator_profile": str(cli_report),
                         "worker_ours": ours, "worker_leaves": leaves,
                         "worker_busy_samples": busy})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
