#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, and runs every
# test (unit, integration against a real nats-server, e2e) with CTest.
# Extra arguments go to ctest, e.g. `bash deploy/test.sh -L unit`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/build.sh
build_dir="${DELTASYNC_BUILD_DIR:-build}"
cd "$build_dir"
ctest --output-on-failure --timeout 300 -j"${DELTASYNC_JOBS:-2}" "$@"
