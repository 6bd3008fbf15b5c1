#!/usr/bin/env bash
# The manual pages the build generates (deploy/man/make-man-page.sh) against
# the binaries they describe: every subcommand, at every depth, has its
# subsection in COMMANDS, and every long option any --help lists is in the
# page; man renders each page without a warning. (lintian_test.sh checks the
# pages as packaged.)
#
# Usage: man_pages_test.sh BUILD_DIR
set -euo pipefail

build_dir="${1:?usage: man_pages_test.sh BUILD_DIR}"
command -v man >/dev/null || { echo "FAIL: man is not installed (man-db)" >&2; exit 1; }
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# Checks the command line "$@" (a binary and subcommands) against `page`.
check_command() {  # page words...
  local page="$1" help sub option
  shift
  help="$("$build_dir/$1" "${@:2}" --help)" || { fail "'$* --help' failed"; return; }
  if [ $# -gt 1 ]; then
    grep -qxF ".SS \"$(sed 's/-/\\-/g' <<<"$*")\"" "$page" || fail "$page: no subsection for '$*'"
  fi
  while read -r option; do
    grep -qF -- "$(sed 's/-/\\-/g' <<<"$option")" "$page" || fail "$page: '$*' option $option is missing"
  done < <(grep -oE -- '(^|[ ,])--[a-z][a-z0-9-]*' <<<"$help" | sed 's/^[ ,]//' | sort -u)
  while read -r sub; do
    [ -n "$sub" ] && check_command "$page" "$@" "$sub"
  done < <(awk '/^Subcommands:$/ { on = 1; next } /^$/ { on = 0 } on && /^  [a-z]/ { print $1 }' <<<"$help")
}

for page in deltasync.1 deltasync-hub.8 deltasync-agent.8; do
  file="$build_dir/man/$page"
  [ -f "$file" ] || { fail "$file is missing (target man_pages)"; continue; }
  check_command "$file" "${page%.*}"
  warnings="$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$file" 2>&1 >/dev/null)" || fail "man -l $file failed"
  [ -z "$warnings" ] || fail "man warns about $page: $warnings"
done
[ "$failures" -eq 0 ] || exit 1
echo "manual pages: every subcommand and option of deltasync, deltasync-hub and deltasync-agent present"
