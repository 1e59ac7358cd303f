#!/usr/bin/env bash
# The demo rollout on a fresh Debian machine, as root: install what is missing, then run
# scripts/demo.py (Redis, moto, a registry, HAProxy, Flower and three box workers on loopback;
# v1 deployed, then rolled to v2 under traffic; everything stopped at the end unless --keep).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
