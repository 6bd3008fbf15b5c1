#!/usr/bin/env bash
# The Debian packages on this machine, with dpkg, as an operator uses them:
# install version A, start the agent as a host without systemd does
# (start-stop-daemon, the pidfile contract), change a conffile, upgrade to
# version B (made from the same binaries), remove, purge. Checks files,
# owners, modes, conffiles, the running service and what each step keeps or
# deletes. Needs root; leaves the machine as it found it (everything is
# purged at the end, also on failure). CTest runs it with RESOURCE_LOCK dpkg.
#
# Usage: package_test.sh BUILD_DIR
set -euo pipefail

build_dir="${1:?usage: package_test.sh BUILD_DIR}"
source_dir="$(cd "$(dirname "$0")/../.." && pwd)"
packages=(deltasync-agent deltasync-hub deltasync)
pidfile=/run/deltasync/deltasync-agent.pid

if [ "$(id -u)" -ne 0 ]; then
  echo "package_test: needs root (it installs packages with dpkg); skipped" >&2
  exit 77
fi

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }
check() {  # description command...
  local what="$1"
  shift
  if "$@"; then ok "$what"; else fail "$what"; fi
}
status_of() { dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || echo not-installed; }
owner_mode() { stat -c '%U:%G %a' "$1" 2>/dev/null || echo missing; }

# A rollout test killed by a ctest timeout leaves hosts whose agents hold
# the deltasync uid, and userdel would fail at the end: remove them first.
bash "$source_dir/tests/rollout/reap_stale_fleets.sh"
# The machine must be clean, or the test would change what it found.
for p in "${packages[@]}"; do
  s="$(status_of "$p")"
  if [ "$s" != not-installed ]; then
    echo "package_test: $p is on this machine ($s); purge it first (dpkg -P $p)" >&2
    exit 1
  fi
done
if getent passwd deltasync >/dev/null || [ -e /var/lib/deltasync ] || [ -e /etc/deltasync ]; then
  echo "package_test: a deltasync user, /var/lib/deltasync or /etc/deltasync exists; the test would change it" >&2
  exit 1
fi
before_overrides="$(dpkg-statoverride --list | sort)"
before_dsh="$(ls /var/lib/systemd/deb-systemd-helper-enabled 2>/dev/null | sort || true)"

work="$(mktemp -d /tmp/deltasync-package-test.XXXXXX)"
cleanup() {
  local rc=$?
  set +e
  if [ -f "$pidfile" ]; then
    start-stop-daemon --stop --quiet --oknodo --pidfile "$pidfile" --name deltasync-agent --retry TERM/10/KILL/5
  fi
  for p in "${packages[@]}"; do
    if [ "$(status_of "$p")" != not-installed ]; then dpkg -P "$p" >/dev/null 2>&1; fi
  done
  # There was no deltasync user or group before the test (checked above).
  if getent passwd deltasync >/dev/null; then userdel deltasync; fi
  if getent group deltasync >/dev/null; then groupdel deltasync; fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

# Two versions from the same binaries, as a rollout test needs them.
version_a=0.0.1~pkgtest1
version_b=0.0.1~pkgtest2
bash "$source_dir/deploy/debian/build-packages.sh" --build-dir "$build_dir" --version "$version_a" --out "$work/a" \
  > "$work/a.list"
bash "$source_dir/deploy/debian/build-packages.sh" --build-dir "$build_dir" --version "$version_b" --out "$work/b" \
  > "$work/b.list"
arch="$(dpkg --print-architecture)"
for p in "${packages[@]}"; do
  check "$p: --out and the printed path agree" grep -qxF "$work/a/${p}_${version_a}_${arch}.deb" "$work/a.list"
done
dpkg --compare-versions "$version_b" gt "$version_a" || { echo "versions do not order" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
echo "== install $version_a"
dpkg -i "$work"/a/*.deb > "$work/install.log" 2>&1 || { cat "$work/install.log" >&2; exit 1; }
for p in "${packages[@]}"; do
  check "$p $version_a installed" test "$(dpkg-query -W -f='${Version} ${db:Status-Status}' "$p")" = "$version_a installed"
done
for b in deltasync-agent deltasync-hub deltasync; do
  check "/usr/bin/$b is root:root 755" test "$(owner_mode /usr/bin/$b)" = "root:root 755"
  check "/usr/bin/$b --version runs" bash -c "/usr/bin/$b --version | grep -q '^$b [0-9]'"
done
check "no benchmark or test binary is packaged" \
  bash -c "! dpkg -L ${packages[*]} | grep -E 'bench|_test|tests'"
check "the agent's conffile is listed" \
  bash -c "dpkg-query -W --showformat='\${Conffiles}' deltasync-agent | grep -q '^ /etc/deltasync/agent.toml '"
check "the hub's conffile is listed" \
  bash -c "dpkg-query -W --showformat='\${Conffiles}' deltasync-hub | grep -q '^ /etc/deltasync/hub.toml '"
check "the CLI has no conffile" test -z "$(dpkg-query -W --showformat='${Conffiles}' deltasync)"
for c in agent hub; do
  check "/etc/deltasync/$c.toml is root:deltasync 640" test "$(owner_mode /etc/deltasync/$c.toml)" = "root:deltasync 640"
  check "/lib/systemd/system/deltasync-$c.service is shipped" test -f "/lib/systemd/system/deltasync-$c.service"
  check "/var/lib/deltasync/$c is deltasync:deltasync 750" \
    test "$(owner_mode /var/lib/deltasync/$c)" = "deltasync:deltasync 750"
done
check "the installed agent.toml loads" /usr/bin/deltasync-agent --check-config --config /etc/deltasync/agent.toml
check "the installed hub.toml loads" /usr/bin/deltasync-hub --check-config --config /etc/deltasync/hub.toml
check "/var/lib/deltasync is deltasync:deltasync 750" test "$(owner_mode /var/lib/deltasync)" = "deltasync:deltasync 750"
check "/etc/deltasync/creds is root:deltasync 750" test "$(owner_mode /etc/deltasync/creds)" = "root:deltasync 750"
check "deltasync is a system user without a login shell" \
  bash -c '[ "$(id -u deltasync)" -lt 1000 ] && [ "$(getent passwd deltasync | cut -d: -f7)" = /usr/sbin/nologin ]'
for p in "${packages[@]}"; do
  check "$p: copyright and changelog in /usr/share/doc/$p" \
    test -f "/usr/share/doc/$p/copyright" -a -f "/usr/share/doc/$p/changelog.gz"
done
for page in man1/deltasync.1 man8/deltasync-hub.8 man8/deltasync-agent.8; do
  check "/usr/share/man/$page.gz is root:root 644" test "$(owner_mode "/usr/share/man/$page.gz")" = "root:root 644"
  check "/usr/share/man/$page.gz is a manual page" bash -c "zcat /usr/share/man/$page.gz | grep -q '^\.TH '"
done

echo "== the operator edits agent.toml; the agent started as a host without systemd starts it"
# An open nats-server on a port where none listens: the agent keeps retrying.
sed -i -e 's|^url = "nats://hub.example.internal:4222"$|url = "nats://127.0.0.1:9"  # changed by the operator|' \
       -e 's|^nkey_seed_file = "creds/store-1.nk"$|# no credentials: an open server|' /etc/deltasync/agent.toml
check "the edited agent.toml loads" /usr/bin/deltasync-agent --check-config --config /etc/deltasync/agent.toml
start-stop-daemon --start --background --make-pidfile --pidfile "$pidfile" --chuid deltasync \
  --exec /usr/bin/deltasync-agent -- --config /etc/deltasync/agent.toml
agent_pid="$(cat "$pidfile")"
for _ in $(seq 1 100); do [ -f /var/lib/deltasync/agent/replica.db ] && break; sleep 0.1; done
sleep 1
check "the agent runs, as deltasync" test "$(ps -o user= -p "$agent_pid")" = deltasync
check "the agent wrote its replica, owner-only" \
  test "$(owner_mode /var/lib/deltasync/agent/replica.db)" = "deltasync:deltasync 600"

echo "== data in /var/lib/deltasync; upgrade to $version_b"
echo "hub data" > /var/lib/deltasync/hub/marker
chown deltasync:deltasync /var/lib/deltasync/hub/marker
replica_sum="$(md5sum < /var/lib/deltasync/agent/replica.db)"
dpkg --force-confdef --force-confold -i "$work"/b/*.deb > "$work/upgrade.log" 2>&1 ||
  { cat "$work/upgrade.log" >&2; exit 1; }
for p in "${packages[@]}"; do
  check "$p upgraded to $version_b" test "$(dpkg-query -W -f='${Version} ${db:Status-Status}' "$p")" = "$version_b installed"
done
check "the operator's change of agent.toml is kept" grep -q '# changed by the operator' /etc/deltasync/agent.toml
check "no .dpkg-dist copy: the shipped conffile did not change" test ! -e /etc/deltasync/agent.toml.dpkg-dist
check "agent.toml is still root:deltasync 640" test "$(owner_mode /etc/deltasync/agent.toml)" = "root:deltasync 640"
check "the replica is kept" test "$(md5sum < /var/lib/deltasync/agent/replica.db 2>/dev/null)" = "$replica_sum"
check "the hub's data is kept" grep -qx "hub data" /var/lib/deltasync/hub/marker
check "without systemd an upgrade leaves the running agent alone" kill -0 "$agent_pid" 2>/dev/null

echo "== remove the agent: the service stops, configuration and data stay"
dpkg -r deltasync-agent > "$work/remove.log" 2>&1 || { cat "$work/remove.log" >&2; exit 1; }
check "deltasync-agent is removed (config-files)" test "$(status_of deltasync-agent)" = config-files
check "the running agent was stopped" bash -c "! kill -0 $agent_pid 2>/dev/null"
check "its pidfile is gone" test ! -e "$pidfile"
check "/usr/bin/deltasync-agent is gone" test ! -e /usr/bin/deltasync-agent
check "agent.toml stays after remove" grep -q '# changed by the operator' /etc/deltasync/agent.toml
check "the replica stays after remove" test -f /var/lib/deltasync/agent/replica.db

echo "== purge the agent: its data goes, the hub's stays"
dpkg -P deltasync-agent > "$work/purge.log" 2>&1 || { cat "$work/purge.log" >&2; exit 1; }
check "deltasync-agent is purged" test "$(status_of deltasync-agent)" = not-installed
check "/var/lib/deltasync/agent is deleted" test ! -e /var/lib/deltasync/agent
check "agent.toml is deleted" test ! -e /etc/deltasync/agent.toml
check "agent.toml's statoverride is deleted" bash -c "! dpkg-statoverride --list /etc/deltasync/agent.toml"
check "the hub's data stays while the hub is installed" grep -qx "hub data" /var/lib/deltasync/hub/marker
check "the deltasync user stays while the hub is installed" bash -c "getent passwd deltasync >/dev/null"

echo "== purge the hub and the CLI: nothing is left"
dpkg -P deltasync-hub deltasync > "$work/purge2.log" 2>&1 || { cat "$work/purge2.log" >&2; exit 1; }
for p in "${packages[@]}"; do check "$p is purged" test "$(status_of "$p")" = not-installed; done
check "/var/lib/deltasync is deleted" test ! -e /var/lib/deltasync
check "/etc/deltasync is deleted" test ! -e /etc/deltasync
check "/run/deltasync is deleted" test ! -e /run/deltasync
check "the deltasync user is deleted" bash -c "! getent passwd deltasync"
check "the deltasync group is deleted" bash -c "! getent group deltasync"
check "no statoverride is left" test "$(dpkg-statoverride --list | sort)" = "$before_overrides"
check "no unit state is left" \
  test "$(ls /var/lib/systemd/deb-systemd-helper-enabled 2>/dev/null | sort || true)" = "$before_dsh"

if [ "$failures" -ne 0 ]; then
  for log in install upgrade remove purge purge2; do
    echo "--- dpkg output: $log" >&2
    cat "$work/$log.log" >&2
  done
  echo "package_test: $failures check(s) failed" >&2
  exit 1
fi
echo "package_test: all checks passed"
