#!/usr/bin/env bash
# Configures and builds the libFuzzer targets (tests/fuzz/) with clang-14,
# AddressSanitizer and UndefinedBehaviorSanitizer, in their own build
# directory: ./build-fuzz, or $DELTASYNC_FUZZ_BUILD_DIR. Only the shared
# library and the few sources the targets need are compiled; the main build
# (deploy/build.sh, g++) is untouched. Warnings are errors.
# Run them with: ctest --test-dir build-fuzz -L fuzz (docs/reliability.md).
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  --help|-h)
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
    echo "usage: deploy/build-fuzz.sh   (environment: DELTASYNC_FUZZ_BUILD_DIR, DELTASYNC_JOBS, DELTASYNC_FUZZ_CMAKE_ARGS)"
    exit 0 ;;
  "") ;;
  *) echo "build-fuzz: unexpected argument '$1' (see --help)" >&2; exit 2 ;;
esac

bash deploy/install-deps.sh
build_dir="${DELTASYNC_FUZZ_BUILD_DIR:-build-fuzz}"
jobs="${DELTASYNC_JOBS:-2}"
for tool in clang++-14; do
  if ! command -v "$tool" >/dev/null; then
    echo "build-fuzz: $tool not found (deploy/install-deps.sh installs clang-14)" >&2
    exit 1
  fi
done
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_COMPILER=clang++-14 \
      -DDELTASYNC_FUZZ=ON -DDELTASYNC_WERROR=ON ${DELTASYNC_FUZZ_CMAKE_ARGS:-}
cmake --build "$build_dir" -j"$jobs"
