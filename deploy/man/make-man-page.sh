#!/usr/bin/env bash
# Writes the manual page of one deltasync binary from what the binary itself
# prints: help2man turns `PROGRAM --help` and `--version` into the page, and
# every subcommand's `--help` (recursively: `deltasync creds add --help`)
# becomes a subsection of COMMANDS, so the page says what the binary it
# ships with says. deploy/man/PROGRAM.h2m adds what --help cannot
# (NAME, EXIT STATUS, FILES, SEE ALSO). Run by the build (CMakeLists.txt,
# target man_pages); see --help.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bash deploy/man/make-man-page.sh --binary PATH --section N --out FILE

Writes the manual page of the deltasync binary PATH (deltasync,
deltasync-hub or deltasync-agent) to FILE, in section N, with help2man from
the binary's --help and --version, each subcommand's --help as a subsection
of COMMANDS, and deploy/man/<name>.h2m for the rest.

  --binary PATH   the built binary
  --section N     the manual section: 1 (commands) or 8 (system services)
  --out FILE      the page to write (replaced only when complete)
  -h, --help      this text

The date in the page is SOURCE_DATE_EPOCH when set, else the last commit's.

Exit codes: 0 written, 1 a step failed (the binary's --help, help2man),
2 usage error (bad option, missing binary, include file or help2man).
USAGE
}

die_usage() { echo "make-man-page: $*" >&2; echo "Try --help." >&2; exit 2; }
die() { echo "make-man-page: $*" >&2; exit 1; }

here="$(cd "$(dirname "$0")" && pwd)"
binary= section= out=
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) [ $# -ge 2 ] || die_usage "--binary needs a path"; binary="$2"; shift 2 ;;
    --section) [ $# -ge 2 ] || die_usage "--section needs a number"; section="$2"; shift 2 ;;
    --out) [ $# -ge 2 ] || die_usage "--out needs a file"; out="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die_usage "unknown argument '$1'" ;;
  esac
done
[ -n "$binary" ] || die_usage "--binary is required"
[ -n "$out" ] || die_usage "--out is required"
case "$section" in 1|8) ;; *) die_usage "--section must be 1 or 8, not '$section'" ;; esac
[ -x "$binary" ] || die_usage "$binary is not an executable (build first)"
command -v help2man >/dev/null || die_usage "help2man not found: run deploy/install-deps.sh"
name="$(basename "$binary")"
include="$here/$name.h2m"
[ -f "$include" ] || die_usage "no include file $include for '$name'"

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH="$(git -C "$here" log -1 --format=%ct 2>/dev/null || date +%s)"
fi
export SOURCE_DATE_EPOCH
# The binary is run by its bare name (found through PATH), so its usage
# lines say `deltasync push`, not the build directory's path.
PATH="$(cd "$(dirname "$binary")" && pwd):$PATH"
export PATH

work="$(mktemp -d "${TMPDIR:-/tmp}/deltasync-man.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# roff from one CLI11 --help text (stdin): the description and usage as
# paragraphs, each option, positional and subcommand as a tagged paragraph
# (tag in bold), headings (Options:, Subcommands:) in italics. The -h,--help
# entry every subcommand repeats is left out.
format_help() {
  awk '
    function esc(s) {
      gsub(/\\/, "\\e", s); gsub(/-/, "\\-", s)
      if (s ~ /^[.\047]/) s = "\\&" s
      return s
    }
    function flush() {
      if (tag != "") { print ".TP"; print tag; print (desc == "" ? "\\&" : desc) }
      tag = ""; desc = ""
    }
    /^$/ { flush(); next }
    /^[A-Z][A-Za-z ]*:$/ { flush(); print ".PP"; print "\\fI" esc($0) "\\fR"; next }
    /^Usage: / { flush(); sub(/^Usage: /, ""); print ".PP"; print "Usage: \\fB" esc($0) "\\fR"; next }
    /^  [^ ]/ {
      flush()
      line = substr($0, 3)
      key = line; d = ""
      if (match(line, /   +/)) { key = substr(line, 1, RSTART - 1); d = substr(line, RSTART + RLENGTH) }
      if (key ~ /^-h,--help( |$)/) { skip = 1; next }
      skip = 0
      first = key; rest = ""
      if (match(key, / /)) { first = substr(key, 1, RSTART - 1); rest = substr(key, RSTART) }
      tag = "\\fB" esc(first) "\\fR" esc(rest); desc = esc(d)
      next
    }
    /^   +[^ ]/ {
      if (skip) next
      t = $0; sub(/^ +/, "", t)
      if (tag != "") { desc = (desc == "" ? esc(t) : desc " " esc(t)) } else { print esc(t) }
      next
    }
    { flush(); print ".PP"; print esc($0) }
    END { flush() }
  '
}

# The subcommands a --help text (stdin) lists.
subcommands_of() {
  awk '/^Subcommands:$/ { in_list = 1; next } /^$/ { in_list = 0 } in_list && /^  [a-z]/ { print $1 }'
}

# COMMANDS: one subsection per subcommand, depth first, in --help's order.
commands() {  # words of the command line so far
  local help sub
  help="$("$@" --help)" || die "'$* --help' failed"
  while read -r sub; do
    [ -n "$sub" ] || continue
    local sub_help
    sub_help="$("$@" "$sub" --help)" || die "'$* $sub --help' failed"
    printf '.SS "%s"\n' "$(sed 's/-/\\-/g' <<<"$* $sub")"
    format_help <<<"$sub_help"
    commands "$@" "$sub"
  done < <(subcommands_of <<<"$help")
}

{
  cat "$include"
  body="$(commands "$name")"
  if [ -n "$body" ]; then
    printf '\n[COMMANDS]\n%s\n' "$body"
  fi
} > "$work/include.h2m"

help2man --no-info --section="$section" --include="$work/include.h2m" --output="$work/page" "$name" ||
  die "help2man failed for $name"
mv -f "$work/page" "$out"
