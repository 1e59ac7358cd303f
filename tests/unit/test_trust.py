"""Signing and the box's pure refusals: canonical JSON, sign/verify, each reason to refuse."""

from __future__ import annotations

import json
import os
import re
import stat
import time
from pathlib import Path

import pytest

from orchestrator.engine.trust import (
    Signer,
    canonical,
    check,
    check_current,
    check_order,
    check_release,
    generate,
    load_signer,
    write_private,
)
from orchestrator.errors import ConfigError
from schemas.contract import StepRequest, TaskName
from schemas.release import Release
from schemas.rollout import Policy
from schemas.trust import Sig, Warrant
from tests.harness.releases_fx import plain_release as release
from worker.trust import (
    _release_verdict,
    _signed_order,
    current_check,
    order_refusal,
    release_check,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    pem, _ = generate()
    path = tmp_path_factory.mktemp("k") / "signing.key"
    write_private(path, pem)
    return load_signer(str(path))


def request(rel: Release, rollout_id: str = "ro-1", **changes: object) -> StepRequest:
    return StepRequest.model_validate({
        "rollout_id": rollout_id, "box_id": "b1", "box_type": rel.box_type,
        "release_id": rel.id, "release_hash": rel.hash, **changes})


def warrant(signer: Signer, rel: Release, rollout_id: str = "ro-1", **kw: object) -> Warrant:
    order = signer.order("rollout", rollout_id, rel, Policy(), **kw)  # type: ignore[arg-type]
    return Warrant(order=order, current=signer.current(rollout_id, rel))


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert canonical({"b": 1, "a": [1, {"d": "é", "c": None}]}) == (
        '{"a":[1,{"c":null,"d":"é"}],"b":1}'.encode())
    assert canonical({"x": 1.5}) == canonical(json.loads('{ "x" : 1.5 }'))


def test_generate_writes_a_private_key_only_its_owner_reads(tmp_path: Path) -> None:
    pem, public = generate()
    write_private(tmp_path / "k", pem)
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
    assert load_signer(f"file:{tmp_path / 'k'}").public == public
    with pytest.raises(FileExistsError):
        write_private(tmp_path / "k", pem)  # never overwritten


def test_a_bad_key_file_is_a_config_error_that_shows_no_content(tmp_path: Path) -> None:
    (tmp_path / "k").write_text("-----BEGIN PRIVATE KEY-----\nsecretstuff\n")
    with pytest.raises(ConfigError) as err:
        load_signer(str(tmp_path / "k"))
    assert "secretstuff" not in str(err.value) and "keys generate" in str(err.value)
    with pytest.raises(ConfigError, match="cannot read"):
        load_signer(str(tmp_path / "missing"))


def test_sign_and_verify_a_release(signer: Signer) -> None:
    signed = signer.release(release())
    keys = [signer.public]
    assert check_release(signed, keys) == ""
    # Stored and read back as JSON: the same bytes are verified.
    assert check_release(Release.model_validate_json(signed.model_dump_json()), keys) == ""
    assert "unsigned" in check_release(release(), keys)
    assert "bad signature" in check_release(signed.model_copy(update={"reason": "x"}), keys)
    other = load_signer_pair()
    assert "unknown key" in check_release(signed, [other])
    # Two trusted keys (a rotation): either one's signatures stand.
    assert check_release(signed, [other, signer.public]) == ""


def load_signer_pair() -> str:
    return generate()[1]


def test_a_signature_moved_to_another_key_or_garbled_is_refused(signer: Signer) -> None:
    data = b"payload"
    sig = signer.sign(data)
    assert check(sig, data, [signer.public]) == ""
    assert "bad signature" in check(sig, b"other", [signer.public])
    garbled = Sig(key=sig.key, sig="not base64!")
    assert "bad signature" in check(garbled, data, [signer.public])
    assert check(None, data, [signer.public]) == "unsigned"


def test_orders_and_current_records_verify(signer: Signer) -> None:
    w = warrant(signer, release())
    assert check_order(w.order, [signer.public]) == ""
    assert w.current is not None and check_current(w.current, [signer.public]) == ""
    moved = w.order.model_copy(update={"order": w.order.order.model_copy(
        update={"box_type": "api"})})
    assert "bad signature" in check_order(moved, [signer.public])


def refuse(signer: Signer, w: Warrant | None, req: StepRequest,
           step: TaskName = TaskName.SWAP, now: float | None = None, claimed: str = "") -> str:
    return order_refusal(w, req, step, [signer.public],
                         now=time.time() if now is None else now, claimed=claimed)


def test_each_reason_an_order_is_refused(signer: Signer) -> None:
    rel = release()
    w = warrant(signer, rel)
    assert refuse(signer, w, request(rel)) == ""
    assert "has no signed order" in refuse(signer, None, request(rel))
    assert "not ro-2's" in refuse(signer, w, request(rel, "ro-2"))
    assert "for box type 'web', not 'api'" in refuse(signer, w, request(rel, box_type="api"))
    forged = release(reason="x").model_copy(update={"id": "r2-x", "hash": "f" * 64})
    assert "is not the order's" in refuse(signer, w, request(forged))
    repair = Warrant(order=signer.order("repair", "ro-1", rel, Policy(), box_id="b9"))
    assert "for box b9 only" in refuse(signer, repair, request(rel))
    assert "unknown key" in order_refusal(w, request(rel), TaskName.SWAP, [generate()[1]],
                                          now=time.time())


def test_expiry_limits_claiming_not_a_claimed_box(signer: Signer) -> None:
    rel = release()
    old = warrant(signer, rel, now=time.time() - 7 * 3600)
    assert "order expired" in refuse(signer, old, request(rel), TaskName.CLAIM)
    assert "order expired" in refuse(signer, old, request(rel), TaskName.SWAP)
    # The box's own record says it claimed this rollout: it may take its time.
    assert refuse(signer, old, request(rel), TaskName.SWAP, claimed="ro-1") == ""
    # Finish only counts the box.
    assert refuse(signer, old, request(rel), TaskName.FINISH) == ""


def test_a_release_of_another_type_is_refused(signer: Signer) -> None:
    keys = [signer.public]
    assert release_check(signer.release(release(1, "api")), "web", keys).endswith("not 'web'")
    assert release_check(signer.release(release()), "web", keys) == ""


def test_an_older_current_is_refused(signer: Signer) -> None:
    keys = [signer.public]
    cur = signer.current("ro-1", release(), seq=100)
    assert current_check(cur, "web", 100, keys) == ""
    assert current_check(cur, "web", 99, keys) == ""
    assert "older current" in current_check(cur, "web", 101, keys)
    assert "box type 'web', not 'api'" in current_check(cur, "api", 0, keys)
    tampered = cur.model_copy(update={"current": cur.current.model_copy(update={"seq": 999})})
    assert "bad signature" in current_check(tampered, "web", 0, keys)


def test_a_refused_step_counts_the_box_failed() -> None:
    from schemas.contract import Outcome, StepResult
    from worker.steps.rollout import box_outcome

    def entry(step: str, outcome: Outcome) -> StepResult:
        return StepResult(step=step, rollout_id="ro-1", box_id="b1", outcome=outcome,
                          started=1.0, ended=2.0)

    entries = {"deploy.claim:-": entry("deploy.claim", Outcome.OK),
               "deploy.swap:web": entry("deploy.swap", Outcome.REFUSED)}
    assert entries["deploy.swap:web"].failed
    assert box_outcome(entries) == "failed"


SECRET = "MC4CAQAwBQYDK2VwBCIEIHunter2SuperSecretKeyMaterial0000000000"


@pytest.mark.parametrize(
    "ref",
    [f"-----BEGIN PRIVATE KEY-----\n{SECRET}\n-----END PRIVATE KEY-----\n", SECRET,
     f"file:-----BEGIN PRIVATE KEY----- {SECRET} -----END PRIVATE KEY-----"],
)
def test_key_text_in_the_variable_is_named_so_and_never_shown(ref: str) -> None:
    with pytest.raises(ConfigError, match="SIGNING_KEY holds what looks like the text") as err:
        load_signer(ref)
    assert "Hunter2" not in str(err.value) and "MC4C" not in str(err.value)


@pytest.mark.parametrize(
    ("ref", "said"),
    [("/dev/zero", "is not a regular file"), ("/", "cannot read / (Is a directory)"),
     ("ssm:", "after `ssm:` comes an SSM parameter's name"), ("ssm:a b", "after `ssm:`")],
)
def test_a_key_reference_that_is_no_key_file_is_refused_unread(ref: str, said: str) -> None:
    with pytest.raises(ConfigError, match=f"^ORCHESTRATOR_SIGNING_KEY: .*{re.escape(said)}"):
        load_signer(ref)


def test_a_fifo_or_a_huge_file_is_no_key(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")  # opening it blocking would wait for a writer for ever
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_signer(str(tmp_path / "fifo"))
    (tmp_path / "big").write_bytes(b"-----BEGIN PRIVATE KEY-----\n" + b"A" * 100_000)
    with pytest.raises(ConfigError, match="over 64 KiB"):
        load_signer(str(tmp_path / "big"))


def test_a_command_that_signs_reads_its_key_before_connecting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orchestrator.coordinator import Coordinator
    from orchestrator.settings import CoordinatorSettings

    monkeypatch.setattr("orchestrator.coordinator.connect",
                        lambda *a, **k: pytest.fail("connected before reading the key"))
    for env in ({"signing_key": "/nonexistent.key"}, {"signing_key": None}):
        settings = CoordinatorSettings(**env, insecure_unsigned=False)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="ORCHESTRATOR_SIGNING_KEY"):
            Coordinator.connect(settings, signs=True)


def test_verdicts_kept_per_exact_bytes_never_pass_a_changed_record(signer: Signer) -> None:
    """A chain's steps verify the order and release once (worker/trust.py keeps the verdict
    by the bytes read and the keys): a record changed by one byte, or the same one under
    other keys, is verified again, and refused."""
    rel = signer.release(release())
    raw = rel.model_dump_json().encode()
    keys = (signer.public,)
    assert _release_verdict(raw, rel.id, rel.hash, rel.box_type, keys) == ""
    assert _release_verdict(raw, rel.id, rel.hash, rel.box_type, keys) == ""  # kept
    changed = raw.replace(b'"reason":"', b'"reason":"x')
    assert changed != raw
    assert "bad signature" in _release_verdict(changed, rel.id, rel.hash, rel.box_type, keys)
    assert "unknown key" in _release_verdict(raw, rel.id, rel.hash, rel.box_type,
                                             (generate()[1],))
    assert "of box type 'web', not 'api'" in _release_verdict(raw, rel.id, rel.hash, "api", keys)

    order = warrant(signer, rel).model_dump_json().encode()
    assert _signed_order(order, keys)[1] == ""
    forged = order.replace(b'"box_type":"web"', b'"box_type":"api"', 1)
    assert forged != order and "bad signature" in _signed_order(forged, keys)[1]
    assert "unknown key" in _signed_order(order, (generate()[1],))[1]
