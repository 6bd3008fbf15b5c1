#!/usr/bin/env bash
# lintian on the three packages, built once with a native version (1.2:
# changelog.gz) and once with a Debian revision (1.2-1: changelog.Debian.gz).
# Fails on any error or warning tag that deploy/debian/*.lintian-overrides
# does not explain. Info and pedantic tags are printed, not fatal.
#
# Usage: lintian_test.sh BUILD_DIR
set -euo pipefail

build_dir="${1:?usage: lintian_test.sh BUILD_DIR}"
source_dir="$(cd "$(dirname "$0")/../.." && pwd)"
command -v lintian >/dev/null || { echo "FAIL: lintian is not installed (deploy/install-deps.sh)" >&2; exit 1; }
work="$(mktemp -d /tmp/deltasync-lintian-test.XXXXXX)"
trap 'rm -rf "$work"' EXIT

bash "$source_dir/deploy/debian/build-packages.sh" --build-dir "$build_dir" --version 0.0.1 --out "$work/native" >/dev/null
bash "$source_dir/deploy/debian/build-packages.sh" --build-dir "$build_dir" --version 0.0.1-1 --out "$work/revision" \
  >/dev/null
# --fail-on: exit 1 on an error or warning tag not overridden; anything else
# but 0 and 1 means lintian itself failed.
rc=0
lintian --info --pedantic --fail-on error,warning "$work"/native/*.deb "$work"/revision/*.deb \
  > "$work/lintian.out" 2>&1 || rc=$?
grep -v 'running with root privileges is not recommended' "$work/lintian.out" || true
case "$rc" in
  0) echo "lintian: no error or warning tag on the packages of 0.0.1 and 0.0.1-1" ;;
  1) echo "FAIL: lintian error or warning tags above, not explained by deploy/debian/*.lintian-overrides" >&2; exit 1 ;;
  *) echo "FAIL: lintian failed (exit $rc)" >&2; exit 1 ;;
esac
