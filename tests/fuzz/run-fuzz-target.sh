#!/usr/bin/env bash
# Runs one libFuzzer target for a fixed time on a fresh copy of its seed
# corpus (the committed corpus is never written), with ASan and UBSan built
# in. Fails on any crash, sanitizer report, failed property, leak, or input
# slower than the per-input timeout. CTest runs it for every target (label
# fuzz); docs/reliability.md has the long-run command.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: run-fuzz-target.sh [--seconds N] [--timeout S] [--work DIR] BINARY CORPUS_DIR [-- LIBFUZZER_ARGS...]

  BINARY        a fuzz target from the fuzz build (build-fuzz/tests/fuzz/fuzz_<target>)
  CORPUS_DIR    its committed seed corpus (tests/fuzz/corpus/<target>); only read
  --seconds N   how long to fuzz (default 20)
  --timeout S   an input running longer than S seconds fails the run (default 10)
  --work DIR    where the corpus copy, new inputs and crash artifacts go; emptied
                first if a previous run made it, refused if it holds anything else (default: a new directory under ${TMPDIR:-/tmp}, removed
                when the run passes)

Exit status: 0 when the run ended without a finding, libFuzzer's non-zero
status otherwise (the failing input is kept in DIR/artifacts/), 2 on bad usage.
USAGE
}

seconds=20
timeout=10
work=""
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) usage; exit 0 ;;
    --seconds) seconds="${2:?--seconds needs a value}"; shift 2 ;;
    --timeout) timeout="${2:?--timeout needs a value}"; shift 2 ;;
    --work) work="${2:?--work needs a value}"; shift 2 ;;
    --) break ;;
    -*) echo "run-fuzz-target: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [ $# -lt 2 ]; then usage >&2; exit 2; fi
binary="$1"
corpus="$2"
shift 2
if [ "${1:-}" = "--" ]; then shift; fi
for n in "$seconds" "$timeout"; do
  case "$n" in ''|*[!0-9]*) echo "run-fuzz-target: '$n' is not a whole number of seconds" >&2; exit 2 ;; esac
done
if [ ! -x "$binary" ]; then
  echo "run-fuzz-target: no fuzz target at $binary (build it with: bash deploy/build-fuzz.sh)" >&2
  exit 2
fi
if [ ! -d "$corpus" ]; then
  echo "run-fuzz-target: no seed corpus directory $corpus" >&2
  exit 2
fi

remove_work=0
if [ -z "$work" ]; then
  work="$(mktemp -d "${TMPDIR:-/tmp}/fuzz-run.XXXXXX")"
  remove_work=1
fi
# Only a directory this script made (it leaves a marker) is emptied.
if [ -d "$work" ] && [ -n "$(ls -A "$work")" ] && [ ! -e "$work/.fuzz-run" ]; then
  echo "run-fuzz-target: --work $work exists, is not empty and is not a previous run's directory" >&2
  exit 2
fi
rm -rf "$work"
mkdir -p "$work/corpus" "$work/artifacts"
touch "$work/.fuzz-run"
cp -R "$corpus/." "$work/corpus/"

# Leaks fail the run; UBSan reports abort (the build has
# -fno-sanitize-recover=undefined) and print a stack.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

status=0
"$binary" -max_total_time="$seconds" -timeout="$timeout" -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/" "$@" "$work/corpus" || status=$?

if [ "$status" -ne 0 ]; then
  echo "run-fuzz-target: $(basename "$binary") FAILED (exit $status); failing input(s):" >&2
  ls -l "$work/artifacts/" >&2 || true
  echo "reproduce with: $binary <input>" >&2
  exit "$status"
fi
if [ "$remove_work" -eq 1 ]; then rm -rf "$work"; fi
exit 0
