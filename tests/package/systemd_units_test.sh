#!/usr/bin/env bash
# `systemd-analyze verify` on deploy/systemd/*.service, failing on any
# message (verify exits 0 after many warnings, e.g. an unknown key or a value
# it ignores). verify needs ExecStart's binary to exist: the units are checked
# as copies whose /usr/bin/ points at the binaries of BUILD_DIR, and nothing
# else is changed. No systemd is started.
#
# Usage: systemd_units_test.sh BUILD_DIR
set -euo pipefail

build_dir="$(cd "${1:?usage: systemd_units_test.sh BUILD_DIR}" && pwd)"
source_dir="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d /tmp/deltasync-units-test.XXXXXX)"
trap 'rm -rf "$work"' EXIT

units=()
for unit in "$source_dir"/deploy/systemd/*.service; do
  name="$(basename "$unit")"
  grep -q '^ExecStart=/usr/bin/' "$unit" || { echo "FAIL: $name: ExecStart is not in /usr/bin" >&2; exit 1; }
  sed "s|^ExecStart=/usr/bin/|ExecStart=$build_dir/|" "$unit" > "$work/$name"
  units+=("$work/$name")
done
[ ${#units[@]} -eq 2 ] || { echo "FAIL: expected the hub's and the agent's unit, found ${#units[@]}" >&2; exit 1; }

failed=0
for unit in "${units[@]}"; do
  # --man=no: no man page is shipped (see the lintian overrides).
  if ! out="$(cd "$work" && systemd-analyze verify --man=no "$unit" 2>&1)"; then
    echo "FAIL: $(basename "$unit"): systemd-analyze verify failed:" >&2
    echo "$out" >&2
    failed=1
  elif [ -n "$out" ]; then
    echo "FAIL: $(basename "$unit"): systemd-analyze verify warns:" >&2
    echo "$out" >&2
    failed=1
  else
    echo "ok: $(basename "$unit") verifies without a message"
  fi
  # What the issue requires of both units, so a later edit cannot drop it.
  for setting in Type=notify Restart=on-failure User=deltasync ProtectSystem=strict \
                 ReadWritePaths=/var/lib/deltasync NoNewPrivileges=yes PrivateTmp=yes ProtectHome=yes \
                 CapabilityBoundingSet= SystemCallFilter=@system-service; do
    if ! grep -qxF "$setting" "$unit"; then
      echo "FAIL: $(basename "$unit") lacks $setting" >&2
      failed=1
    fi
  done
done
grep -q '^MemoryMax=' "$work/deltasync-agent.service" || { echo "FAIL: the agent's unit has no MemoryMax" >&2; failed=1; }
exit "$failed"
