"""Celery processes: `orchestrator-worker` boxes, plain Celery workers, and their settings."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devstack.process import MissingTool, Service

if TYPE_CHECKING:
    from orchestrator.engine.trust import Signer

ROOT = Path(__file__).resolve().parent.parent  # the checkout: its packages, uninstalled too


def python_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (this process's environment if None) with the checkout first on PYTHONPATH."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def check_celery_redis() -> None:
    """kombu's Redis transport imports `packaging`, a dependency of the `redis` extra only:
    without it the first worker start fails with a ModuleNotFoundError deep in kombu."""
    if importlib.util.find_spec("packaging") is None:
        raise MissingTool("kombu's Redis transport needs `packaging`: install celery[redis] "
                          "(pip install -e '.[dev]')")


def settings(**values: str) -> dict[str, str]:
    """step_deadline="30" -> {"ORCHESTRATOR_STEP_DEADLINE": "30"}."""
    return {f"ORCHESTRATOR_{name.upper()}": value for name, value in values.items()}


_DEV_KEYS: list[tuple[str, str]] = []


def dev_keys(folder: Path | None = None) -> tuple[str, str]:
    """This process's dev signing key pair: (path of the private key, mode 600; its public
    key). The stack runs signed, like production. The first call decides where the key
    lives: in `folder` (the demo's, kept as long as its stack), else in a private temporary
    folder removed when this process ends."""
    if not _DEV_KEYS:
        import atexit
        import shutil
        import tempfile

        from orchestrator.engine.trust import generate, write_private

        if folder is None:
            folder = Path(tempfile.mkdtemp(prefix="orch-dev-key-"))
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / "signing.key"
        if path.exists():  # a kept stack's key: the same pair again
            from orchestrator.engine.trust import load_signer

            public = load_signer(str(path)).public
        else:
            pem, public = generate()
            write_private(path, pem)
        _DEV_KEYS.append((str(path), public))
    return _DEV_KEYS[0]


def dev_signer() -> Signer:
    """The dev key as a signer, for tests that play the coordinator in-process."""
    from orchestrator.engine.trust import load_signer

    return load_signer(dev_keys()[0])


def _clean_env() -> dict[str, str]:
    # Nothing of the caller's own ORCHESTRATOR_* settings leaks into the stack.
    return {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}


def worker_env(box_id: str, box_type: str, broker_url: str, redis_url: str, prefix: str,
               labels: Mapping[str, str] | None = None, **values: str) -> dict[str, str]:
    """A box worker's environment: the product's defaults unless `values` say otherwise;
    `labels` go on every container it starts (so that clean-up finds them)."""
    env = _clean_env()
    env.update(settings(box_id=box_id, box_type=box_type, broker_url=broker_url,
                        redis_url=redis_url, key_prefix=prefix, haproxy_server=box_id,
                        trusted_keys=dev_keys()[1]))
    if "log_root" in values and "state_dir" not in values:
        # The box's own record beside its logs, never in the machine's /var/lib.
        values["state_dir"] = str(Path(values["log_root"]).with_name("state"))
    if labels:
        env["ORCHESTRATOR_EXTRA_LABELS"] = json.dumps(dict(labels))
    env.update(settings(**values))
    return env


def cli_env(boxes_dir: Path, broker_url: str, redis_url: str, prefix: str,
            **values: str) -> dict[str, str]:
    """The `orchestrator` CLI's environment for this stack (a dev stack: --reason optional)."""
    values = {"allow_no_reason": "true", **values}
    env = _clean_env()
    path, public = dev_keys()
    env.update(settings(boxes_dir=str(boxes_dir), broker_url=broker_url, redis_url=redis_url,
                        key_prefix=prefix, signing_key=path, trusted_keys=public))
    env.update(settings(**values))
    return env


class BoxWorker(Service):
    """One simulated box: `orchestrator-worker` on its queue box.<id>; ready once Celery
    logs ` ready.` (at INFO). `env` (worker_env()) may change until it starts."""

    stop_stage = 0

    def __init__(self, workdir: Path, env: dict[str, str], name: str | None = None, *,
                 argv: Sequence[str] | None = None, loglevel: str = "INFO",
                 detach: bool = False) -> None:
        self.box_id = env["ORCHESTRATOR_BOX_ID"]
        super().__init__(workdir, name or self.box_id, detach=detach)
        self.env = env
        self.cwd = ROOT
        self._argv = list(argv or [sys.executable, "-m", "worker.main"])
        self.loglevel = loglevel

    @property
    def bind_ip(self) -> str:
        return self.env.get("ORCHESTRATOR_BIND_IP", "127.0.0.1")

    @property
    def box_type(self) -> str:
        return self.env["ORCHESTRATOR_BOX_TYPE"]

    @property
    def log_root(self) -> Path:
        """Where the worker forwards its apps' log directories (ORCHESTRATOR_LOG_ROOT)."""
        return Path(self.env["ORCHESTRATOR_LOG_ROOT"])

    def argv(self) -> list[str]:
        check_celery_redis()
        return [*self._argv, "--loglevel", self.loglevel]

    def environment(self) -> dict[str, str]:
        return python_env(self.env)

    def ready(self) -> bool:
        return b" ready." in self.output()


class CeleryWorker(Service):
    """`celery -A APP worker` on one queue, solo pool by default, as a box worker runs it;
    `transport_options` replace the app's broker_transport_options (on its command line)."""

    stop_stage = 0

    def __init__(self, workdir: Path, app: str, queue: str, node: str, name: str | None = None,
                 *, env: Mapping[str, str] | None = None, pool: str = "solo",
                 concurrency: int = 1, events: bool = False, extra_args: Sequence[str] = (),
                 transport_options: Mapping[str, Any] | None = None) -> None:
        from celery.utils.nodenames import host_format

        super().__init__(workdir, name or node.split("@")[0])
        self.app, self.queue, self.node = app, queue, node
        self.node_name = host_format(node)  # "%h" expanded, as in its log
        self.env = dict(env or os.environ)
        self.cwd = ROOT
        self.options = ["-c", str(concurrency), "-P", pool, *(["-E"] if events else [])]
        self.extra_args = list(extra_args)
        self.transport_options = transport_options

    def argv(self) -> list[str]:
        check_celery_redis()
        args = [sys.executable, "-m", "celery", "-A", self.app, "worker", "-Q", self.queue,
                "-n", self.node, *self.options, "-l", "INFO", "--without-gossip",
                "--without-mingle", *self.extra_args]
        if self.transport_options is not None:
            args += ["--", "broker_transport_options=(json)" + json.dumps(
                dict(self.transport_options))]
        return args

    def environment(self) -> dict[str, str]:
        return python_env(self.env)

    def ready(self) -> bool:
        return f"{self.node_name} ready.".encode() in self.output()
