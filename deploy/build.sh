#!/usr/bin/env bash
# Installs missing Debian packages, then configures and builds deltasync in
# ./build (or $DELTASYNC_BUILD_DIR), and packages it as .deb files in
# <build>/packages (deploy/debian/build-packages.sh). Warnings are errors.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh
build_dir="${DELTASYNC_BUILD_DIR:-build}"
jobs="${DELTASYNC_JOBS:-2}"
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE="${DELTASYNC_BUILD_TYPE:-RelWithDebInfo}" \
      -DDELTASYNC_WERROR=ON ${DELTASYNC_CMAKE_ARGS:-}
cmake --build "$build_dir" -j"$jobs"
bash deploy/debian/build-packages.sh --build-dir "$build_dir"
