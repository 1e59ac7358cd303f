"""Benchmark 2: orchestration overhead per box, against the Celery floor and an Ansible play.

Rollouts of N = 10 and 50 boxes, batch 1, through the CLI (`orchestrator rollout --json`),
whose steps do no real work: the workers run with ORCHESTRATOR_RUNTIME=noop (the in-memory
container runtime of worker/runtime_noop.py, for benchmarks only) and the app's load balancer
is `lb_kind: none` (worker/lb/noop.py). Everything else is the product's code path: preflight,
the lease, the fill, every step's journal, fencing and events, one Celery task per step. One
`orchestrator-worker` process serves the N boxes (ORCHESTRATOR_EXTRA_BOX_IDS: their queues and
heartbeats), solo pool, as a box does. overhead = wall time - sum of step work, and the step
work of no-op steps is 0, so the overhead is the whole wall time.

Baselines, in the same run, on the same machine:
  (a) the Celery floor: N x 8 no-op tasks (8 = the steps of a box's chain) on one queue, one
      worker with the product's Celery configuration and worker options; two shapes, the
      lower counts: one chain of N x 8 tasks, and N chains of 8 each started by the previous
      chain's last task (the self-driving shape of a rollout);
  (b) Ansible (the `ansible` package, the `bench` extra): a play with `serial: 1`,
      `ansible_connection=local`, N inventory hosts, one `command: /bin/true` task per step;
      its step work is 8 N runs of /bin/true (measured).
Targets: overhead per box <= 3 x the Celery floor's and <= 1/20 of Ansible's.

    bash benchmarks/run.sh overhead      # ~3 minutes
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from typing import Any

from benchmarks._attribution import attributed
from benchmarks._measure import ms, read_events
from benchmarks._report import median, save, table, timed, verdict
from benchmarks._stack import PYTHON, Stack, cli_env, need, wait_heartbeats, worker_env

STEPS = ("pull", "claim", "leave_lb", "swap", "restore", "join_lb", "ensure_services", "finish")
# Pinned already: the coordinator does not ask a registry, and the noop runtime pulls nothing.
DIGESTS = ("sha256:" + "a" * 64, "sha256:" + "b" * 64)
BOX_YML = """\
apps:
  web:
    elb: web
    lb_kind: none
    image: registry.bench.invalid:5000/web@{digest}
    containers:
      web:
        ports: ["18080:8080"]
        health: {{command: "true"}}
"""
FLOOR_RATIO = 3.0
FIXED_TARGET_S = 0.5
IN_STREAM_RATIO = 2.0
ANSIBLE_RATIO = 20.0


def ansible_play(stack: Stack, n: int) -> tuple[float, str]:
    inventory = stack.dir / f"inventory-{n}.ini"
    inventory.write_text("[boxes]\n" + "".join(f"box{i + 1}\n" for i in range(n)) +
                         f"[boxes:vars]\nansible_connection=local\n"
                         f"ansible_python_interpreter={PYTHON}\n")
    play = stack.dir / "noop-play.yml"
    play.write_text("- hosts: boxes\n  serial: 1\n  gather_facts: false\n  tasks:\n" + "".join(
        f"    - name: {step}\n      command: /bin/true\n" for step in STEPS))
    env = {**os.environ, **ansible_env(stack)}
    t0 = time.perf_counter()
    out = subprocess.run([need("ansible-playbook"), "-i", str(inventory), str(play)], env=env,
                         capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"ansible-playbook failed:\n{out.stdout[-3000:]}\n{out.stderr[-2000:]}")
    return wall, out.stdout.strip().splitlines()[-1]


def ansible_env(stack: Stack) -> dict[str, str]:
    return {
        "ANSIBLE_LOCAL_TEMP": str(stack.dir / "ansible-tmp"),
        "ANSIBLE_REMOTE_TMP": str(stack.dir / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_HOST_KEY_CHECKING": "0",
        "ANSIBLE_CONFIG": str(stack.dir / "no-ansible.cfg"),  # not the user's own
    }


def bin_true_seconds(reps: int = 50) -> float:
    """One run of /bin/true, fork and exec included: the real work of Ansible's tasks."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run(["/bin/true"], check=True)
        times.append(time.perf_counter() - t0)
    return median(times)


# What any CLI built on the product's libraries pays before its first line runs: a fresh
# interpreter importing them (pydantic, redis-py, Celery and kombu, click, PyYAML, the Ed25519
# signer), nothing of ours.
LIBRARIES = ("import click, kombu, redis, yaml, pydantic, celery; celery.Celery; "
             "pydantic.BaseModel; pydantic.Field; "
             "import cryptography.hazmat.primitives.asymmetric.ed25519")


def import_floor_seconds(reps: int = 7) -> float:
    """A fresh python importing the CLI's libraries, fork and exec included (median)."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run([PYTHON, "-c", LIBRARIES], check=True)
        times.append(time.perf_counter() - t0)
    return median(times)


class CeleryFloor:
    """A worker of benchmarks/_floor_app.py and the chains it runs."""

    def __init__(self, stack: Stack, broker_url: str, mark_url: str) -> None:
        os.environ["BENCH_BROKER_URL"] = broker_url
        os.environ["BENCH_MARK_URL"] = mark_url
        from benchmarks import _floor_app

        self.mod = _floor_app
        self.worker = stack.celery_worker("benchmarks._floor_app", _floor_app.QUEUE,
                                          "floor@bench", dict(os.environ))
        import redis

        # No socket timeout: a loaded machine may take longer than redis-py 8's default 5 s.
        self.marks = redis.Redis.from_url(mark_url, socket_timeout=None)

    def run(self, n: int, shape: str, payload: dict[str, Any]) -> float:
        from celery import chain

        m = self.mod
        self.marks.delete(m.DONE_KEY)
        if shape == "one chain":
            sigs = [m.app.signature(m.NOOP, args=(payload,), immutable=True, queue=m.QUEUE)
                    for _ in range(n * len(STEPS) - 1)]
            sigs.append(m.app.signature(m.MARK, args=(payload,), immutable=True, queue=m.QUEUE))
            sig = chain(*sigs)
        else:
            sig = m.box_chain(payload, len(STEPS), n)
        t0 = time.perf_counter()
        sig.apply_async()
        if not self.marks.blpop([m.DONE_KEY], timeout=600):
            raise RuntimeError(f"the Celery floor ({shape}, {n}) did not finish")
        return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,50")
    parser.add_argument("--reps", type=int, default=3, help="rollouts and floors per size")
    parser.add_argument("--skip-ansible", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    with Stack("overhead") as stack:
        # Two Redis servers: kombu's traffic on one, the product's own on the other.
        broker, product = stack.redis("broker"), stack.redis("product")
        broker_url, product_url, prefix = f"{broker.url}/0", f"{product.url}/0", "bench:"
        boxes_dir = stack.dir / "boxes"
        boxes_dir.mkdir()
        workers = {}
        with timed("workers (one process per size, serving every box of it)"):
            for n in sizes:
                ids = [f"n{n}-box{i + 1:04d}" for i in range(n)]
                workers[n] = (ids, stack.worker(f"size{n}", worker_env(
                    ids[0], f"web{n}", broker_url, product_url, prefix, runtime="noop",
                    extra_box_ids=json.dumps(ids[1:]), log_root=str(stack.dir / "logs"))))
            stack.wait_ready([p for _, p in workers.values()])
            floor = CeleryFloor(stack, broker_url, product_url)
        env = cli_env(boxes_dir, broker_url, product_url, prefix)
        client = product.client()
        payload = {"contract_version": 1, "rollout_id": "web-20260101-000000-abcd",
                   "box_id": "n10-box0001", "box_type": "web10", "release_id": "r1-abcdef01",
                   "release_hash": "0" * 64, "token": 0, "app": None,
                   "changed_apps": ["web"], "lb_apps": ["web"]}

        results: dict[int, dict[str, Any]] = {}
        flip = 0
        for n in sizes:
            ids, _ = workers[n]
            box_type = f"web{n}"
            ours, rollout_s, commands, fixed, tail, in_stream = [], [], [], [], [], []
            # The first deploy (not measured) puts something on every box.
            for rep in range(args.reps + 1):
                flip ^= 1
                (boxes_dir / f"{box_type}.yml").write_text(BOX_YML.format(digest=DIGESTS[flip]))
                before = product.commandstats()
                with timed(f"ours N={n} {'(first deploy)' if rep == 0 else f'rep {rep}'}"):
                    run = stack.cli(env, "rollout", box_type, "--json").check()
                t_start = run.started_at  # the stream's ids are this machine's clock too
                delta = product.commandstats() - before
                summary = run.json_lines()[-1]["summary"]
                wait_heartbeats(client, prefix, ids, str(summary["release"]), timeout=60)
                if rep == 0:
                    continue
                events = read_events(client, prefix, box_type, str(summary["rollout"]))
                phases = [e for e in events if e.get("step") == "rollout"]
                ours.append(run.wall)
                rollout_s.append((ms(phases[-1]) - ms(phases[0])) / 1000)
                # The CLI's fixed cost: its start to the first box's first task (no registry
                # here: the images are pinned); and the rollout's end to its exit.
                first = min(ms(e) for e in events if e.get("step", "").startswith("deploy.")
                            and e.get("phase") == "start")
                fixed.append(first / 1000 - t_start)
                tail.append(t_start + run.wall - ms(phases[-1]) / 1000)
                in_stream.append((ms(phases[-1]) - first) / 1000)
                commands.append(sum(delta.values()))
            # One more, monitored: the steps' own Redis commands per step, apart from the
            # coordinator's and the heartbeats' (MONITOR slows Redis: not a timed rollout).
            flip ^= 1
            (boxes_dir / f"{box_type}.yml").write_text(BOX_YML.format(digest=DIGESTS[flip]))
            mon_run, who = attributed(stack, product, [workers[n][1]], prefix,
                                      lambda bt=box_type: stack.cli(env, "rollout", bt, "--json"))
            mon_run.check()
            wait_heartbeats(client, prefix, ids, str(mon_run.json_lines()[-1]["summary"]
                                                     ["release"]), timeout=60)
            floors: dict[str, list[float]] = {"one chain": [], "box chains": []}
            for shape, walls in floors.items():
                for rep in range(args.reps):
                    with timed(f"Celery floor N={n} ({shape}) rep {rep + 1}"):
                        walls.append(floor.run(n, shape, payload))
            results[n] = {"ours_cli_s": ours, "ours_rollout_stream_s": rollout_s,
                          "cli_fixed_s": fixed, "cli_tail_s": tail, "in_stream_s": in_stream,
                          "load_average_1m": os.getloadavg()[0],
                          "floor_s": floors, "product_commands": commands, "monitored": who,
                          "steps_commands_per_step": who["totals"]["steps"] / (n * len(STEPS)),
                          "coordinator_commands_per_box": who["totals"]["coordinator"] / n}

        true_s = bin_true_seconds()
        imports_s = import_floor_seconds()
        for n in sizes:
            if args.skip_ansible:
                results[n]["ansible_s"] = None
                continue
            with timed(f"Ansible play N={n}"):
                wall, recap = ansible_play(stack, n)
            results[n]["ansible_s"] = wall
            results[n]["ansible_recap"] = recap

        rows, verdicts = [], []
        for n in sizes:
            r = results[n]
            ours_box = median(r["ours_cli_s"]) / n
            stream_box = median(r["ours_rollout_stream_s"]) / n
            floor_box = min(median(w) for w in r["floor_s"].values()) / n
            ansible_box = ((r["ansible_s"] - len(STEPS) * n * true_s) / n
                           if r["ansible_s"] is not None else float("nan"))
            in_box = median(r["in_stream_s"]) / n
            r.update(ours_per_box_s=ours_box, floor_per_box_s=floor_box,
                     in_stream_per_box_s=in_box, in_stream_to_floor=in_box / floor_box,
                     cli_fixed_median_s=median(r["cli_fixed_s"]),
                     cli_tail_median_s=median(r["cli_tail_s"]),
                     ansible_per_box_s=ansible_box,
                     ratio_to_floor=ours_box / floor_box, ansible_over_ours=ansible_box / ours_box,
                     product_commands_per_box=median(r["product_commands"]) / n)
            rows.append([n, median(r["ours_cli_s"]), ours_box, stream_box,
                         median(r["floor_s"]["one chain"]) / n,
                         median(r["floor_s"]["box chains"]) / n, ansible_box,
                         r["product_commands_per_box"], r["steps_commands_per_step"]])
            verdicts += [
                [f"N={n}: ours / Celery floor", r["ratio_to_floor"], f"<= {FLOOR_RATIO}",
                 verdict(r["ratio_to_floor"], FLOOR_RATIO)],
                [f"N={n}: CLI start -> first box's task s", r["cli_fixed_median_s"],
                 f"<= {FIXED_TARGET_S}", verdict(r["cli_fixed_median_s"], FIXED_TARGET_S)],
                [f"N={n}: of which the libraries' import floor s", imports_s, "-", "-"],
                [f"N={n}: (import floor + Celery floor) / Celery floor", 1 + imports_s / (
                    floor_box * n), "-", "-"],
                [f"N={n}: rollout end -> CLI exit s", r["cli_tail_median_s"], "-", "-"],
                [f"N={n}: in-stream per box / Celery floor", r["in_stream_to_floor"],
                 f"<= {IN_STREAM_RATIO}", verdict(r["in_stream_to_floor"], IN_STREAM_RATIO)],
                [f"N={n}: load average (1 min)", r["load_average_1m"], "-", "-"],
                [f"N={n}: Ansible / ours", r["ansible_over_ours"], f">= {ANSIBLE_RATIO}",
                 verdict(r["ansible_over_ours"], ANSIBLE_RATIO, smaller_is_better=False)],
            ]
        table("per box, seconds (medians; overhead = wall - step work, and no-op work is 0)",
              ["N", "ours CLI wall", "ours/box", "ours/box (stream)", "floor 1 chain/box",
               "floor box chains/box", "Ansible/box", "product Redis cmds/box",
               "steps' cmds/step"], rows)
        if len(sizes) >= 2:
            lo, hi = sizes[0], sizes[-1]

            def slope(key: str) -> float:
                a, b = results[lo][key], results[hi][key]
                return (b * hi - a * lo) / (hi - lo)

            marg = [slope("ours_per_box_s"), slope("floor_per_box_s"), slope("ansible_per_box_s")]
            table(f"marginal seconds per box, from N={lo} to N={hi} (fixed costs cancel)",
                  ["ours", "Celery floor", "Ansible", "ours / floor", "Ansible / ours"],
                  [[*marg, marg[0] / marg[1], marg[2] / marg[0]]])
            verdicts.append(["marginal: ours / Celery floor", marg[0] / marg[1],
                             f"<= {FLOOR_RATIO}", verdict(marg[0] / marg[1], FLOOR_RATIO)])
            verdicts.append(["marginal: Ansible / ours", marg[2] / marg[0], f">= {ANSIBLE_RATIO}",
                             verdict(marg[2] / marg[0], ANSIBLE_RATIO, smaller_is_better=False)])
        table("result", ["measure", "value", "target", "verdict"], verdicts)
        save("overhead", {"sizes": sizes, "steps_per_box": len(STEPS), "bin_true_s": true_s,
                          "libraries_import_s": imports_s,
                          "box_yml": BOX_YML, "results": results, "verdicts": verdicts})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
