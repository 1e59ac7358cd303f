"""The launch template's user data: a cloud-init document that boots orchestrator-worker. Pure."""

from __future__ import annotations

import base64
import json
import shlex
from typing import Any

import yaml

from schemas.base import SecretRef
from schemas.workerboot import WorkerBoot

VENV = "/opt/orchestrator/venv"
ENV_FILE = "/etc/orchestrator/worker.env"
REFS_FILE = "/etc/orchestrator/worker.refs.json"
# The worker package's console script (worker/bootenv.py): on the box, at boot, it resolves the
# references into values, in a file only root reads; the user data (readable through the EC2
# API) holds references only.
WORKER_ENV_COMMAND = f"{VENV}/bin/orchestrator-worker-env"
UNIT_PATH = "/etc/systemd/system/orchestrator-worker.service"
# The worker is installed only from files pinned by sha256: the lock (every dependency, each
# with its hashes) and the wheel by URL; pip runs with --require-hashes, never by bare name.
DIST_NAME = "gc-box-orchestrator"
LOCK_FILE = "/opt/orchestrator/worker.lock"
LOCK_SUM_FILE = "/opt/orchestrator/worker.lock.sha256"
REQUIREMENTS_FILE = "/opt/orchestrator/worker-requirements.txt"

# Kept equal to examples/systemd/orchestrator-worker.service by a test.
WORKER_UNIT = """\
# /etc/systemd/system/orchestrator-worker.service — the box worker, one per box.
# Settings: /etc/orchestrator/worker.env (ORCHESTRATOR_* lines; see README "Worker settings").
[Unit]
Description=orchestrator box worker (Celery, queue box.<id>)
After=network-online.target docker.service
Wants=network-online.target
Requires=docker.service

[Service]
Type=simple
EnvironmentFile=/etc/orchestrator/worker.env
ExecStart=/opt/orchestrator/venv/bin/orchestrator-worker --loglevel INFO
# A warm shutdown lets the running step finish (each step has a deadline below this).
# Scale-in: drain and leave the load balancers first, then stop.
ExecStop=/opt/orchestrator/venv/bin/orchestrator-worker --leave-lb
KillSignal=SIGTERM
TimeoutStopSec=180
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
"""


def worker_env(box_type: str, region: str, boot: WorkerBoot) -> dict[str, Any]:
    """ORCHESTRATOR_* settings for the box: plain values, or {"secret": ref} references."""

    def value(v: str | SecretRef) -> Any:
        return v.model_dump() if isinstance(v, SecretRef) else v

    env: dict[str, Any] = {
        "ORCHESTRATOR_BOX_TYPE": box_type,
        "ORCHESTRATOR_AWS_REGION": region,
        "ORCHESTRATOR_BROKER_URL": value(boot.broker_url),
    }
    if boot.redis_url is not None:
        env["ORCHESTRATOR_REDIS_URL"] = value(boot.redis_url)
    for name in sorted(boot.settings):
        env[f"ORCHESTRATOR_{name.upper()}"] = value(boot.settings[name])
    return env


def worker_requirements(boot: WorkerBoot) -> str:
    """The box's one pip input: the hashed lock, and the wheel by URL with its sha256."""
    return (
        "# Every dependency from the hashed lock; the worker wheel by URL and sha256.\n"
        f"-r {LOCK_FILE}\n"
        f"{DIST_NAME} @ {boot.wheel.url} \\\n"
        f"    --hash=sha256:{boot.wheel.sha256}\n"
    )


def install_command(boot: WorkerBoot) -> str:
    """Fetch the lock, check its sha256, then install with --require-hashes only: one shell
    line joined by '&&', as cloud-init goes on to the next runcmd line after a failure."""
    pip = f"{VENV}/bin/pip"
    fetch = ["curl", "--fail", "--silent", "--show-error", "--location", "--proto", "=https"]
    steps = [
        ["python3", "-m", "venv", VENV],
        [*fetch, "--output", LOCK_FILE, boot.lock.url],
        ["sha256sum", "--check", "--strict", LOCK_SUM_FILE],
        [pip, "install", "--quiet", "--no-input", "--require-hashes", "-r", REQUIREMENTS_FILE],
    ]
    return " && ".join(shlex.join(step) for step in steps)


def _file(path: str, content: str, mode: str = "0644") -> dict[str, str]:
    return {"path": path, "owner": "root:root", "permissions": mode, "content": content}


def cloud_config(box_type: str, region: str, boot: WorkerBoot) -> str:
    """The #cloud-config document: Docker, the worker package, its settings and unit, started."""
    doc = {
        "package_update": True,
        "packages": ["docker.io", "python3-venv", "curl"],
        "write_files": [
            _file(
                REFS_FILE, json.dumps(worker_env(box_type, region, boot), indent=2) + "\n", "0600"
            ),
            _file(UNIT_PATH, WORKER_UNIT),
            _file(LOCK_SUM_FILE, f"{boot.lock.sha256}  {LOCK_FILE}\n"),
            _file(REQUIREMENTS_FILE, worker_requirements(boot)),
        ],
        "runcmd": [
            "systemctl enable --now docker",
            install_command(boot),
            shlex.join([WORKER_ENV_COMMAND, REFS_FILE, ENV_FILE]),
            "systemctl daemon-reload",
            "systemctl enable --now orchestrator-worker",
        ],
    }
    header = (
        "#cloud-config\n"
        f"# orchestrator box type {box_type}: Docker, orchestrator-worker and its settings.\n"
    )
    return header + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=4096, allow_unicode=True)


def encode(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def decode(user_data: str) -> str:
    return base64.b64decode(user_data).decode()


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so the document reads like the files it writes."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)
