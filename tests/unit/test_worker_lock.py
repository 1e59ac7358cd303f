"""The hashed lock covers every runtime dependency of the distribution, each pinned and hashed."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "worker.lock"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes), from the lock's `name==version \\ --hash=sha256:...` entries."""
    text = LOCK.read_text().replace("\\\n", " ")
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})*)", line)
        assert m, f"{LOCK.name}: not a pinned, hashed requirement: {line!r}"
        out[canonicalize_name(m[1])] = (m[2], re.findall(r"sha256:([0-9a-f]{64})", m[3]))
    return out


def closure(requirements: list[str]) -> set[str]:
    """Every distribution the requirements need on this Python, following installed metadata."""
    seen: set[str] = set()
    todo = [(Requirement(r), "") for r in requirements]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        wanted = {(name, e) for e in req.extras} | {(name, "")}
        if all(f"{n}[{e}]" in seen for n, e in wanted):
            continue
        seen |= {f"{n}[{e}]" for n, e in wanted}
        for raw in importlib.metadata.distribution(name).requires or []:
            sub = Requirement(raw)
            for e in {"", *req.extras}:
                if sub.marker is None or sub.marker.evaluate({"extra": e}):
                    todo.append((sub, e))
                    break
    return {s.split("[", 1)[0] for s in seen}


def test_the_distribution_name_is_ours_alone() -> None:
    assert PYPROJECT["project"]["name"] == "gc-box-orchestrator"
    scripts = PYPROJECT["project"]["scripts"]
    assert {"orchestrator", "orchestrator-worker", "orchestrator-worker-env"} <= set(scripts)


def test_every_entry_is_pinned_with_hashes() -> None:
    entries = locked()
    assert entries
    assert all(hashes for _, hashes in entries.values()), [
        n for n, (_, h) in entries.items() if not h
    ]


def test_lock_covers_every_runtime_dependency_and_satisfies_pyproject() -> None:
    entries = locked()
    direct = PYPROJECT["project"]["dependencies"]
    for raw in direct:
        req = Requirement(raw)
        name = canonicalize_name(req.name)
        assert name in entries, f"{raw} is not in {LOCK.name}"
        assert req.specifier.contains(entries[name][0]), f"{LOCK.name} pins {name} outside {raw}"
    missing = closure(direct) - set(entries)
    assert not missing, f"{LOCK.name} lacks {sorted(missing)}: run pip-compile (README)"
    # and nothing beyond the runtime: the dev extra stays out of the box
    extra = PYPROJECT["project"]["optional-dependencies"]["dev"]
    dev = {canonicalize_name(Requirement(r).name) for r in extra}
    assert not dev & set(entries) - closure(direct)
