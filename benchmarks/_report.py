"""What the benchmarks print and keep: tables, verdicts, the machine, JSON under results/."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import docker

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")



def machine() -> dict[str, Any]:
    """What the numbers ran on."""
    def first_line(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=20)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "unknown"

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis": first_line(["redis-server", "--version"]),
        "haproxy": first_line(["haproxy", "-v"]),
        "load_average_1m_at_save": round(os.getloadavg()[0], 2),
    }
    with contextlib.suppress(Exception):
        client = docker.from_env()
        info["docker_engine"] = client.version()["Version"]
        client.close()
    with contextlib.suppress(Exception):
        import celery
        import kombu

        info["celery"], info["kombu"] = celery.__version__, kombu.__version__
    return info


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[_cell(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [title, line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                      enumerate(zip(r, widths, strict=True))) for r in cells]
    text = "\n".join(out)
    print("\n" + text, flush=True)
    return text


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def verdict(measured: float, target: float, smaller_is_better: bool = True) -> str:
    met = measured <= target if smaller_is_better else measured >= target
    return "met" if met else "NOT MET"


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    data = {"benchmark": name, "at": stamp, "machine": machine(), **data}
    text = json.dumps(data, indent=2, default=str)
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_text(text)
    (RESULTS / f"{name}-latest.json").write_text(text)
    print(f"\nresult: {path.relative_to(ROOT)}", flush=True)
    return path


@contextlib.contextmanager
def timed(label: str) -> Iterator[None]:
    t0 = time.perf_counter()
    print(f"... {label}", flush=True)
    yield
    print(f"    {label}: {time.perf_counter() - t0:.1f} s", flush=True)
