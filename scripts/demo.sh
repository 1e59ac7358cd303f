#!/usr/bin/env bash
# The main job on a fresh machine. For now: validate the box types shipped in examples/
# (the rollout demo replaces this once rollouts land).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/orchestrator validate --fleet examples/fleet.yml examples/boxes/*.yml
