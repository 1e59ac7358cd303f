"""The app steps: pull the images, swap one app, restore every app after a failure."""

from __future__ import annotations

from orchestrator.errors import RegistryAuthFailed, RuntimeFailure, SecretUnavailable
from schemas.contract import Label, Outcome, StepRequest, StepResult
from schemas.refs import parse_image
from schemas.release import Release
from schemas.strategy import is_start_first
from worker.decide import SwapIntent, decide_restore, is_aside
from worker.facts import BoxEnv, ContainerFact
from worker.pullauth import pull_credentials
from worker.secrethash import secrets_changed
from worker.startfirst import align, move_back, swap_start_first
from worker.steps.protocol import StepContext, StepOutcome
from worker.swap import app_containers, reinstate, swap_app


def pull_image(env: BoxEnv, release: Release, ref: str) -> None:
    """Pull `ref` with the credentials the release names for its registry, resolved here.

    The runtime says when the registry refused: the error then names the image, the registry
    and the user; the password is resolved only for the engine and never appears in a message.
    """
    host = parse_image(ref).registry or "docker.io"
    try:
        auth = pull_credentials(env, release, ref)
    except SecretUnavailable as exc:
        raise SecretUnavailable(f"pull {ref}: credentials for registry {host}: {exc}") from None
    try:
        env.runtime.pull(ref, auth)
    except RegistryAuthFailed as exc:
        who = (
            f"as user {auth['username']!r}"
            if auth
            else "without credentials (the release lists none for this registry)"
        )
        detail = _detail(exc, ref, auth)
        raise RegistryAuthFailed(
            f"pull {ref}: authentication failed at registry {host} {who}: {detail}"
        ) from None
    except RuntimeFailure as exc:
        if auth:
            raise RuntimeFailure(f"pull {ref}: {_detail(exc, ref, auth)}") from None
        raise


def _detail(exc: RuntimeFailure, ref: str, auth: dict[str, str] | None) -> str:
    """The engine's words, without our prefix and without the password, should it echo it."""
    detail = str(exc).removeprefix(f"pull {ref}: ")
    if auth and auth["password"]:
        detail = detail.replace(auth["password"], "***")
    return detail


def pull(ctx: StepContext, req: StepRequest, release: Release, _: StepResult | None) -> StepOutcome:
    """Pull every image of the chain by digest, while the box still serves."""
    env = ctx.box_env(req.box_id, req.box_type)
    refs = [release.image_of(a) for a in (req.changed_apps or release.spec.apps)]
    refs += [s.image for s in release.services.values()]
    pulled = [ref for ref in refs if not env.runtime.has_image(ref)]
    for ref in pulled:
        pull_image(env, release, ref)
    reason = f"pulled {len(pulled)} image(s)" if pulled else "all images present"
    # Every secret resolves while the box still serves; a rotated one is named (not shown).
    rotated = secrets_changed(env, release, req.changed_apps or None)
    if rotated:
        reason += f"; secret changed: {', '.join(rotated)}"
    return StepOutcome(Outcome.OK if pulled else Outcome.NOOP, reason)


def live_hashes(
    env: BoxEnv, release: Release, facts: list[ContainerFact] | None = None
) -> dict[str, str]:
    """app -> the spec hash running now, for apps whose every container runs with one hash.
    `facts`: the box's app containers, when the caller has just listed them."""
    if facts is None:
        facts = env.runtime.list(labels={Label.BOX: env.box_id, Label.ROLE: "app"})
    running = [f for f in facts if f.state == "running" and not is_aside(f)]
    out = {}
    for app, spec in release.spec.apps.items():
        mine = [f for f in running if f.labels.get(Label.APP) == app]
        hashes = {f.labels.get(Label.SPEC_HASH, "") for f in mine}
        names = {f.labels.get(Label.CONTAINER) for f in mine}
        if len(hashes) == 1 and names == set(spec.containers):
            out[app] = hashes.pop()
    return out


def swap(ctx: StepContext, req: StepRequest, release: Release, _: StepResult | None) -> StepOutcome:
    app = req.app
    if app is None or app not in release.spec.apps:
        return StepOutcome(Outcome.FAILED, f"swap needs an app of release {release.id}: {app!r}")
    env = ctx.box_env(req.box_id, req.box_type)
    record = ctx.record(req.box_id)

    def note(intent: dict[str, str | None]) -> None:
        # The box's own disk first: a restore must not depend on Redis remembering.
        record.intend(req.rollout_id, req.token, app, intent)
        ctx.journal.note(req.rollout_id, req.box_id, f"intent:swap:{app}", intent)

    if is_start_first(release.spec.apps[app]):
        return swap_start_first(ctx, env, release, app, req.token, note)
    return swap_app(env, release, app, req.token, ctx.deadline(), note)


def restore(
    ctx: StepContext, req: StepRequest, release: Release, prior: StepResult | None
) -> StepOutcome:
    """After a failure: put back every app this box changed (or began to) in this rollout."""
    if prior is None:
        return StepOutcome(Outcome.NOOP, "nothing failed")
    state = ctx.record(req.box_id).read()
    kept = state.intents if state.rollout == req.rollout_id else {}
    intents = {}
    for app in reversed(req.changed_apps):
        note = ctx.journal.read_note(req.rollout_id, req.box_id, f"intent:swap:{app}")
        note = note or kept.get(app)
        if note is not None:  # else: never touched
            intents[app] = SwapIntent.from_note(note)
    return restore_apps(ctx, req.box_id, req.box_type, intents, req.token)


def restore_apps(
    ctx: StepContext, box_id: str, box_type: str, intents: dict[str, SwapIntent], token: str
) -> StepOutcome:
    """Put back each app of `intents` (in the order given), from what is on the box now."""
    env = ctx.box_env(box_id, box_type)
    done, problems = [], []
    for app, intent in intents.items():
        out = restore_app(ctx, env, app, intent, token)
        if out.outcome == Outcome.FAILED:
            problems.append(f"{app}: {out.reason}")
        elif out.outcome == Outcome.OK:
            done.append(app)
    if problems:
        return StepOutcome(Outcome.FAILED, "; ".join(problems))
    return StepOutcome(
        Outcome.OK if done else Outcome.NOOP,
        f"restored {', '.join(done)}" if done else "no app needed restoring",
        details={"restored": ",".join(done)},
    )


def restore_app(
    ctx: StepContext, env: BoxEnv, app: str, intent: SwapIntent, token: str
) -> StepOutcome:
    """Put one app back as `decide_restore` says, from what is on the box now."""
    new_release = ctx.releases.get(intent.new_release)
    decision = decide_restore(app_containers(env, new_release, app), intent)
    if intent.strategy == "start-first" and decision.action == "reinstate":
        # The old version may still serve: traffic goes back to it before the new one goes.
        move_back(ctx, env, new_release, app, decision.reinstate)
    for fact in decision.remove:
        env.runtime.remove(fact.id)
    if decision.action == "reinstate":
        problem = reinstate(env, decision.reinstate)
        if problem:
            return StepOutcome(Outcome.FAILED, problem)
        moved = align(ctx, env, new_release, app) if intent.strategy == "start-first" else ""
        said = "previous containers restarted" + (f"; {moved}" if moved else "")
        return StepOutcome(Outcome.OK, said)
    if decision.action == "swap_back":
        old = ctx.releases.get(str(decision.swap_back_to))
        if app in old.spec.apps and is_start_first(old.spec.apps[app]):
            return swap_start_first(ctx, env, old, app, token, lambda _: None)
        return swap_app(env, old, app, token, ctx.deadline(), lambda _: None)
    if decision.action == "remove_new":
        return StepOutcome(Outcome.OK, "removed: nothing ran here before")
    return StepOutcome(Outcome.NOOP, "already on the previous version")
