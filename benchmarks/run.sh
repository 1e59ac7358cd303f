#!/usr/bin/env bash
# Run one benchmark after the README's test set-up (scripts/setup.sh): installs the `bench`
# extra (Ansible, pyinstrument, py-spy) into .venv if it is missing, then runs
# `python -m benchmarks.NAME`. NAME: window, overhead, peer, scale, profile, inputs, metrics, or all.
# Results: a table and ratios on stdout, JSON under benchmarks/results/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."

name="${1:-}"
case "$name" in
  window|overhead|peer|scale|profile|inputs|metrics|all) shift ;;
  *) echo "usage: bash benchmarks/run.sh window|overhead|peer|scale|profile|inputs|metrics|all [options]" >&2
     exit 2 ;;
esac

if [ ! -x .venv/bin/python ]; then
  echo "no .venv: run \`bash scripts/setup.sh\` first (README, Tests)" >&2
  exit 2
fi
if ! .venv/bin/python -c "import pyinstrument, ansible_collections.community.docker" \
    2>/dev/null || [ ! -x .venv/bin/ansible-playbook ] || [ ! -x .venv/bin/py-spy ]; then
  echo "benchmarks: installing the bench extra (pip install -e '.[bench]')" >&2
  .venv/bin/pip install -q -e ".[bench]"
fi

# Our own modules' bytecode, as a wheel install has it: an edit since set-up (or
# PYTHONDONTWRITEBYTECODE=1) would otherwise make every timed CLI start compile them (~60 ms).
.venv/bin/python -m compileall -q schemas orchestrator worker devstack >/dev/null

if [ "$name" = all ]; then
  for one in window overhead peer scale; do
    .venv/bin/python -m "benchmarks.$one" "$@"
  done
else
  exec .venv/bin/python -m "benchmarks.$name" "$@"
fi
