"""Benchmark 3: end to end against a peer, the same job done by an Ansible play.

Three boxes behind a real HAProxy (no retries, no redispatch: a request sent to a box that is
gone fails), the small HTTP app (busybox httpd) rolled v1 -> v2, batch 1, while 4 client
threads send requests through HAProxy (each capped at --rate req/s, bounded in count and
time). First ours (`orchestrator rollout web --image web=...:v2`, one `orchestrator-worker` per
box, Docker runtime); then, on the same engine, HAProxy and images, the boxes are reset to v1
containers and an Ansible play does the job the way its users write it: `serial: 1`;
community.general.haproxy `state: drain` (wait) -> `state: disabled` (drain, wait) ->
community.docker.docker_container with the new image -> ansible.builtin.uri on /health until
200 (retries 30, delay 1) -> community.general.haproxy `state: enabled` (wait); the modules'
own defaults otherwise (wait_interval 5 s).

Each box's out-of-service window is measured the same way for both, from HAProxy itself:
`show stat` sampled every 10 ms, the time its server was not UP (DRAIN and MAINT count as
out); ours also from the event stream's ids. Targets: ours <= 1/6 of the play's wall time,
0 failed requests, each box's window <= 1/5 of the play's.

    bash benchmarks/run.sh peer          # ~1 minute (2 rounds)
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from benchmarks._measure import (
    CPU_COLUMNS,
    CpuGroups,
    StateSampler,
    breakdown,
    ms,
    read_events,
    windows,
)
from benchmarks._play import PLAY, run_play
from benchmarks._report import median, save, table, timed, verdict
from benchmarks._stack import (
    APP_PORT,
    BACKEND,
    BENCH_LABEL,
    CONTAINER_LABELS,
    HOST_PORT,
    Stack,
    WebFleet,
)
from devstack.haproxy import HAProxy
from devstack.process import wait_for
from devstack.traffic import TrafficLoop, TrafficStats
from devstack.workers import BoxWorker
from orchestrator.engine.journal import Journal, field
from schemas.contract import Keys, TaskName

BOX_TYPE = "web"
ALT_PORT = HOST_PORT + 1  # start-first's second port set
WALL_RATIO = 6.0
WINDOW_RATIO = 5.0


def ours_timeline(events: list[dict[str, str]], clock: dict[str, float],
                  in_windows: float) -> dict[str, float]:
    """The CLI's wall time cut at its rollout's first and last events (one host clock)."""
    marks = [e for e in events if e.get("step") == "rollout"]
    first, last = ms(marks[0]) / 1000, ms(marks[-1]) / 1000
    return {
        "start -> rollout start (load, pin, lease, preflight)": first - clock["start"],
        "boxes out of service (sum of windows)": in_windows,
        "rest of the chains (pull, claim, services, finish, hand-over)":
            (last - first) - in_windows,
        "rollout end -> CLI exit (watch interval, summary)": clock["end"] - last,
    }


def measured(action: Any) -> tuple[Any, dict[str, list[float]]]:
    """`action()` once traffic has flowed 1 s; the machine's CPU, by process group, during the
    last 0.5 s of traffic alone and during the action."""
    time.sleep(0.5)
    alone = CpuGroups()
    time.sleep(0.5)
    cpu = {"traffic alone": alone.stop().row()}
    during = CpuGroups()
    result = action()
    cpu["during"] = during.stop().row()
    return result, cpu


def under_traffic(hap: HAProxy, rate: float, action: Any
                  ) -> tuple[Any, TrafficStats, dict[str, list[float]], dict[str, list[float]]]:
    """Run `action()` while the request loop and the HAProxy sampler run: its result, the
    traffic, each server's times out of service, the machine's CPU (`measured`)."""
    with StateSampler(hap) as sampler, TrafficLoop(hap.url, threads=4, rate_per_thread=rate,
                                                   max_requests=100_000,
                                                   max_seconds=300) as loop:
        result, cpu = measured(action)
        time.sleep(1.0)
        stats = loop.stop()
    return result, stats, sampler.out_of_service(), cpu



def start_first_yml(fleet: WebFleet, image: str) -> str:
    """The same box.yml, with `strategy: start-first` and the alternate port."""
    head = "    lb_kind: haproxy\n"
    extra = f"    strategy: start-first\n    alternate_ports: {{{HOST_PORT}: {ALT_PORT}}}\n"
    return fleet.box_yml(image).replace(head, head + extra)


def deploy_yml(fleet: WebFleet, text: str, *args: str) -> Any:
    """`orchestrator rollout` of the box file `text`, as WebFleet.deploy does."""
    from benchmarks._stack import wait_heartbeats

    (fleet.stack.dir / "boxes" / f"{BOX_TYPE}.yml").write_text(text)
    run = fleet.stack.cli(fleet.env, "rollout", BOX_TYPE, "--json", *args).check()
    with fleet.product as product:
        wait_heartbeats(product, fleet.prefix, fleet.boxes,
                        str(run.json_lines()[-1]["summary"]["release"]))
    return run


def fewest_up(sampler: StateSampler) -> int:
    """The fewest servers UP at any sample: the capacity served throughout."""
    return min((sum(1 for st, _ in servers.values() if st.startswith("UP"))
                for _, servers in sampler.samples), default=0)


def preflight_times(product: Any, fleet: WebFleet, rollout: str, start: float
                    ) -> dict[str, list[float]]:
    """Each box's preflight (checks, then staging) as its worker journaled it: [began, ended],
    seconds from the CLI's start (one host clock)."""
    keys, out = Keys(fleet.prefix), {}
    for box in fleet.boxes:
        got = Journal.parse(product.hget(keys.journal(rollout, box),
                                         field(TaskName.PREFLIGHT.value, None)))
        if got is not None:
            out[box] = [round(got.started - start, 3), round(got.ended - start, 3)]
    return out


def start_first_round(fleet: WebFleet, rate: float) -> dict[str, Any]:
    """v1 -> v2 with start-first under traffic (the boxes are put on v1 start-first first:
    not measured); what HAProxy logged and what the sampler saw during the rollout."""
    hap, repo = fleet.hap, fleet.repo
    deploy_yml(fleet, start_first_yml(fleet, f"{repo}:v1"), "--wait")
    wait_for(hap.all_up, "every box UP in HAProxy")
    logged = len(hap.state_changes())
    (fleet.stack.dir / "boxes" / f"{BOX_TYPE}.yml").write_text(
        start_first_yml(fleet, f"{repo}:v2"))
    with StateSampler(hap) as sampler, TrafficLoop(hap.url, threads=4, rate_per_thread=rate,
                                                   max_requests=100_000,
                                                   max_seconds=300) as loop:
        run, cpu = measured(lambda: fleet.stack.cli(fleet.env, "rollout", BOX_TYPE, "--json",
                                                    "--reason", "v2 sf"))
        clock = {"start": run.started_at, "end": run.started_at + run.wall}
        time.sleep(1.0)
        stats = loop.stop()
    run.check()
    rollout = str(run.json_lines()[-1]["summary"]["rollout"])
    with fleet.product as product:
        events = read_events(product, fleet.prefix, BOX_TYPE, rollout)
        preflight = preflight_times(product, fleet, rollout, clock["start"])
    changes = [f"{c.server}: {c.text}" for c in hap.state_changes()[logged:]]
    return {"wall_s": run.wall, "requests": stats.total, "failed": stats.failed,
            "failures": dict(stats.failures), "bodies": dict(stats.answers()),
            "windows_sampled": sampler.out_of_service(), "fewest_up": fewest_up(sampler),
            "samples": len(sampler.samples), "state_changes": changes,
            "parts": {b: breakdown(events, b) for b in fleet.boxes},
            "timeline": ours_timeline(events, clock, 0.0),
            "preflight": preflight, "cpu": cpu,
            "swaps": {e.get("box", ""): e.get("reason", "") for e in events
                      if e.get("step") == "deploy.swap" and e.get("phase") == "end"},
            "events": [[round(ms(e) / 1000 - clock["start"], 3), e.get("box", ""),
                        e.get("step", ""), e.get("phase", "")] for e in events],
            "out_changes": [c for c in changes
                            if any(w in c for w in ("DRAIN", "maintenance", "DOWN"))]}


def cpu_table(rounds: list[dict[str, Any]]) -> None:
    """What each rollout had of this machine's cores, and who else used them: the traffic (the
    app's containers, HAProxy, the client) takes a share before anything moves."""
    who = (("ours", "ours"), ("ours start-first", "start_first"), ("Ansible", "ansible"))
    table(f"the machine's CPU, s ({os.cpu_count()} cores; every process, by group)",
          ["round", "who", "while", *CPU_COLUMNS],
          [[i + 1, name, phase, *rd[key]["cpu"][phase]] for i, rd in enumerate(rounds)
           for name, key in who for phase in ("traffic alone", "during")])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="req/s per client thread")
    parser.add_argument("--rounds", type=int, default=2, help="ours, then the play, N times")
    args = parser.parse_args()

    with Stack("peer") as stack:
        with timed("services, images"):
            fleet = WebFleet.start(stack, 3)
        boxes, ips, hap, repo, refs = fleet.boxes, fleet.ips, fleet.hap, fleet.repo, fleet.refs
        env, product = fleet.env, fleet.product
        workers: list[BoxWorker] = []

        def remove_boxes_containers() -> None:
            for c in stack.docker.containers.list(all=True, sparse=True,
                                                  filters={"label": BENCH_LABEL}):
                labels = c.attrs.get("Labels") or {}
                if labels.get("orchestrator.box") in boxes or c.attrs["Names"][0].lstrip(
                        "/").removeprefix("web-") in boxes:
                    c.remove(force=True)

        def ours_on_v1(round_no: int) -> None:
            """Our workers, each box on v1 deployed by us (not measured)."""
            remove_boxes_containers()
            workers[:] = fleet.start_workers(f"-{round_no}")
            fleet.deploy(f"{repo}:v1", "--wait")  # after the fresh boxes' own catch-up
            wait_for(hap.all_up, "every box UP in HAProxy")

        def play_on_v1() -> None:
            """No worker; each box runs v1 as a play would have left it (not measured)."""
            for w in workers:
                w.stop()
            remove_boxes_containers()
            for b in boxes:
                stack.docker.containers.run(
                    refs["v1"], detach=True, init=True, name=f"web-{b}", labels=CONTAINER_LABELS,
                    ports={f"{APP_PORT}/tcp": (ips[b], HOST_PORT)})
            wait_for(hap.all_up, "every box UP in HAProxy", timeout=30)

        rounds: list[dict[str, Any]] = []
        for r in range(args.rounds):
            with timed(f"round {r + 1}: our workers, v1 deployed (not measured)"):
                ours_on_v1(r)
            clock: dict[str, float] = {}

            def ours(clock: dict[str, float] = clock) -> Any:
                out = stack.cli(env, "rollout", BOX_TYPE, "--image", f"web={repo}:v2", "--json",
                                "--reason", "v2")
                clock.update(start=out.started_at, end=out.started_at + out.wall)
                return out

            with timed(f"round {r + 1}: ours, v1 -> v2 under traffic"):
                run, ours_traffic, ours_out, ours_cpu = under_traffic(hap, args.rate, ours)
            run.check()
            summary = run.json_lines()[-1]["summary"]
            ours_events = read_events(product, fleet.prefix, BOX_TYPE, str(summary["rollout"]))
            ours_stream = windows(ours_events)
            parts = {b: breakdown(ours_events, b) for b in boxes}
            timeline = ours_timeline(ours_events, clock,
                                     sum(w["window_s"] for w in ours_stream.values()))
            with timed(f"round {r + 1}: ours start-first, v1 -> v2 under traffic"):
                sf = start_first_round(fleet, args.rate)
            with timed(f"round {r + 1}: reset to v1 the play's way (not measured)"):
                play_on_v1()
            with timed(f"round {r + 1}: Ansible, v1 -> v2 under traffic"):
                (play_wall, play_log), play_traffic, play_windows, play_cpu = under_traffic(
                    hap, args.rate, lambda: run_play(stack, hap, ips, refs["v2"]))
            rounds.append({
                "start_first": sf,
                "ours": {"wall_s": run.wall, "windows_sampled": ours_out,
                         "windows_stream": ours_stream, "parts": parts, "timeline": timeline,
                         "cpu": ours_cpu,
                         "requests": ours_traffic.total, "failed": ours_traffic.failed,
                         "failures": dict(ours_traffic.failures),
                         "bodies": dict(ours_traffic.answers()), "samples": ours_traffic.samples},
                "ansible": {"wall_s": play_wall, "windows_sampled": play_windows, "cpu": play_cpu,
                            "requests": play_traffic.total, "failed": play_traffic.failed,
                            "failures": dict(play_traffic.failures),
                            "bodies": dict(play_traffic.answers()),
                            "samples": play_traffic.samples,
                            "recap": play_log.strip().splitlines()[-4:]},
            })

        keys = ["leave_lb", "swap", "restore", "join_lb", "hops"]
        table("ours: where each window goes, s (stream ids)", ["round", "box", *keys],
              [[i + 1, b, *(rd["ours"]["parts"][b].get(k, 0.0) for k in keys)]
               for i, rd in enumerate(rounds) for b in boxes])
        tl_keys = list(rounds[0]["ours"]["timeline"])
        table("ours: where the CLI's wall time goes, s", ["round", *tl_keys],
              [[i + 1, *rd["ours"]["timeline"].values()] for i, rd in enumerate(rounds)])
        table("ours start-first: where the CLI's wall time goes, s (preflight stages the new "
              "version; no box is out of service)", ["round", *tl_keys],
              [[i + 1, *rd["start_first"]["timeline"].values()] for i, rd in enumerate(rounds)])
        cpu_table(rounds)
        rows = []
        for i, rd in enumerate(rounds):
            for b in boxes:
                ours_w = max(rd["ours"]["windows_sampled"].get(b, [0.0]))
                play_w = max(rd["ansible"]["windows_sampled"].get(b, [0.0]))
                stream_w = rd["ours"]["windows_stream"].get(b, {}).get("window_s", float("nan"))
                rows.append([i + 1, b, ours_w, stream_w, play_w,
                             play_w / ours_w if ours_w else float("inf")])
        table("out-of-service window per box, s (HAProxy sampled every 10 ms; ours also from "
              "stream ids)", ["round", "box", "ours", "ours (stream)", "Ansible",
                              "Ansible / ours"], rows)
        traffic_rows = [[i + 1, who, rd[key]["wall_s"], rd[key]["requests"], rd[key]["failed"],
                         rd[key]["failures"], rd[key]["bodies"]]
                        for i, rd in enumerate(rounds)
                        for who, key in (("ours", "ours"), ("Ansible", "ansible"))]
        traffic_rows += [[i + 1, "ours start-first", rd["start_first"]["wall_s"],
                          rd["start_first"]["requests"], rd["start_first"]["failed"],
                          rd["start_first"]["failures"], rd["start_first"]["bodies"]]
                         for i, rd in enumerate(rounds)]
        table("wall time and requests", ["round", "who", "wall s", "requests", "failed",
                                          "failures", "bodies"], traffic_rows)
        table("ours start-first: each box's steps, s (stream ids; the box stays in service)",
              ["round", "box", *keys],
              [[i + 1, b, *(rd["start_first"]["parts"][b].get(k, 0.0) for k in keys)]
               for i, rd in enumerate(rounds) for b in boxes])
        table("ours start-first: inside each swap (the swap's own account)", ["round", "box",
              "reason"], [[i + 1, b, rd["start_first"]["swaps"].get(b, "").partition("(")[2]
                          .rstrip(")")] for i, rd in enumerate(rounds) for b in boxes])
        table("start-first: HAProxy during the rollout",
              ["round", "samples", "fewest UP", "servers ever not UP (sampled)",
               "DRAIN/MAINT/DOWN logged", "state changes logged"],
              [[i + 1, rd["start_first"]["samples"], rd["start_first"]["fewest_up"],
                sorted(rd["start_first"]["windows_sampled"]), len(rd["start_first"]["out_changes"]),
                len(rd["start_first"]["state_changes"])] for i, rd in enumerate(rounds)])
        sf_wall = median([rd["start_first"]["wall_s"] for rd in rounds])
        sf_failed = sum(rd["start_first"]["failed"] for rd in rounds)
        sf_out = sum(len(rd["start_first"]["out_changes"]) + len(rd["start_first"][
            "windows_sampled"]) for rd in rounds)
        sf_fewest = min(rd["start_first"]["fewest_up"] for rd in rounds)
        ours_wall = median([rd["ours"]["wall_s"] for rd in rounds])
        play_wall_med = median([rd["ansible"]["wall_s"] for rd in rounds])
        ours_failed = sum(rd["ours"]["failed"] for rd in rounds)
        worst = min(r[5] for r in rows)
        verdicts = [
            ["median wall s: ours", ours_wall, "-", "-"],
            ["median wall s: Ansible", play_wall_med, "-", "-"],
            ["Ansible wall / ours (medians)", play_wall_med / ours_wall, f">= {WALL_RATIO}",
             verdict(play_wall_med / ours_wall, WALL_RATIO, smaller_is_better=False)],
            ["failed requests, ours (all rounds)", ours_failed, "0", verdict(ours_failed, 0)],
            ["failed requests, Ansible (all rounds)",
             sum(rd["ansible"]["failed"] for rd in rounds), "-", "-"],
            ["median window s: ours", median([r[2] for r in rows]), "-", "-"],
            ["median window s: Ansible", median([r[4] for r in rows]), "-", "-"],
            ["Ansible window / ours, worst box", worst, f">= {WINDOW_RATIO}",
             verdict(worst, WINDOW_RATIO, smaller_is_better=False)],
            ["median wall s: ours start-first", sf_wall, "-", "-"],
            ["Ansible wall / ours start-first (medians)", play_wall_med / sf_wall,
             f">= {WALL_RATIO}",
             verdict(play_wall_med / sf_wall, WALL_RATIO, smaller_is_better=False)],
            ["failed requests, start-first (all rounds)", sf_failed, "0", verdict(sf_failed, 0)],
            ["start-first: servers not UP (log + samples)", sf_out, "0", verdict(sf_out, 0)],
            ["start-first: fewest servers UP", sf_fewest, ">= 3",
             verdict(sf_fewest, 3, smaller_is_better=False)],
        ]
        table("result", ["measure", "value", "target", "verdict"], verdicts)
        save("peer", {"rate_per_thread": args.rate, "threads": 4, "box_yml": fleet.box_yml("IMAGE"),
                      "play": PLAY, "rounds": rounds, "rows": rows, "verdicts": verdicts,
                      "backend": BACKEND})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
