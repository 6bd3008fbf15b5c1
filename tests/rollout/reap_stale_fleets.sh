#!/usr/bin/env bash
# Removes what a killed rollout test left behind. A ctest timeout kills the
# test with SIGKILL, so its EXIT trap (fleet_down) never runs, and the agents
# its hosts started with start-stop-daemon (daemons, reparented to init) keep
# running in their namespaces: they hold the hosts' deltasync uid, which then
# made the package test's `userdel deltasync` fail on the machine (seen once,
# after a rollout test timed out on a loaded machine).
#
# A fleet's namespaces (ds-r<PID>-h<N>), bridge (dsb<PID>) and directory
# (/tmp/ds-fleet.r<PID>.*) carry the PID of the shell that made it; this
# removes those whose shell is gone, and leaves running fleets alone.
# Idempotent; prints one line per fleet removed. Needs root (does nothing
# without it). Run by rollout_test.sh and package_test.sh before they start.
#
# Usage: reap_stale_fleets.sh
set -uo pipefail

[ "$(id -u)" -eq 0 ] || exit 0
alive() { kill -0 "$1" 2>/dev/null; }

declare -A reaped=()
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^ds-r[0-9]+-h[0-9]+$'); do
  pid=${ns#ds-r}; pid=${pid%%-*}
  alive "$pid" && continue
  pids=$(ip netns pids "$ns" 2>/dev/null)
  [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
  for _ in $(seq 50); do [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break; sleep 0.1; done
  ip netns del "$ns" 2>/dev/null
  reaped[$pid]=1
done
for link in $(ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' | grep -E '^dsb[0-9]+$'); do
  pid=${link#dsb}
  alive "$pid" && continue
  ip link del "$link" 2>/dev/null
  reaped[$pid]=1
done
for dir in /tmp/ds-fleet.r*.*; do
  [ -d "$dir" ] || continue
  pid=${dir#/tmp/ds-fleet.r}; pid=${pid%%.*}
  [[ "$pid" =~ ^[0-9]+$ ]] || continue
  alive "$pid" && continue
  rm -rf "$dir"
  reaped[$pid]=1
done
for pid in "${!reaped[@]}"; do
  echo "reap_stale_fleets: removed the test fleet of rollout run $pid (killed before its cleanup)" >&2
done
exit 0
