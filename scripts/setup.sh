#!/usr/bin/env bash
# Set up a fresh Debian machine as root: apt packages, a running Docker engine, the venv.
# Shared by .ci/run and scripts/demo.sh; safe to run again (skips what is there).
set -euo pipefail
cd "$(dirname "$0")/.."

# redis-server also runs the sentinels (`redis-server FILE --sentinel`, devstack/sentinel.py):
# the redis-sentinel package is not needed.
APT_PACKAGES=(docker.io docker-compose redis-server busybox-static docker-registry haproxy
              prometheus chromium chromium-driver)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -q
  # No recommends: prometheus would pull in node-exporter, smartmontools and friends.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! docker version >/dev/null 2>&1; then
  # A dockerd killed earlier leaves its pid file behind, and a new one refuses to start.
  if ! pgrep -x dockerd >/dev/null; then rm -f /var/run/docker.pid; fi
  echo "setup: starting dockerd (log: /tmp/dockerd.log)" >&2
  (dockerd >/tmp/dockerd.log 2>&1 &)
  if ! timeout 60 sh -c 'until docker version >/dev/null 2>&1; do sleep 0.2; done'; then
    echo "setup: dockerd did not answer within 60 s; see /tmp/dockerd.log" >&2
    tail -20 /tmp/dockerd.log >&2 || true
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip
# The distribution is gc-box-orchestrator now: first drop an install under the old name
# (its uninstall would take the console scripts the new one writes).
if .venv/bin/pip show -q orchestrator >/dev/null 2>&1; then
  .venv/bin/pip uninstall -q -y orchestrator
fi
.venv/bin/pip install -q -e ".[dev]"
# An editable install leaves our own modules uncompiled, and under PYTHONDONTWRITEBYTECODE=1
# every CLI start compiled them again (~60 ms); a wheel install compiles them as this does.
.venv/bin/python -m compileall -q schemas orchestrator worker devstack >/dev/null
