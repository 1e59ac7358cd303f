"""A box's files and its record on its own disk: many threads writing at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.common import all_at_once
from worker.atomicfile import replace_file
from worker.record import BoxRecord, BoxState

pytestmark = pytest.mark.unit


def test_threads_replacing_one_file_at_once_each_write_it_whole(tmp_path: Path) -> None:
    """Each writer renames a whole file of its own (a shared `<name>.tmp` made every rename
    but the first fail): the file is one writer's bytes, and no temporary file is left."""
    target = tmp_path / "f.json"

    def write(n: int) -> None:
        for i in range(20):
            replace_file(target, f"{n}-{i}".encode() * 1000, durable=i % 2 == 0)

    assert all_at_once(16, write) == []
    data = target.read_bytes()
    assert data == data[: len(data) // 1000] * 1000  # one write, whole
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]
    assert target.stat().st_mode & 0o777 == 0o600


def test_threads_writing_one_box_record_each_through_its_own_object(tmp_path: Path) -> None:
    """A step, the catch-up and a retire each make their own BoxRecord of the box: their
    writes must not share a temporary file (the rename of all but one failed)."""

    def write(n: int) -> None:
        for i in range(20):
            BoxRecord(tmp_path, "b1").write(BoxState(rollout=f"r{n}-{i}"))

    assert all_at_once(16, write) == []
    assert BoxRecord(tmp_path, "b1").read().rollout.endswith("-19")
    assert [p.name for p in tmp_path.iterdir()] == ["b1.json"]


def test_changes_from_many_threads_each_read_the_last_write(tmp_path: Path) -> None:
    """A retire's change made from a read older than a step's intent dropped that intent:
    every change reads, edits and writes under the file's lock."""

    def change(n: int) -> None:
        for i in range(20):
            BoxRecord(tmp_path, "b1").intend("r1", "t1", f"a{n}-{i}", {"step": "swap"})
            BoxRecord(tmp_path, "b1").retire(f"old{n}", {"ids": str(i)})
            BoxRecord(tmp_path, "b1").retired([f"old{n}"])

    assert all_at_once(8, change) == []
    state = BoxRecord(tmp_path, "b1").read()
    assert len(state.intents) == 160 and state.retiring == {}


def test_a_retire_drops_the_apps_staging_note_in_the_same_write(tmp_path: Path) -> None:
    """Once the old version retires, the staged one serves: the record forgets its staging in
    the retire's own write (the swap's unstage then writes nothing); other apps keep theirs."""
    record = BoxRecord(tmp_path, "b1")
    record.stage("web", {"rollout": "r1", "state": "ready"})
    record.stage("api", {"rollout": "r1", "state": "ready"})
    record.retire("web", {"ids": "c1"})
    state = record.read()
    assert state.retiring == {"web": {"ids": "c1"}}
    assert list(state.staged) == ["api"]
    before = record.path.stat().st_mtime_ns, record.path.stat().st_ino
    record.unstage(["web"])
    assert (record.path.stat().st_mtime_ns, record.path.stat().st_ino) == before
