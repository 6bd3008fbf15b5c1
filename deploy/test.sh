#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, and runs every
# test (unit, integration against a real nats-server, e2e) with CTest, then
# the fuzz targets (label fuzz: 20 s each, clang build in build-fuzz/, see
# docs/reliability.md). Extra arguments go to both ctest runs, e.g.
# `bash deploy/test.sh -L unit` or `bash deploy/test.sh -L fuzz`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/build.sh
bash deploy/build-fuzz.sh
build_dir="${DELTASYNC_BUILD_DIR:-build}"
fuzz_build_dir="${DELTASYNC_FUZZ_BUILD_DIR:-build-fuzz}"
status=0
(cd "$build_dir" && ctest --output-on-failure --timeout 300 -j"${DELTASYNC_JOBS:-2}" "$@") || status=$?
(cd "$fuzz_build_dir" && ctest --output-on-failure -j"${DELTASYNC_JOBS:-2}" "$@") || status=$?
exit "$status"
