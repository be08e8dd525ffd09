#!/usr/bin/env bash
# Stop what tests/slurm/start.sh started (by the pid files it wrote), and remove its state folder.
# Idempotent; never touches a daemon it did not start.
set -uo pipefail
STATE=${JSARAG_SLURM_STATE:-/tmp/jsarag-slurm}
[ -d "$STATE" ] || exit 0
export SLURM_CONF=$STATE/slurm.conf
[ -f "$SLURM_CONF" ] && timeout 10 scancel --user "$(id -un)" >/dev/null 2>&1 || true
for d in slurmd slurmctld munged; do
  pidf=$STATE/$d.pid
  [ -f "$pidf" ] || continue
  pid=$(cat "$pidf")
  if [ -n "$pid" ] && [ "$(ps -o comm= -p "$pid" 2>/dev/null)" = "$d" ]; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
done
[ "$(readlink /etc/slurm/slurm.conf)" = "$SLURM_CONF" ] && rm -f /etc/slurm/slurm.conf
[ -f "$STATE/created_munge_key" ] && rm -f /etc/munge/munge.key
rm -rf "$STATE"
