"""The launch template's user data: a cloud-init document that boots orchestrator-worker. Pure."""

from __future__ import annotations

import base64
import json
import shlex
from typing import Any

import yaml

from schemas.base import SecretRef
from schemas.provision import WorkerBoot

VENV = "/opt/orchestrator/venv"
ENV_FILE = "/etc/orchestrator/worker.env"
REFS_FILE = "/etc/orchestrator/worker.refs.json"
# The worker package's console script (worker/bootenv.py): on the box, at boot, it resolves the
# references into values, in a file only root reads; the user data (readable through the EC2
# API) holds references only.
WORKER_ENV_COMMAND = f"{VENV}/bin/orchestrator-worker-env"
UNIT_PATH = "/etc/systemd/system/orchestrator-worker.service"

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


def cloud_config(box_type: str, region: str, boot: WorkerBoot) -> str:
    """The #cloud-config document: Docker, the worker package, its settings and unit, started."""
    pip = f"{VENV}/bin/pip"
    doc = {
        "package_update": True,
        "packages": ["docker.io", "python3-venv"],
        "write_files": [
            {
                "path": REFS_FILE,
                "owner": "root:root",
                "permissions": "0600",
                "content": json.dumps(worker_env(box_type, region, boot), indent=2) + "\n",
            },
            {
                "path": UNIT_PATH,
                "owner": "root:root",
                "permissions": "0644",
                "content": WORKER_UNIT,
            },
        ],
        "runcmd": [
            "systemctl enable --now docker",
            shlex.join(["python3", "-m", "venv", VENV]),
            shlex.join([pip, "install", "--quiet", boot.package]),
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
