"""Start a rollout: load, override, validate, pin, lease, preflight, plan, first fill."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from celery import Celery

from orchestrator.audit import who
from orchestrator.config import fleet_for, release_spec
from orchestrator.engine.celery_app import NO_DECLARE, make_celery
from orchestrator.engine.fleet import GONE_AFTER, FleetView, last_seen
from orchestrator.engine.freeze import Freezes
from orchestrator.engine.journal import Journal
from orchestrator.engine.redisconn import RedisClient, connect, volatility
from orchestrator.engine.releases import make_release
from orchestrator.engine.rollouts import Rollouts
from orchestrator.engine.state import new_id
from orchestrator.engine.trust import Signer, load_signer
from orchestrator.errors import (
    ConfigError,
    DeployError,
    Frozen,
    LeaseHeld,
    MigrationFailed,
    PreflightFailed,
)
from orchestrator.planner import make_plan
from orchestrator.preflight import ask_preflight
from orchestrator.registry_auth import make_client
from orchestrator.settings import CoordinatorSettings
from schemas.contract import Keys, Member, Outcome, StepRequest, TaskName, queue_for
from schemas.fleet import FleetSettings
from schemas.release import Release
from schemas.rollout import Bake, Policy, Rollout, RolloutState
from schemas.trust import OrderKind, Warrant

if TYPE_CHECKING:
    from orchestrator.engine.lb import MemberState

log = logging.getLogger(__name__)


@dataclass
class Coordinator:
    settings: CoordinatorSettings
    client: RedisClient
    keys: Keys
    app: Celery
    rollouts: Rollouts
    _signer: list[Signer | None] = field(default_factory=list)

    @classmethod
    def connect(
        cls, settings: CoordinatorSettings, say: Callable[[str], None] | None = None,
        *, signs: bool = False,
    ) -> Coordinator:
        """`signs`: the command signs, so its key is read first: a missing or bad key is bad
        input, not hidden behind a Redis that does not answer."""
        signer = [signer_for(settings)] if signs else []
        client = connect(settings.redis_url, wait=settings.redis_wait, say=say, tls=settings.tls())
        if say is not None and (warning := volatility(client, settings.redis_url)):
            say(warning)
        keys = Keys(settings.key_prefix)
        app = make_celery(settings.broker_url, tls=settings.tls())
        engine = Rollouts(
            client,
            keys,
            app,
            lease_ttl=settings.lease_ttl,
            slot_ttl=settings.slot_ttl,
            aws=(settings.aws_region, settings.aws_endpoint_url),
        )
        return cls(settings, client, keys, app, engine, signer)

    def read_lb(self, member: Member) -> list[MemberState]:
        """Every member of the load balancer `member` belongs to, as it says now."""
        # Imported here: the AWS adapters load boto3, which only `status` and `repair` need.
        from orchestrator.engine.lb import make_load_balancer

        endpoint = self.settings.aws_endpoint_url
        lb = make_load_balancer(
            member.kind,
            member.name,
            member_port=member.port,
            haproxy_socket=self.settings.haproxy_socket,
            boto_session_kwargs={
                "region_name": self.settings.aws_region,
                **({"endpoint_url": endpoint} if endpoint else {}),
            },
        )
        return lb.members()

    def close(self) -> None:
        self.app.close()
        self.client.close()

    # --- signing ---------------------------------------------------------------------------
    def signer(self) -> Signer | None:
        """The signing key, read on first use unless `connect` read it (only commands that
        sign need it); None only with the loudly named insecure setting."""
        if not self._signer:
            self._signer.append(signer_for(self.settings))
        return self._signer[0]

    def sign_release(self, release: Release) -> Release:
        signer = self.signer()
        return signer.release(release) if signer is not None else release

    def sign_order(
        self,
        kind: OrderKind,
        rollout_id: str,
        release: Release,
        policy: Policy,
        *,
        box_id: str = "",
        with_current: bool = True,
    ) -> None:
        """Sign the order (and, for a new rollout, its current-on-success record) and store
        them as the rollout's warrant; a resume keeps the current record it was signed with."""
        signer = self.signer()
        if signer is None:
            return
        order = signer.order(
            kind, rollout_id, release, policy, box_id=box_id, ttl=self.settings.order_ttl
        )
        states = self.rollouts.states
        old = states.warrant(rollout_id)
        current = signer.current(rollout_id, release) if with_current else None
        if current is None and old is not None:
            current = old.current
        states.set_warrant(rollout_id, Warrant(order=order, current=current))

    # --- the release -------------------------------------------------------------------
    def fleet_settings(self) -> FleetSettings | None:
        return fleet_for(self.settings)

    def make_release(self, box_type: str, images: dict[str, str], reason: str) -> Release:
        """The release a rollout of BOX_TYPE deploys, stored (by content, once)."""
        release = self.build_release(box_type, images, reason)
        self.rollouts.releases.put(release)
        return release

    def build_release(self, box_type: str, images: dict[str, str], reason: str) -> Release:
        """boxes/<type>.yml with `images` applied, validated and pinned; stored nowhere."""
        spec, fleet = release_spec(self.settings, box_type, images)
        # fleet.yml's credentials, resolved here for pinning only: never in the release.
        client = make_client(
            fleet.registries if fleet else [],
            insecure=self.settings.insecure_registries,
            region=self.settings.aws_region,
            endpoint_url=self.settings.aws_endpoint_url,
        )
        pinned = {app: client.pin(a.image) for app, a in spec.apps.items()}
        return self.sign_release(make_release(box_type, spec, pinned, fleet, reason=reason))

    # --- start ---------------------------------------------------------------------------
    def start(
        self,
        box_type: str,
        release: Release,
        policy: Policy,
        *,
        reason: str = "",
        wait: bool = False,
        kind: Literal["rollout", "rollback", "repair"] = "rollout",
        parent: str | None = None,
        boxes: list[str] | None = None,
        skip_missing: bool = False,
        rollout_id: str | None = None,
        bake: Bake | None = None,
    ) -> Rollout:
        rollout_id = rollout_id or new_id(box_type)
        opened = time.time()  # its events (a migrate task's included) are followed from here
        by = who(self.settings.performer)
        fleet_yml = self.fleet_settings()  # bad input ends here: nothing changed yet
        self.refuse_if_frozen(box_type)
        self.signer()  # no key: say so before anything is taken
        self.take_lease(box_type, rollout_id, wait)
        try:
            self.rollouts.states.open(rollout_id, box_type, reason, str(by))
            # fleet.yml's load balancer budgets, for every box's leave (across box types).
            self.rollouts.budgets.publish(fleet_yml.budgets() if fleet_yml else {})
            self.refuse_if_frozen(box_type)  # frozen while the lease was taken
            # Signed before the first box is asked anything: preflight verifies it too.
            repaired = boxes[0] if kind == "repair" and boxes else ""
            self.sign_order(kind, rollout_id, release, policy, box_id=repaired)
            fleet = boxes if boxes is not None else self.fleet(box_type, rollout_id, skip_missing)
            if not fleet:
                raise DeployError(
                    f"no box of type {box_type!r} has a live heartbeat: start its workers "
                    f"(ORCHESTRATOR_BOX_TYPE={box_type}) and check `orchestrator status {box_type}`"
                )
            self.preflight(rollout_id, box_type, release, fleet)
            if release.spec.migrate is not None and kind == "rollout":
                self.migrate(rollout_id, box_type, release, make_plan(fleet, policy).boxes[0])
            self.keep_lease(box_type, rollout_id)  # held still, the boxes' claims will find it
            rollout = Rollout(
                id=rollout_id,
                box_type=box_type,
                release_id=release.id,
                release_hash=release.hash,
                previous_release=self.rollouts.states.current(box_type),
                plan=make_plan(fleet, policy),
                reason=reason,
                created_by=by.user,
                host=by.host,
                performer=by.performer,
                command=by.command,
                created_at=opened,
                parent=parent,
                kind=kind,
                bake=bake,
            )
            self.rollouts.create(rollout)
        except BaseException as exc:
            # Nothing started: the lease and the group's processes are given back, whatever
            # went wrong (a bug, a bad heartbeat, Ctrl-C included), and the record says why.
            self.give_back(box_type, rollout_id, f"{type(exc).__name__}: {exc}")
            raise
        self.rollouts.events.emit(
            box_type,
            rollout=rollout_id,
            step="rollout",
            phase="start",
            reason=f"release {release.id} on {len(fleet)} boxes",
        )
        self.rollouts.advance(rollout)
        return rollout

    def give_back(self, box_type: str, rollout_id: str, why: str) -> None:
        """Undo a start that did not start: each part tried even when another fails."""
        for undo in (
            lambda: self.rollouts.states.refuse(rollout_id, why),
            lambda: self.rollouts.resume_group(rollout_id),
            lambda: self.rollouts.lease.release(box_type, rollout_id),
        ):
            try:
                undo()
            except Exception as exc:  # noqa: BLE001 - the original error is the one raised
                log.warning("giving back %s after a failed start: %s", rollout_id, exc)

    def fleet(self, box_type: str, rollout_id: str, skip_missing: bool) -> list[str]:
        """The one fleet rule (engine/fleet.py); a group's replacing processes are suspended
        now, until the rollout ends. A missing box (a member, or an InService instance, with no
        live worker) fails the start at once, unless skipped: nobody waits for a dead worker."""
        view = self.read_fleet(box_type)
        if view.group is not None:
            self.rollouts.suspend_group(rollout_id, view.group)
        if view.strays:
            self.note(
                box_type, rollout_id, "not in the group, not deployed: " + ", ".join(view.strays)
            )
        if view.missing:
            named = ", ".join(f"{b} ({last_seen(view.since.get(b, 0.0))})" for b in view.missing)
            if not skip_missing:
                raise PreflightFailed(
                    f"{len(view.missing)} box(es) of {box_type} have no live worker: {named}; "
                    "start their workers, `orchestrator boxes forget <box>` a box that is gone "
                    "for good, or --skip-missing"
                )
            self.note(box_type, rollout_id, "missing, skipped (--skip-missing): " + named)
        return view.boxes

    def read_fleet(self, box_type: str) -> FleetView:
        """The fleet now; a box whose last beat is under GONE_AFTER old gets that long to beat
        again (a worker slow to beat is not a dead one). A box long gone: no wait at all."""
        view = self.rollouts.fleet_of(box_type, self.settings.fleet_source)
        until = time.monotonic() + GONE_AFTER  # bounded, whatever the boxes' clocks say
        while time.monotonic() < until and any(
            time.time() - view.since.get(b, 0.0) < GONE_AFTER for b in view.missing
        ):
            time.sleep(0.5)
            view = self.rollouts.fleet_of(box_type, self.settings.fleet_source)
        return view

    def note(self, box_type: str, rollout_id: str, reason: str) -> None:
        self.rollouts.events.emit(
            box_type, rollout=rollout_id, step="fleet", phase="end", outcome="noop", reason=reason
        )

    def take_lease(self, box_type: str, rollout_id: str, wait: bool) -> None:
        while True:
            self.rollouts.abandon_if_stale(box_type)
            holder = self.rollouts.lease.acquire(box_type, rollout_id, self.settings.lease_ttl)
            if holder is None:
                return
            if not wait:
                raise LeaseHeld(self.describe_holder(box_type, holder))
            time.sleep(1.0)

    def keep_lease(self, box_type: str, rollout_id: str) -> None:
        """Renew the lease while the start works (fleet read, preflight, migration). Expired
        with nobody else holding it (a start slower than its TTL between renewals): taken
        again. Taken by another rollout: this start ends here, before any box starts (a rollout
        without its lease would have every claim refused)."""
        lease, ttl = self.rollouts.lease, self.settings.lease_ttl
        if lease.renew(box_type, rollout_id, ttl):
            return
        holder = lease.acquire(box_type, rollout_id, ttl)
        if holder is None and self.rollouts.state(rollout_id) == RolloutState.PREFLIGHT:
            log.warning("rollout %s: its lease had expired, taken again", rollout_id)
            return
        raise LeaseHeld(
            f"rollout {rollout_id} lost the lease of {box_type} before any box started (held by "
            f"{holder or 'nobody'} now): nothing was changed; run it again"
        )

    def refuse_if_frozen(self, box_type: str) -> None:
        found = Freezes(self.client, self.keys).get(box_type)
        if found is not None:
            raise Frozen(f"{box_type} is {found}; `orchestrator lock release {box_type}` "
                         "lifts the freeze")

    def describe_holder(self, box_type: str, holder: str) -> str:
        st = self.rollouts.status(holder)
        age = time.time() - float(st.get("created", time.time()))
        why = st.get("reason") or "no reason given"
        by = f", by {st['who']}" if st.get("who") else ""
        return (
            f"box type {box_type!r} is being rolled out by {holder} ({st.get('state', '?')}, "
            f"{age:.0f}s old{by}, reason: {why}); wait with --wait, or see "
            f"`orchestrator lock status {box_type}`"
        )

    def migrate(self, rollout_id: str, box_type: str, release: Release, box: str) -> None:
        """box.yml's one-off task on the first box of the plan, before any box leaves its
        load balancer; it must exit 0, or nothing is swapped."""
        task = release.spec.migrate
        assert task is not None
        req = StepRequest(rollout_id=rollout_id, box_id=box, box_type=box_type,
                          release_id=release.id, release_hash=release.hash, token="")
        self.app.send_task(TaskName.MIGRATE.value, args=(req.model_dump(mode="json"),),
                           queue=queue_for(box), **NO_DECLARE)
        journal = Journal(self.client, self.keys)
        # Its own deadline, plus the time to start its container and report.
        deadline = time.monotonic() + task.deadline + 60
        while (got := journal.get(rollout_id, box, TaskName.MIGRATE.value, None)) is None:
            if time.monotonic() > deadline:
                raise MigrationFailed(f"migrate on {box}: no answer in {task.deadline + 60:.0f}s; "
                                      "nothing was swapped")
            # A migration (redelivered after its worker died, too) may outlast the lease's TTL:
            # the boxes' claims would then find no lease and never start.
            self.keep_lease(box_type, rollout_id)
            time.sleep(0.2)
        if got.outcome != Outcome.OK:
            raise MigrationFailed(f"migrate on {box} failed: {got.reason}; nothing was swapped")

    def preflight(self, rollout_id: str, box_type: str, release: Release, boxes: list[str]) -> None:
        """Every box, in parallel, before any leaves its load balancer."""
        ask_preflight(self.app, self.client, self.keys, self.settings.preflight_timeout,
                      rollout_id, box_type, release, boxes,
                      renew=lambda: self.keep_lease(box_type, rollout_id))


def signer_for(settings: CoordinatorSettings) -> Signer | None:
    """ORCHESTRATOR_SIGNING_KEY, read and parsed (ConfigError naming it, never its content);
    None only with ORCHESTRATOR_INSECURE_UNSIGNED."""
    if settings.signing_key:
        return load_signer(settings.signing_key, (settings.aws_region, settings.aws_endpoint_url))
    if settings.insecure_unsigned:
        return None
    raise ConfigError(
        "ORCHESTRATOR_SIGNING_KEY is not set: boxes act only on orders signed by "
        "a key they trust. Make one with `orchestrator keys generate --out PATH` "
        "and set ORCHESTRATOR_SIGNING_KEY=PATH (boxes: ORCHESTRATOR_TRUSTED_KEYS)"
    )
