"""The heartbeat thread: what this box runs, with a TTL; renews the running step's slot."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable

import redis

from orchestrator.engine.redisconn import RedisClient
from orchestrator.engine.rollouts import Rollouts
from orchestrator.engine.version import version
from orchestrator.errors import ServiceUnavailable
from schemas.contract import AppRunning, Heartbeat, Keys, Label, Member
from worker.decide import is_aside
from worker.facts import ContainerFact, ContainerRuntime
from worker.secrethash import last_seen
from worker.steps.protocol import Busy

log = logging.getLogger("orchestrator.worker.heartbeat")

WORKER_VERSION = version()


def what_runs(runtime: ContainerRuntime, box_id: str) -> dict[str, AppRunning]:
    out: dict[str, AppRunning] = {}
    for f in runtime.list(labels={Label.BOX: box_id, Label.ROLE: "app"}):
        if f.state == "running" and not is_aside(f) and f.labels.get(Label.APP):
            out[f.labels[Label.APP]] = AppRunning(
                image=f.image,
                spec_hash=f.labels.get(Label.SPEC_HASH, ""),
                release=f.labels.get(Label.RELEASE, ""),
            )
    return out


def unmanaged(facts: list[ContainerFact]) -> list[ContainerFact]:
    """The running containers nobody deployed through us: all `hand_made` looks at (a worker
    serving many simulated boxes filters the engine's list once a beat, not once a box)."""
    return [f for f in facts if f.state == "running" and f.labels.get(Label.MANAGED) != "1"]


def hand_made(
    runtime: ContainerRuntime, box_id: str, bind_ip: str | None,
    listed: list[ContainerFact] | None = None,
) -> list[str]:
    """Running containers nobody deployed through us, on this box.

    A real box owns its engine, so that is every unlabelled container; simulated boxes share
    one engine and own what carries their name or publishes on their address. `listed`: the
    engine's containers, listed once for every box a worker serves (else listed here).
    """
    out = []
    for f in unmanaged(runtime.list(brief=True) if listed is None else listed):
        if (
            bind_ip is None
            or f.name.lstrip("/").startswith(f"{box_id}.")
            or any(p.host_ip == bind_ip for p in f.ports)
        ):
            out.append(f"hand-made container {f.name.lstrip('/')}")
    return out


class HeartbeatThread(threading.Thread):
    """Not a task: it must beat while the one pool slot runs a long step."""

    def __init__(
        self,
        client: RedisClient,
        keys: Keys,
        box_id: str,
        box_type: str,
        runtime: ContainerRuntime,
        busy: Busy,
        interval: float,
        ttl: float,
        docker_version: Callable[[], str],
        rollouts: Rollouts | None = None,
        slot_ttl: float = 30.0,
        bind_ip: str | None = None,
        extra_box_ids: list[str] | None = None,
        on_beat: Callable[[], None] | None = None,
        inspect: Callable[[str, str], tuple[dict[str, str], dict[str, Member]]] | None = None,
        leaving: Callable[[str], bool] | None = None,
        catch_up: Callable[[str], str] | None = None,
    ) -> None:
        extra_box_ids = extra_box_ids or []
        super().__init__(name=f"heartbeat-{box_id}", daemon=True)
        self.client, self.keys = client, keys
        self.box_id, self.box_type = box_id, box_type
        self.box_ids = [box_id, *extra_box_ids]
        self.runtime, self.busy = runtime, busy
        self.interval, self.ttl = interval, ttl
        self.docker_version = docker_version
        self.rollouts = rollouts
        self.slot_ttl = slot_ttl
        self.bind_ip = bind_ip
        self.on_beat = on_beat  # after each beat: the box's own record, the broker's routes
        self.inspect = inspect  # each app's problem and membership, as the box sees them
        self.leaving = leaving  # a box that left for a stop (scale-in) is a member no more
        self.catch_up = catch_up  # why the box does not catch up now, as its last tick found
        # Each box's memberships as its last look at rest found them: a busy box is not
        # looked at (a probe must not race the step), and `status` still reads its load
        # balancer's word for them (it showed `lb -` for the one box that was moving).
        self.members: dict[str, dict[str, Member]] = {}
        self.stopped = threading.Event()

    def renew(self) -> None:
        """The running steps' slots and their rollouts' leases: the proof this worker lives.
        A step past its deadline stops renewing: the rollout then sees this box as dead."""
        now = time.monotonic()
        pipe = self.client.pipeline(transaction=False)
        leases: set[str] = set()
        for box_id, (rollout_id, step, deadline) in self.busy.snapshot().items():
            if step and now < deadline:
                pipe.set(self.keys.slot(rollout_id, box_id), f"{rollout_id}/{step}",
                         px=int(self.slot_ttl * 1000))
                leases.add(rollout_id)
        if not leases:
            return
        pipe.execute()
        if self.rollouts is not None:
            for rollout_id in leases:
                self.rollouts.lease.renew(self.box_type, rollout_id, self.rollouts.lease_ttl)

    def keep_slots(self) -> None:
        """Its own thread: a beat asks Docker (and the load balancer) what runs, which a busy
        engine can take seconds to answer; a slot must not expire meanwhile."""
        while not self.stopped.is_set():
            try:
                self.renew()
            except redis.RedisError as exc:
                log.warning("slot not renewed: %s", exc)
            self.stopped.wait(self.interval)

    def beat(self, only: set[str] | None = None) -> None:
        """Every served box's heartbeat, or only those of `only` (their chain just ended)."""
        running = self.busy.snapshot()
        try:
            version = self.docker_version()
            docker_ok = True
        except Exception as exc:  # Docker down: still beat, and say so
            version, docker_ok = f"unavailable: {exc}", False
        pipe = self.client.pipeline()
        listed: list[ContainerFact] | None = None
        for box_id in self.box_ids if only is None else [b for b in self.box_ids if b in only]:
            apps, flags, state = {}, [], "error"
            problems: dict[str, str] = {}
            members: dict[str, Member] = {}
            rollout_id, step, _ = running.get(box_id, ("", "", 0.0))
            busy = f"{rollout_id}/{step}" if step else None
            if docker_ok:
                apps = what_runs(self.runtime, box_id)
                if listed is None:  # once a beat, not once a box: one engine serves them all
                    listed = unmanaged(self.runtime.list(brief=True))
                flags = hand_made(self.runtime, box_id, self.bind_ip, listed)
                state = "ready"
                if self.inspect is not None and not busy:
                    problems, members = self.inspect(box_id, self.box_type)
                    self.members[box_id] = members
                elif busy:
                    members = self.members.get(box_id, {})
            hb = Heartbeat(
                box_id=box_id,
                box_type=self.box_type,
                hostname=socket.gethostname(),
                worker_version=WORKER_VERSION,
                docker_version=version,
                apps=apps,
                busy=busy,
                state=state,
                flags=flags,
                problems=problems,
                members=members,
                secret_changed=last_seen(box_id) if docker_ok else [],
                catch_up=self.catch_up(box_id) if self.catch_up is not None else "",
                at=time.time(),
            )
            pipe.set(self.keys.heartbeat(box_id), hb.model_dump_json(), px=int(self.ttl * 1000))
            if self.leaving is None or not self.leaving(box_id):
                pipe.hset(self.keys.members(self.box_type), box_id, repr(hb.at))
        pipe.execute()
        if only is not None:
            return  # the reaper's turn comes with the regular beat
        # Every worker of the type watches its rollout's boxes in flight, in turns: one a beat.
        if self.rollouts is not None and self.rollouts.reap_turn(self.box_type, self.interval):
            self.rollouts.keep_waiting(self.box_type)
            for dead in self.rollouts.reap_dead(self.box_type):
                log.warning("box %s stopped answering: its rollout halts", dead)

    def run(self) -> None:
        threading.Thread(target=self.keep_slots, name=f"slots-{self.box_id}", daemon=True).start()
        due = time.monotonic()
        while not self.stopped.is_set():
            settled = self.busy.take_settled()
            if time.monotonic() >= due:
                self.tick()
                due = time.monotonic() + self.interval
            elif settled:
                self.write_beat(settled)  # between ticks: only the boxes that just settled
            self.busy.woken.wait(max(due - time.monotonic(), 0.0))

    def tick(self) -> None:
        """Every box's beat, then the tick's own work (the box's record, the broker's routes)."""
        self.write_beat(None)
        if self.on_beat is not None:
            try:
                self.on_beat()
            except Exception:  # the heartbeat must go on, whatever the tick met
                log.exception("heartbeat tick failed")

    def write_beat(self, only: set[str] | None) -> None:
        try:
            self.beat(only)
        except (redis.RedisError, ServiceUnavailable) as exc:
            # ServiceUnavailable: a revocation no replica acknowledged; tried next tick.
            log.warning("heartbeat not written: %s", exc)

    def stop(self) -> None:
        self.stopped.set()
        self.busy.woken.set()
