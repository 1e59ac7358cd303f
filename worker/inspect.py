"""What a box says of itself beyond what runs: each app's problem, and its memberships."""

from __future__ import annotations

import logging
import threading
import time

from orchestrator.engine.state import RolloutStates
from orchestrator.errors import OrchestratorError
from schemas.contract import Label, Member
from schemas.release import Release
from schemas.strategy import is_start_first, port_now
from worker.decide import is_aside
from worker.facts import BoxEnv, ContainerFact
from worker.health import check_once
from worker.secrethash import secrets_changed
from worker.stage import running_ports
from worker.steps.lb import membership
from worker.steps.protocol import StepContext

log = logging.getLogger("orchestrator.worker.inspect")

PROBE_TIMEOUT = 1.0


class Inspector:
    """Answers, for a heartbeat, per app of the box type's current release (or of what runs):
    whether it runs and passes its HTTP/TCP check, and the membership it should have."""

    def __init__(self, ctx: StepContext, *, probe: bool = True) -> None:
        self.ctx, self.probe = ctx, probe
        self._releases: dict[str, Release] = {}  # releases never change: read each once
        self._secrets_checked: dict[str, float] = {}  # box -> monotonic time of its last check
        # The type's current release id, read at most once per half heartbeat interval (so a
        # one-box worker still reads it every beat): a worker serving many simulated boxes
        # asked Redis once a box, every beat, and starved its own heartbeats.
        self._current_for = ctx.settings.heartbeat_interval / 2
        self._current: dict[str, tuple[float, str | None]] = {}  # type -> (read at, release)

    def __call__(self, box_id: str, box_type: str) -> tuple[dict[str, str], dict[str, Member]]:
        env = self.ctx.make_env(box_id, box_type)
        facts = [
            f
            for f in env.runtime.list(labels={Label.BOX: box_id, Label.ROLE: "app"})
            if not is_aside(f)
        ]
        release = self._expected(box_type, facts)
        if release is None:
            return {}, {}
        problems: dict[str, str] = {}
        members: dict[str, Member] = {}
        for app, spec in release.spec.apps.items():
            mine = [f for f in facts if f.labels.get(Label.APP) == app]
            problem = self._problem(env.health_host, env.bind_ip, mine, release, app)
            if problem:
                problems[app] = problem
            if spec.elb and release.lb_kind(app) != "none":
                members[app] = membership(self.ctx, box_id, release, app)
                if is_start_first(spec) and (port := port_now(spec, running_ports(mine))):
                    # `status` flags a member on another port than what runs here.
                    members[app] = members[app].model_copy(update={"port": port})
        self._check_secrets(box_id, env, release)
        return problems, members

    def _check_secrets(self, box_id: str, env: BoxEnv, release: Release) -> None:
        """Now and then, compare the secret values: `status` shows the result. In a thread of
        its own: SSM reads may take long, and the heartbeat must not wait for them."""
        interval = self.ctx.settings.secret_check_interval
        if time.monotonic() - self._secrets_checked.get(box_id, -interval) < interval:
            return
        self._secrets_checked[box_id] = time.monotonic()

        def check() -> None:
            try:
                secrets_changed(env, release)
            except OrchestratorError as exc:
                log.warning("secret check of %s: %s", box_id, exc)

        threading.Thread(target=check, name=f"secrets-{box_id}", daemon=True).start()

    def _current_of(self, box_type: str) -> str | None:
        read_at, rid = self._current.get(box_type, (-self._current_for, None))
        if time.monotonic() - read_at < self._current_for:
            return rid
        try:
            rid = RolloutStates(self.ctx.redis, self.ctx.keys).current(box_type)
        except Exception:  # Redis is away: what runs says enough
            rid = None
        self._current[box_type] = (time.monotonic(), rid)
        return rid

    def _expected(self, box_type: str, facts: list[ContainerFact]) -> Release | None:
        """The release the box should run: its type's current one, else what runs."""
        rid = self._current_of(box_type)
        rid = rid or next(
            (f.labels[Label.RELEASE] for f in facts if f.labels.get(Label.RELEASE)), None
        )
        if rid is None:
            return None
        if rid not in self._releases:
            try:
                self._releases[rid] = self.ctx.releases.get(rid)
            except OrchestratorError as exc:
                log.debug("release %s not readable: %s", rid, exc)
                return None
        return self._releases[rid]

    def _problem(
        self, host: str, bind_ip: str | None, mine: list[ContainerFact], release: Release, app: str
    ) -> str:
        wanted = release.spec.apps[app].containers
        if not mine:
            return "nothing runs"
        for fact in mine:
            name = fact.labels.get(Label.CONTAINER, "")
            if fact.state != "running":
                code = f" (exit code {fact.exit_code})" if fact.exit_code is not None else ""
                return f"{fact.name.lstrip('/')} is {fact.state}{code}"
            spec = wanted.get(name)
            if spec is None or not self.probe:
                continue
            rel = self._releases.get(fact.labels.get(Label.RELEASE, ""), release)
            spec = rel.spec.apps[app].containers.get(name, spec) if app in rel.spec.apps else spec
            ports: list[tuple[str, int, int, str]] = list(fact.ports) or [
                (p.host_ip or bind_ip or "", p.host_port, p.container_port, p.protocol)
                for p in spec.ports
            ]
            failed = check_once(fact, spec, host=host, ports=ports, timeout=PROBE_TIMEOUT)
            if failed:
                return f"unhealthy: {failed}"
        return ""
