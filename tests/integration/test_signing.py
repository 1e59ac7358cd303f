"""Only the key holder can make a box act: real Docker, Redis, HAProxy and box workers.

The attacker here can write Redis and the broker and holds no key. Each attack stores what it
wants, makes the fencing pass (it owns `boxowner:<box>` too) and sends a step straight to the
box's queue. The box refuses it: a `refused` result naming the reason, in the journal and the
event stream, and nothing happens on Docker or HAProxy. The same attacks succeed with
verification switched off (ORCHESTRATOR_INSECURE_UNSIGNED on the box):
`SIGNING_TESTS_UNVERIFIED=1 pytest tests/integration/test_signing.py` must fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import docker
import pytest

from devstack.workers import BoxWorker, dev_signer, python_env
from orchestrator.engine.celery_app import make_celery
from orchestrator.engine.chains import step
from orchestrator.engine.lease import Lease
from orchestrator.engine.redisconn import RedisClient, connect
from orchestrator.engine.state import RolloutStates
from orchestrator.engine.trust import Signer
from schemas.contract import Keys, Label, Outcome, StepRequest, TaskName
from schemas.release import Release
from schemas.rollout import Policy, RolloutState
from schemas.trust import Warrant
from tests.harness.common import started, wait_for
from tests.harness.docker_fx import container_events
from tests.harness.redis_fx import ProductRedis
from tests.harness.rollout_fx import Fleet
from worker.record import BoxState

UNVERIFIED = os.environ.get("SIGNING_TESTS_UNVERIFIED") == "1"
BOX_ENV = {"ORCHESTRATOR_INSECURE_UNSIGNED": "true"} if UNVERIFIED else {}


class Attacker:
    """Write access to Redis and the broker, and no key."""

    def __init__(self, fleet: Fleet, product: ProductRedis, broker_url: str) -> None:
        self.fleet = fleet
        self.client: RedisClient = connect(product.url)
        self.keys = Keys(product.prefix)
        self.app = make_celery(broker_url)
        self.states = RolloutStates(self.client, self.keys)

    def close(self) -> None:
        self.app.close()
        self.client.close()

    def current(self) -> Release:
        rid = self.states.current(self.fleet.box_type)
        assert rid, "no current release"
        return Release.model_validate_json(self.client.get(self.keys.release(rid)) or b"")

    def store(self, release: Release) -> None:
        self.client.set(self.keys.release(release.id), release.model_dump_json())

    def own_box(self, box_id: str, rollout_id: str) -> str:
        """What a claim does, done by hand: the fencing then passes for this chain."""
        if not self.states.state(rollout_id):
            self.states.move(rollout_id, RolloutState.RUNNING,
                             fields={"box_type": self.fleet.box_type})
        return Lease(self.client, self.keys).fresh_token(
            self.fleet.box_type, box_id, rollout_id, kind="rollout")

    def send(self, release: Release, box_id: str, rollout_id: str, name: TaskName,
             *, box_type: str | None = None) -> StepRequest:
        req = StepRequest(
            rollout_id=rollout_id, box_id=box_id, box_type=box_type or self.fleet.box_type,
            release_id=release.id, release_hash=release.hash,
            token=self.own_box(box_id, rollout_id),
            changed_apps=["web"], lb_apps=["web"],
        )
        app = "web" if name == TaskName.SWAP else None
        step(self.app, name, req, app).apply_async()
        return req.model_copy(update={"app": app})


def forged(release: Release, **changes: object) -> Release:
    """The release with a host mount of /etc, a new plain hash and a new id."""
    data = release.model_dump(mode="json")
    data["spec"]["apps"]["web"]["containers"]["web"].setdefault("volumes", []).append(
        "/etc:/host-etc:ro")
    data.update(changes)
    new = Release.model_validate(data)
    digest = Release.content_hash(new.box_type, new.spec, new.images, new.services,
                                  new.lb_default, new.registries)
    return new.model_copy(update={"hash": digest, "id": f"r{time.time_ns()}-{digest[:8]}"})


def facts(client: docker.DockerClient, box: str) -> dict[str, tuple[str, list[str]]]:
    """The box's containers: id -> (image, host paths mounted)."""
    out = {}
    for c in client.containers.list(all=True, filters={"label": f"{Label.BOX}={box}"}):
        mounts = [m.get("Source", "") for m in c.attrs.get("Mounts", [])]
        out[c.id] = (c.attrs["Config"]["Image"], mounts)
    return out


def docker_actions(client: docker.DockerClient, box: str, since: datetime) -> list[str]:
    return [str(e.get("Action")) for e in container_events(client, box, since)]


@pytest.fixture
def signed_fleet(fleet_factory: Callable[..., Fleet]) -> Fleet:
    """One box on v1, deployed by a signed rollout through the CLI."""
    fleet = fleet_factory(1, extra_env=BOX_ENV)
    fleet.write(f"{fleet.images.repo}:v1")
    first = fleet.cli("rollout", fleet.box_type, "--reason", "first deploy")
    assert first.returncode == 0, first.stderr
    fleet.wait_all_in_service()
    return fleet


@pytest.fixture
def attacker(signed_fleet: Fleet, product_redis: ProductRedis,
             broker_url: str) -> Iterator[Attacker]:
    a = Attacker(signed_fleet, product_redis, broker_url)
    yield a
    a.close()


def refused_and_untouched(attacker: Attacker, docker_client: docker.DockerClient,
                          attack: Callable[[str], StepRequest], reason: str) -> None:
    """Run `attack` on the box; its step is refused for `reason`; nothing changed anywhere."""
    fleet = attacker.fleet
    box = fleet.workers[0].box_id
    before, since = facts(docker_client, box), datetime.now(UTC)
    lb_before = len(fleet.proxy.state_changes())
    req = attack(box)
    got = wait_for(lambda: _journal(attacker, req), f"the box's answer to {req.rollout_id}")
    assert got["outcome"] == Outcome.REFUSED, got
    assert reason in got["reason"], got
    # The event follows the journal entry (written first): wait for it, too.
    wait_for(lambda: [e for e in _events(attacker) if e.get("rollout") == req.rollout_id
                      and e.get("outcome") == "refused" and reason in e.get("reason", "")],
             "the refusal in the event stream")
    assert facts(docker_client, box) == before
    assert docker_actions(docker_client, box, since) == []
    assert len(fleet.proxy.state_changes()) == lb_before
    assert fleet.in_service() == {box: True}
    logged = fleet.workers[0].output().decode(errors="replace").splitlines()
    assert any(" refused: " in line and reason in line for line in logged)  # the worker says so


def _journal(attacker: Attacker, req: StepRequest) -> dict[str, str] | None:
    """The journal entry of the one step the attacker sent."""
    name = req.app and TaskName.SWAP.value
    fields = [f"{name}:{req.app}"] if name else [f"{t.value}:-" for t in TaskName]
    raw = attacker.client.hmget(attacker.keys.journal(req.rollout_id, req.box_id), fields)
    found = [v for v in raw if v]
    return dict(json.loads(found[0])) if found else None


def _events(attacker: Attacker) -> list[dict[str, str]]:
    raw = attacker.client.xrange(attacker.keys.events(attacker.fleet.box_type))
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in raw]


def test_a_signed_rollout_records_its_order_and_current(attacker: Attacker) -> None:
    fleet = attacker.fleet
    history = attacker.client.zrange(attacker.keys.rollouts(fleet.box_type), 0, -1)
    assert len(history) == 1
    warrant = attacker.states.warrant(history[0].decode())
    assert warrant is not None and warrant.current is not None
    assert warrant.order.order.release_id == attacker.current().id
    assert attacker.states.signed_current(fleet.box_type) == warrant.current
    assert attacker.current().signature is not None


def test_a_forged_release_is_refused(attacker: Attacker,
                                     docker_client: docker.DockerClient) -> None:
    """The issue's attack: current + a host mount, a recomputed hash, a new id, one swap."""
    def attack(box: str) -> StepRequest:
        fake = forged(attacker.current())
        attacker.store(fake)
        return attacker.send(fake, box, f"x{uuid.uuid4().hex[:8]}", TaskName.SWAP)

    refused_and_untouched(attacker, docker_client, attack, "has no signed order")


def test_a_forged_release_under_a_real_order_is_refused(
        attacker: Attacker, docker_client: docker.DockerClient) -> None:
    """The same forgery sent under the signed order of the rollout that deployed v1."""
    rollout_id = attacker.client.zrange(attacker.keys.rollouts(attacker.fleet.box_type),
                                        0, 0)[0].decode()

    def attack(box: str) -> StepRequest:
        fake = forged(attacker.current())
        attacker.store(fake)
        # The rollout's journal would answer a redelivered swap: the attacker wipes it.
        attacker.client.delete(attacker.keys.journal(rollout_id, box))
        return attacker.send(fake, box, rollout_id, TaskName.SWAP)

    refused_and_untouched(attacker, docker_client, attack, "is not the order's")


def _signed_order(attacker: Attacker, release: Release, signer: Signer | None = None,
                  **kw: object) -> str:
    """An order the key holder signed (for a rollout of its own), as stored by it."""
    rollout_id = f"o{uuid.uuid4().hex[:8]}"
    now = kw.pop("now", None)
    order = (signer or dev_signer()).order("rollout", rollout_id, release, Policy(),
                                           now=now)  # type: ignore[arg-type]
    attacker.states.set_warrant(rollout_id, Warrant(order=order))
    return rollout_id


def test_a_tampered_signed_release_is_refused(attacker: Attacker,
                                              docker_client: docker.DockerClient) -> None:
    """Signed and ordered, then changed in Redis (who made it: a field outside the hash)."""
    def attack(box: str) -> StepRequest:
        good = dev_signer().release(forged(attacker.current(), reason="ok"))
        attacker.store(good)
        rollout_id = _signed_order(attacker, good)
        attacker.store(good.model_copy(update={"reason": "changed", "created_by": "mallory"}))
        return attacker.send(good, box, rollout_id, TaskName.SWAP)

    refused_and_untouched(attacker, docker_client, attack, "bad signature")


def test_an_unsigned_release_is_refused(attacker: Attacker,
                                        docker_client: docker.DockerClient) -> None:
    def attack(box: str) -> StepRequest:
        bare = forged(attacker.current(), signature=None)
        attacker.store(bare)
        return attacker.send(bare, box, _signed_order(attacker, bare), TaskName.SWAP)

    refused_and_untouched(attacker, docker_client, attack, "unsigned")


def test_an_order_for_another_box_type_is_refused(attacker: Attacker,
                                                  docker_client: docker.DockerClient) -> None:
    """A real order and release of box type `api`, replayed at this `web` box."""
    def attack(box: str) -> StepRequest:
        api = dev_signer().release(forged(attacker.current(), box_type="api"))
        attacker.store(api)
        return attacker.send(api, box, _signed_order(attacker, api), TaskName.SWAP)

    refused_and_untouched(attacker, docker_client, attack, "order for box type 'api'")


def test_an_expired_order_is_refused(attacker: Attacker,
                                     docker_client: docker.DockerClient) -> None:
    """A real order of a real release, signed seven hours ago: it may claim no box now."""
    def attack(box: str) -> StepRequest:
        old = dev_signer().release(forged(attacker.current()))
        attacker.store(old)
        rollout_id = _signed_order(attacker, old, now=time.time() - 7 * 3600)
        return attacker.send(old, box, rollout_id, TaskName.SWAP)

    refused_and_untouched(attacker, docker_client, attack, "order expired")


def test_an_older_current_is_refused_on_boot(
        attacker: Attacker, docker_client: docker.DockerClient, tmp_path: Path) -> None:
    """A fresh box that has seen a newer current (its own disk says so) refuses an older one
    the attacker puts back as current: nothing runs on it."""
    fleet = attacker.fleet
    signed = attacker.states.signed_current(fleet.box_type)
    assert signed is not None
    box = fleet.workers[0]
    env = {**box.env, "ORCHESTRATOR_BOX_ID": f"new-{uuid.uuid4().hex[:6]}"}
    env["ORCHESTRATOR_HAPROXY_SERVER"] = env["ORCHESTRATOR_BOX_ID"]
    state_dir = Path(env["ORCHESTRATOR_STATE_DIR"]).with_name(f"state-{env['ORCHESTRATOR_BOX_ID']}")
    env["ORCHESTRATOR_STATE_DIR"] = str(state_dir)
    state_dir.mkdir(parents=True)
    seen = BoxState(current_seq=signed.current.seq + 1)
    (state_dir / f"{env['ORCHESTRATOR_BOX_ID']}.json").write_text(seen.model_dump_json())
    newcomer = BoxWorker(tmp_path, env)
    try:
        started(newcomer)
        wait_for(lambda: any(e.get("step") == "catch-up" and e.get("box") == newcomer.box_id
                             for e in _events(attacker)), "the newcomer's boot verdict")
        (verdict,) = [e for e in _events(attacker)
                      if e.get("step") == "catch-up" and e.get("box") == newcomer.box_id]
        assert verdict["outcome"] == "refused" and "older current" in verdict["reason"]
        assert facts(docker_client, newcomer.box_id) == {}
    finally:
        newcomer.stop()


def test_remote_control_shutdown_leaves_box_workers_running(
        attacker: Attacker, broker_url: str) -> None:
    """`celery control shutdown` is broadcast to every worker with remote control: none here."""
    fleet = attacker.fleet
    out = subprocess.run([sys.executable, "-m", "celery", "-b", broker_url, "control",
                          "shutdown"], env=python_env(), capture_output=True, text=True,
                         timeout=60)
    # Nobody listens to broadcasts: Celery says no node replied.
    assert out.returncode == 0 or "No nodes replied" in out.stderr, out.stderr
    # A step sent after the broadcast is answered: the worker read its queue after it.
    v1 = attacker.current()
    rollout_id = _signed_order(attacker, v1)
    box = fleet.workers[0].box_id
    req = attacker.send(v1, box, rollout_id, TaskName.PULL)
    got = wait_for(lambda: _journal(attacker, req), "the pull after the broadcast")
    assert got["outcome"] in (Outcome.OK, Outcome.NOOP), got
    assert all(w.running for w in fleet.workers)
    assert "shutdown" not in fleet.workers[0].output().decode(errors="replace").lower()


def test_preflight_refuses_an_untrusted_key_and_nothing_changes(
        fleet_factory: Callable[..., Fleet]) -> None:
    """Boxes that trust another key: the rollout stops at preflight, naming the reason."""
    from orchestrator.engine.trust import generate

    fleet = fleet_factory(1, extra_env={"ORCHESTRATOR_TRUSTED_KEYS": generate()[1],
                                        **BOX_ENV})
    fleet.write(f"{fleet.images.repo}:v1")
    run = fleet.cli("rollout", fleet.box_type)
    assert run.returncode == 1, run.stderr
    assert "PreflightFailed" in run.stderr and "refused" in run.stderr, run.stderr
    assert "unknown key" in run.stderr, run.stderr
    status = fleet.cli("status", fleet.box_type)
    assert "current release none" in status.stdout and "nothing runs" in status.stdout
