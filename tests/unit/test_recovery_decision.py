"""The box's own record: when it is finished here, and the record file itself (tmp dir)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from schemas.contract import Member
from worker.decide import Owner, decide_recovery
from worker.record import BoxRecord, BoxState

pytestmark = pytest.mark.unit

WEB = Member(kind="haproxy", name="web", member="b1")
OUT = BoxState(rollout="r1", token="e.1", out={"web": WEB})
SWAPPING = BoxState(rollout="r1", token="e.1", intents={"web": {"new_hash": "h"}})
DRAINED = BoxState(rollout="r1", token="e.1", out={"web": WEB}, draining=True)


def owner(token: str = "e.1", rollout: str = "r1", live: bool = True) -> Owner:
    return Owner(token=token, rollout=rollout, live=live)


@pytest.mark.parametrize(
    ("state", "who", "restarted", "action", "why"),
    [
        (BoxState(), owner(), False, "nothing", "at rest"),
        (BoxState(), None, True, "nothing", "at rest"),
        (OUT, owner(), False, "wait", "goes on"),
        (SWAPPING, owner(), False, "wait", "goes on"),
        (OUT, owner(), True, "finish", "restarted"),
        (OUT, owner("e.2", "r2"), False, "wait", "r2 owns the box"),
        (OUT, owner("e.2", "r2"), True, "wait", "r2 owns the box"),
        (OUT, None, False, "finish", "revoked, or lost"),
        (SWAPPING, None, False, "finish", "revoked, or lost"),
        (OUT, owner(live=False), False, "finish", "gone or has ended"),
        (OUT, owner("e.2", "r2", live=False), False, "finish", "newer owner r2"),
        (OUT, owner("f.1", "r1"), False, "wait", "owns the box"),  # a new epoch: another token
        (DRAINED, None, False, "wait", "for a stop"),
        (DRAINED, None, True, "finish", "revoked"),
    ],
)
def test_decide_recovery(
    state: BoxState, who: Owner | None, restarted: bool, action: str, why: str
) -> None:
    got, reason = decide_recovery(state, who, restarted=restarted)
    assert (got, why in reason) == (action, True), reason


def test_the_record_is_written_before_it_is_needed(tmp_path: Path) -> None:
    record = BoxRecord(tmp_path / "state", "b1")
    assert record.read().idle
    record.left("r1", "e.1", "web", WEB)
    record.intend("r1", "e.1", "web", {"new_hash": "h"})
    again = BoxRecord(tmp_path / "state", "b1").read()  # another process reads the file
    assert again.out == {"web": WEB} and again.intents == {"web": {"new_hash": "h"}}
    assert (again.rollout, again.token) == ("r1", "e.1")
    assert stat.S_IMODE(os.stat(record.path).st_mode) == 0o600
    record.settle()
    assert record.read().intents == {} and record.read().out == {"web": WEB}
    record.left("r2", "e.2", "api", WEB)  # a newer chain takes over what is out
    assert (record.read().rollout, set(record.read().out)) == ("r2", {"web", "api"})
    record.joined("web")
    record.joined("api")
    assert record.read().idle
    assert not list((tmp_path / "state").glob("*.tmp"))
