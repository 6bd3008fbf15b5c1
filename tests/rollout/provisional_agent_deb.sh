#!/usr/bin/env bash
# PROVISIONAL stand-in for deploy/debian/build-packages.sh (the packaging
# branch), used by rollout_test.sh only while that script is not in the tree:
# a minimal deltasync-agent .deb with the same contract (binary
# /usr/bin/deltasync-agent, conffile /etc/deltasync/agent.toml, system user
# deltasync made by postinst owning /var/lib/deltasync, prerm stopping a
# start-stop-daemon agent through /run/deltasync/deltasync-agent.pid).
#   provisional_agent_deb.sh BUILD_DIR VERSION OUT_DIR
set -euo pipefail
build="$1" version="$2" out="$3"
root=$(cd "$(dirname "$0")/../.." && pwd)
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
install -D -m 0755 "$build/deltasync-agent" "$stage/usr/bin/deltasync-agent"
strip --strip-unneeded "$stage/usr/bin/deltasync-agent"
install -D -m 0644 "$root/deploy/agent.example.toml" "$stage/etc/deltasync/agent.toml"
mkdir -p "$stage/DEBIAN"
cat > "$stage/DEBIAN/control" <<CTL
Package: deltasync-agent
Version: $version
Architecture: amd64
Maintainer: deltasync <deltasync@localhost>
Depends: adduser
Description: deltasync agent (provisional test package)
CTL
echo /etc/deltasync/agent.toml > "$stage/DEBIAN/conffiles"
cat > "$stage/DEBIAN/postinst" <<'SH'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  getent passwd deltasync >/dev/null || adduser --system --group --quiet --home /var/lib/deltasync --no-create-home deltasync
  install -d -o deltasync -g deltasync -m 0750 /var/lib/deltasync
fi
SH
cat > "$stage/DEBIAN/prerm" <<'SH'
#!/bin/sh
set -e
if [ ! -d /run/systemd/system ] && [ -f /run/deltasync/deltasync-agent.pid ]; then
  start-stop-daemon --stop --quiet --pidfile /run/deltasync/deltasync-agent.pid --retry TERM/30/KILL/5 --remove-pidfile || true
fi
SH
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm"
mkdir -p "$out"
dpkg-deb --root-owner-group -Zgzip --build "$stage" "$out/deltasync-agent_${version}_amd64.deb" >/dev/null
echo "$out/deltasync-agent_${version}_amd64.deb"
