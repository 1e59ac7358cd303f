"""Rotated secrets: a keyed hash of each container's resolved secret values, kept on the box.

The key is made on the box, in its state directory (mode 600), and never leaves it: the hash
(a container label) says whether a value changed, and nothing about the value. Only app
names ("web's secrets changed") ever leave the box.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from orchestrator.errors import SecretUnavailable
from schemas.base import SecretRef
from schemas.contract import Label
from schemas.release import Release
from worker.atomicfile import replace_file
from worker.decide import is_aside
from worker.facts import BoxEnv, ContainerFact
from worker.secrets import resolve_env

KEY_FILE = "secret-hash.key"
_lock = threading.Lock()
# box -> apps whose secrets the box last found changed (for its heartbeat; names only).
_last_seen: dict[str, set[str]] = {}


def box_key(state_dir: str) -> bytes:
    """The box's HMAC key, made once (32 random bytes, mode 600); None of it is ever sent."""
    path = Path(state_dir) / KEY_FILE
    with _lock:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        # Two workers of one box: the last one's key, read by both.
        replace_file(path, os.urandom(32), durable=True)
        return path.read_bytes()


def secret_hash(key: bytes, spec_env: Mapping[str, object], resolved: Mapping[str, str]) -> str:
    """HMAC-SHA256 over the secret-backed env values; '' when the container has none."""
    names = sorted(k for k, v in spec_env.items() if isinstance(v, SecretRef))
    if not names:
        return ""
    blob = json.dumps({k: resolved[k] for k in names}, sort_keys=True).encode()
    return hmac.new(key, blob, hashlib.sha256).hexdigest()


def wanted_hashes(env: BoxEnv, release: Release, app: str) -> dict[str, str]:
    """container -> the hash of its secret values as they resolve now ({} without a key)."""
    if env.state_dir is None:
        return {}
    key = box_key(env.state_dir)
    out = {}
    for name, cspec in release.spec.apps[app].containers.items():
        if any(isinstance(v, SecretRef) for v in cspec.env.values()):
            try:
                out[name] = secret_hash(key, cspec.env, resolve_env(cspec.env, env.ssm))
            except SecretUnavailable as exc:
                raise SecretUnavailable(f"{app}/{name}: {exc}") from None
    return out


def _has_secrets(release: Release, app: str) -> bool:
    spec = release.spec.apps.get(app)
    return spec is not None and any(
        isinstance(v, SecretRef) for c in spec.containers.values() for v in c.env.values()
    )


def secrets_changed(
    env: BoxEnv, release: Release, apps: Iterable[str] | None = None,
    facts: list[ContainerFact] | None = None,
) -> list[str]:
    """Apps running `release`'s spec whose secret values are no longer the ones they started
    with. A container made before these hashes existed (no label) counts as unchanged.
    `facts`: the box's app containers, when the caller has just listed them."""
    wanted_apps = list(apps) if apps is not None else list(release.spec.apps)
    if not any(_has_secrets(release, app) for app in wanted_apps):
        # No secret in these specs, so none can have changed: no look at the box needed.
        remember(env.box_id, wanted_apps, [])
        return []
    if facts is None:
        facts = env.runtime.list(labels={Label.BOX: env.box_id, Label.ROLE: "app"})
    running = [f for f in facts if f.state == "running" and not is_aside(f)]
    changed = []
    for app in wanted_apps:
        if app not in release.spec.apps:
            continue
        mine = [
            f for f in running
            if f.labels.get(Label.APP) == app
            and f.labels.get(Label.SPEC_HASH) == release.spec_hash(app)
            and f.labels.get(Label.SECRET_HASH)
        ]
        if not mine:
            continue  # not running this spec: a change anyway, or nothing to compare
        wanted = wanted_hashes(env, release, app)
        if any(
            not hmac.compare_digest(
                f.labels[Label.SECRET_HASH], wanted.get(f.labels.get(Label.CONTAINER, ""), "")
            )
            for f in mine
        ):
            changed.append(app)
    remember(env.box_id, wanted_apps, changed)
    return changed


def remember(box_id: str, checked: Iterable[str], changed: Iterable[str]) -> None:
    with _lock:
        seen = _last_seen.setdefault(box_id, set())
        seen.difference_update(checked)
        seen.update(changed)


def last_seen(box_id: str) -> list[str]:
    """What the box's last checks found (the heartbeat reports it for `status`)."""
    with _lock:
        return sorted(_last_seen.get(box_id, set()))
