"""Benchmark 1: each box's out-of-service window against the floor of the same swap.

Three boxes (one `orchestrator-worker` each, the Docker runtime) behind a real HAProxy; a small
HTTP app (busybox httpd, 2 MB image FROM scratch) rolled v1 -> v2 -> v1 -> ..., batch 1, five
times. Each window is read from the event stream's ids (one clock): from `leave_lb` starting
(the drain begins) to `join_lb` ending (back in HAProxy with proven-healthy containers). The
image is deleted from the engine before each rollout, so that preflight really pulls it: the
pull time is shown, and where it ended relative to the first window.

The floor, in the same run, on the same engine, with the same images: raw docker-py
`stop` + `remove` + `run` (init, published port) + polling GET /health every 5 ms until the
first 200. Target: median window <= 1.15 x median floor + configured drain time (HAProxy has
none: it drains until the server's sessions reach 0, and no request is in flight here).

    bash benchmarks/run.sh window        # ~30 s
"""

from __future__ import annotations

import argparse
import http.client
import json
import time
from typing import Any

import docker

from benchmarks._measure import breakdown, ms, read_events, windows
from benchmarks._report import median, save, table, timed, verdict
from benchmarks._stack import (
    APP_PORT,
    CONTAINER_LABELS,
    HOST_PORT,
    Stack,
    WebFleet,
)
from devstack.engine import forget
from devstack.process import wait_for

BOX_TYPE = "web"
TARGET_RATIO = 1.15
DRAIN_TIME = 0.0  # HAProxy: no configured drain time (it waits for 0 sessions; none here)


def first_200(host: str, port: int, deadline: float, poll: float = 0.005) -> None:
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(host, port, timeout=1)
        try:
            conn.request("GET", "/health", headers={"Connection": "close"})
            if conn.getresponse().status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(poll)
    raise TimeoutError(f"no HTTP 200 from {host}:{port}")


def floor(client: docker.DockerClient, images: list[str], host: str,
          reps: int) -> list[dict[str, float]]:
    """Raw docker-py: stop + remove + run + first HTTP 200, alternating the images."""
    def run(image: str) -> Any:
        return client.containers.run(
            image, detach=True, init=True, labels=CONTAINER_LABELS, name=f"bench-floor-{host}",
            ports={f"{APP_PORT}/tcp": (host, HOST_PORT)})

    current = run(images[0])
    first_200(host, HOST_PORT, time.monotonic() + 10)
    out = []
    for i in range(reps):
        t0 = time.perf_counter()
        current.stop(timeout=10)
        t1 = time.perf_counter()
        current.remove(force=True)
        t2 = time.perf_counter()
        current = run(images[(i + 1) % len(images)])
        t3 = time.perf_counter()
        first_200(host, HOST_PORT, time.monotonic() + 10)
        t4 = time.perf_counter()
        out.append({"total_s": t4 - t0, "stop_s": t1 - t0, "remove_s": t2 - t1,
                    "run_s": t3 - t2, "first_200_s": t4 - t3})
    current.remove(force=True)
    return out


def preflight_pulls(product: Any, prefix: str, rollout: str,
                    boxes: list[str]) -> list[tuple[float, float]]:
    """(started, ended) unix times of each box's preflight, which pulled the image."""
    out = []
    for box in boxes:
        raw = product.hget(f"{prefix}journal:{rollout}:{box}", "deploy.preflight:-")
        if raw:
            entry = json.loads(raw)
            out.append((entry["started"], entry["ended"]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boxes", type=int, default=3)
    parser.add_argument("--rollouts", type=int, default=5, help="measured rollouts")
    args = parser.parse_args()

    with Stack("window") as stack:
        with timed("services, images"):
            fleet = WebFleet.start(stack, args.boxes)
        boxes, hap, repo, refs = fleet.boxes, fleet.hap, fleet.repo, fleet.refs
        with timed(f"{len(boxes)} box workers"):
            fleet.start_workers()
        product, prefix = fleet.product, fleet.prefix
        # Only the registry's references are kept: forgetting them deletes the image, so a
        # rollout's preflight downloads its layers for real.
        forget(stack.docker, *fleet.local.values())

        def deploy(version: str) -> tuple[str, float]:
            forget(stack.docker, f"{repo}:{version}", refs[version])
            run = fleet.deploy(f"{repo}:{version}", "--reason", version)
            return str(run.json_lines()[-1]["summary"]["rollout"]), run.wall

        with timed("first deploy (v1, not measured)"):
            deploy("v1")
            wait_for(hap.all_up, "every box UP in HAProxy")

        spare = fleet.ips[boxes[-1]].rsplit(".", 1)[0] + f".{11 + len(boxes)}"
        rows: list[list[object]] = []
        all_windows: list[float] = []
        pulls: list[dict[str, object]] = []
        floors: list[dict[str, float]] = []
        parts: list[dict[str, float]] = []
        for n in range(args.rollouts):
            version = ("v2", "v1")[n % 2]
            # Interleaved, so that the floor and the windows see the same engine and load.
            with timed(f"floor x {len(boxes)}"):
                floors += floor(stack.docker, [refs["v1"], refs["v2"]], spare, reps=len(boxes))
            with timed(f"rollout {n + 1} -> {version}"):
                rid, wall = deploy(version)
            events = read_events(product, prefix, BOX_TYPE, rid)
            swapped = {e["box"] for e in events if e.get("step") == "deploy.swap"}
            if swapped != set(boxes):
                raise RuntimeError(f"rollout {rid} swapped only {sorted(swapped)}")
            wins = windows(events)
            first_leave = min(ms(e) for e in events if e.get("step") == "deploy.leave_lb")
            for started, ended in preflight_pulls(product, prefix, rid, boxes):
                pulls.append({"rollout": rid, "pull_s": ended - started,
                              "ends_before_first_window_s": first_leave / 1000 - ended})
            for box, w in wins.items():
                parts.append(breakdown(events, box))
                all_windows.append(w["window_s"])
                rows.append([rid[-4:], version, box, w["window_s"], w["drain_s"],
                             w["pull_ends_before_window_s"], round(wall, 2)])
        table("out-of-service windows (stream ids: leave_lb start -> join_lb end)",
              ["rollout", "to", "box", "window s", "drain s", "pull step ends before s",
               "CLI wall s"], rows)
        table("preflight pulls (before any box leaves; the chain's pull step finds the image)",
              ["rollout", "preflight (pull) s", "ended before first window s"],
              [[str(p["rollout"])[-4:], p["pull_s"], p["ends_before_first_window_s"]]
               for p in pulls])
        keys = ["leave_lb", "swap", "restore", "join_lb", "hops"]
        table("where the window goes (medians, s)", keys,
              [[median([p.get(k, 0.0) for p in parts]) for k in keys]])
        table("floor: docker-py stop + remove + run + first HTTP 200",
              ["rep", "total s", "stop s", "remove s", "run s", "first 200 s"],
              [[i + 1, f["total_s"], f["stop_s"], f["remove_s"], f["run_s"], f["first_200_s"]]
               for i, f in enumerate(floors)])

        floor_med = median([f["total_s"] for f in floors])
        win_med = median(all_windows)
        target = TARGET_RATIO * floor_med + DRAIN_TIME
        pulls_outside = all(float(str(p["ends_before_first_window_s"])) > 0 for p in pulls)
        result_rows = [
            ["median window s", win_med, f"<= {target:.3f}", verdict(win_med, target)],
            ["max window s", max(all_windows), "-", "-"],
            ["median floor s", floor_med, "-", "-"],
            ["window / floor", win_med / floor_med, f"<= {TARGET_RATIO}",
             verdict(win_med / floor_med, TARGET_RATIO)],
            ["window - floor s", win_med - floor_med, "-", "-"],
            ["median preflight (pull) s", median([float(str(p["pull_s"])) for p in pulls]),
             "outside the window", "met" if pulls_outside else "NOT MET"],
        ]
        table("result", ["measure", "value", "target", "verdict"], result_rows)
        save("window", {
            "boxes": len(boxes), "rollouts": args.rollouts,
            "box_yml": fleet.box_yml("IMAGE"), "windows": rows, "window_parts": parts,
            "floor": floors, "pulls": pulls,
            "median_window_s": win_med, "median_floor_s": floor_med,
            "ratio": win_med / floor_med, "target_ratio": TARGET_RATIO,
            "drain_time_s": DRAIN_TIME, "target_s": target,
            "met": win_med <= target, "pulls_outside_window": pulls_outside,
            "haproxy_log": hap.log()[-1000:],
        })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

