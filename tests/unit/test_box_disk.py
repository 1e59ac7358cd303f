"""A box keeps its releases and its record on its own disk: many threads writing at once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from schemas.contract import Keys
from schemas.release import Release
from tests.harness.releases_fx import plain_release as release
from worker.record import BoxRecord, BoxState
from worker.releases import BoxReleases

pytestmark = pytest.mark.unit

def test_threads_keeping_one_release_at_once_all_succeed(tmp_path: Path) -> None:
    """A worker's first preflights of a release arrive together, one per thread: each keeps
    it (a shared `<id>.tmp` made every rename but the first fail, and those boxes never
    answered)."""
    box = BoxReleases(None, Keys("t:"), str(tmp_path))  # type: ignore[arg-type]  # disk only
    errors: list[BaseException] = []
    for n in range(20):
        rel = release(n)
        gate = threading.Barrier(16)

        def keep(rel: Release = rel, gate: threading.Barrier = gate) -> None:
            gate.wait()
            try:
                box._keep(rel)
            except BaseException as exc:  # noqa: BLE001 (collected, asserted below)
                errors.append(exc)

        threads = [threading.Thread(target=keep) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert box._kept(rel.id) == rel
    assert errors == []
    assert sorted(p.name for p in (tmp_path / "releases").iterdir()) == sorted(
        f"{release(n).id}.json" for n in range(20))  # no temporary file left behind


def test_threads_writing_one_box_record_each_through_its_own_object(tmp_path: Path) -> None:
    """A step, the catch-up and a retire each make their own BoxRecord of the box: their
    writes must not share a temporary file (the rename of all but one failed)."""
    errors: list[BaseException] = []
    gate = threading.Barrier(16)

    def write(n: int) -> None:
        gate.wait()
        try:
            for i in range(20):
                BoxRecord(tmp_path, "b1").write(BoxState(rollout=f"r{n}-{i}"))
        except BaseException as exc:  # noqa: BLE001 (collected, asserted below)
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert BoxRecord(tmp_path, "b1").read().rollout.endswith("-19")
    assert [p.name for p in tmp_path.iterdir()] == ["b1.json"]


def test_changes_from_many_threads_each_read_the_last_write(tmp_path: Path) -> None:
    """A retire's change made from a read older than a step's intent dropped that intent:
    every change reads, edits and writes under the file's lock."""
    gate = threading.Barrier(8)

    def change(n: int) -> None:
        gate.wait()
        for i in range(20):
            BoxRecord(tmp_path, "b1").intend("r1", "t1", f"a{n}-{i}", {"step": "swap"})
            BoxRecord(tmp_path, "b1").retire(f"old{n}", {"ids": str(i)})
            BoxRecord(tmp_path, "b1").retired([f"old{n}"])

    threads = [threading.Thread(target=change, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    state = BoxRecord(tmp_path, "b1").read()
    assert len(state.intents) == 160 and state.retiring == {}
