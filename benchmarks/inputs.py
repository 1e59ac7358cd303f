"""Benchmark 6: what input costs. `validate` on box.yml files of 1,000 to 20,000 apps, the
alias bomb and the deepest nesting refused, each stage timed (CPU seconds) with its peak memory.

    python -m benchmarks.inputs                  # 1,000, 5,000 and 20,000 apps
    python -m benchmarks.inputs --apps 50000     # one size

The tests hold the limits (tests/unit/test_inputs_corpus.py runs each case under RLIMIT_AS
200 MB and RLIMIT_CPU 10 s); the timings live here, never in an assert. Writes
benchmarks/results/inputs-*.json.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._report import save, table

ROOT = Path(__file__).resolve().parents[1]

# One child per size: its own peak RSS, stage by stage, as `validate` runs them.
CHILD = """
import resource, sys, time
from pathlib import Path
from orchestrator import yamlload
from schemas.boxfile import BoxSpec
from schemas.checks import check_box
path = Path(sys.argv[1])
out = []
t = time.process_time(); raw = yamlload.read_bytes(path); text = yamlload.decode(raw, "x")
out.append(time.process_time() - t)
t = time.process_time(); data, _ = yamlload.parse(text, "x"); out.append(time.process_time() - t)
t = time.process_time(); spec = BoxSpec.model_validate(data); out.append(time.process_time() - t)
t = time.process_time(); problems = check_box(spec); out.append(time.process_time() - t)
assert not problems, problems[:3]
out.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(" ".join(f"{v:.3f}" for v in out))
"""


def apps_file(n: int) -> str:
    lines = ["apps:"]
    for i in range(n):
        lines += [
            f"  app{i}:",
            f"    image: registry.example.com/app{i}:1",
            f"    containers: {{c: {{ports: ['{10000 + i}:80'], env: {{N: {i}}}}}}}",
        ]
    return "\n".join(lines) + "\n"


REFUSE = """
import resource, sys, time
from pathlib import Path
from orchestrator.errors import InvalidFile
from orchestrator.yamlload import read_yaml
t = time.process_time()
try:
    read_yaml(Path(sys.argv[1]))
    refused = 0
except InvalidFile:
    refused = 1
print(f"{time.process_time() - t:.4f} {refused}")
"""


def refused(path: Path) -> tuple[float, int]:
    """CPU seconds to refuse a file that must be refused, and whether it was (1)."""
    got = subprocess.run(
        [sys.executable, "-c", REFUSE, str(path)],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=True,
    ).stdout.split()
    return float(got[0]), int(got[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, action="append", help="Sizes (default 1k, 5k, 20k)")
    sizes = parser.parse_args().apps or [1_000, 5_000, 20_000]
    rows, data = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = Path(tmp) / f"apps-{n}.yml"
            path.write_text(apps_file(n))
            got = subprocess.run(
                [sys.executable, "-c", CHILD, str(path)],
                capture_output=True, text=True, cwd=ROOT, check=True,
            ).stdout.split()
            read, parse, model, checks, peak = map(float, got)
            total = read + parse + model + checks
            rows.append([n, f"{path.stat().st_size / 1e6:.1f}", f"{parse:.2f}", f"{model:.2f}",
                         f"{checks:.2f}", f"{total:.2f}", f"{peak:.0f}"])
            data[str(n)] = {"bytes": path.stat().st_size, "read": read, "parse": parse,
                            "models": model, "checks": checks, "cpu_total": total,
                            "peak_rss_mib": peak}
        for name in ("alias_bomb", "deep_nesting_flow"):
            seconds, code = refused(ROOT / "tests" / "data" / "bad" / f"{name}.yml")
            data[name] = {"cpu_seconds": seconds, "refused": bool(code)}
    print(table("validate: CPU seconds by stage, peak RSS",
                ["apps", "MB", "parse", "models", "checks", "total", "peak MiB"], rows))
    for name in ("alias_bomb", "deep_nesting_flow"):
        print(f"{name}: refused={data[name]['refused']} in {data[name]['cpu_seconds']:.4f}s CPU")
    print(f"coordinator peak RSS here: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} KiB")
    save("inputs", data)


if __name__ == "__main__":
    main()
