#!/usr/bin/env bash
# Builds the Debian packages deltasync-agent, deltasync-hub and deltasync (the
# CLI) from the binaries of a build directory, with dpkg-deb from a staged
# tree (no debian/rules, no rebuild: what is packaged is what was tested).
# See --help; docs/operations.md, "Install from the Debian packages".
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: bash deploy/debian/build-packages.sh [--build-dir DIR] [--version VERSION] [--out DIR]

Packages the binaries of a deltasync build directory as
  deltasync-agent_<version>_<arch>.deb   /usr/bin/deltasync-agent, /etc/deltasync/agent.toml,
                                         /lib/systemd/system/deltasync-agent.service,
                                         deltasync-agent(8)
  deltasync-hub_<version>_<arch>.deb     /usr/bin/deltasync-hub, /etc/deltasync/hub.toml,
                                         /lib/systemd/system/deltasync-hub.service,
                                         deltasync-hub(8)
  deltasync_<version>_<arch>.deb         /usr/bin/deltasync (the operator and producer CLI),
                                         deltasync(1)
and prints the path of each .deb, one per line, on stdout.

  --build-dir DIR    the CMake build directory holding deltasync-agent, deltasync-hub
                     and deltasync, and their manual pages in man/ (default: build)
  --version VERSION  the Debian version of the packages (default: the version the
                     binaries report with --version). Overriding it makes an "older"
                     and a "newer" package from the same binaries, e.g. for upgrade tests.
  --out DIR          where the .deb files go (default: <build-dir>/packages)
  -h, --help         this text

Exit codes: 0 built, 1 a build step failed, 2 usage error (bad option or version,
missing binary or tool).
EOF
}

die_usage() { echo "build-packages: $*" >&2; echo "Try --help." >&2; exit 2; }
die() { echo "build-packages: $*" >&2; exit 1; }

here="$(cd "$(dirname "$0")" && pwd)"
source_dir="$(cd "$here/../.." && pwd)"
build_dir=build
version=
out_dir=
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) [ $# -ge 2 ] || die_usage "--build-dir needs a directory"; build_dir="$2"; shift 2 ;;
    --version) [ $# -ge 2 ] || die_usage "--version needs a version"; version="$2"; shift 2 ;;
    --out) [ $# -ge 2 ] || die_usage "--out needs a directory"; out_dir="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die_usage "unknown argument '$1'" ;;
  esac
done

for tool in dpkg-deb dpkg-shlibdeps strip gzip; do
  command -v "$tool" >/dev/null || die_usage "$tool not found: run deploy/install-deps.sh"
done
[ -d "$build_dir" ] || die_usage "build directory '$build_dir' does not exist (build first: deploy/build.sh)"
build_dir="$(cd "$build_dir" && pwd)"
for b in deltasync-agent deltasync-hub deltasync; do
  [ -x "$build_dir/$b" ] || die_usage "$build_dir/$b is missing: build first (deploy/build.sh)"
done
# The manual pages the build generates from the binaries' --help (target
# man_pages, deploy/man/make-man-page.sh); older than its binary = stale.
for page in deltasync-agent.8 deltasync-hub.8 deltasync.1; do
  [ -f "$build_dir/man/$page" ] || die_usage "$build_dir/man/$page is missing: build first (deploy/build.sh)"
  [ "$build_dir/man/$page" -nt "$build_dir/${page%.*}" ] ||
    die_usage "$build_dir/man/$page is older than its binary: build again (deploy/build.sh)"
done
if [ -z "$version" ]; then
  version="$("$build_dir/deltasync" --version | awk '{print $2}')"
fi
dpkg --validate-version "$version" 2>/dev/null || die_usage "'$version' is not a valid Debian version"
[ -n "$out_dir" ] || out_dir="$build_dir/packages"
mkdir -p "$out_dir"
out_dir="$(cd "$out_dir" && pwd)"

arch="$(dpkg --print-architecture)"
maintainer="${DELTASYNC_MAINTAINER:-deltasync maintainers <maintainers@deltasync.invalid>}"
# Reproducible: the changelog date is the last commit's (or SOURCE_DATE_EPOCH).
epoch="${SOURCE_DATE_EPOCH:-$(git -C "$source_dir" log -1 --format=%ct 2>/dev/null || date +%s)}"
export SOURCE_DATE_EPOCH="$epoch"

work="$(mktemp -d "$out_dir/.stage.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/debian"
# dpkg-shlibdeps wants a debian/control beside the staged trees.
printf 'Source: deltasync\n\nPackage: deltasync\nArchitecture: any\n' > "$work/debian/control"

# The packaged configuration: the example with the data path under
# /var/lib/deltasync/<component> and a header saying what to edit. Fails
# when the example no longer has the line rewritten, so the two cannot drift.
make_config() {  # component example header_file sed_script... -> stdout
  local component="$1" example="$2" header="$3"
  shift 3
  local text
  text="$(cat "$example")"
  for expr in "$@"; do
    local from="${expr%%|*}"
    grep -qxF -- "$from" <<<"$text" || die "$example: expected the line '$from' (update make_config)"
    text="$(awk -v from="$from" -v to="${expr#*|}" '$0 == from { print to; next } { print }' <<<"$text")"
  done
  cat "$header"
  printf '%s\n' "$text"
}

# Stages the common parts of package $1 (its doc directory); $2 = description.
stage_common() {
  local pkg="$1" root="$work/debian/$1"
  install -d -m 0755 "$root/usr/share/doc/$pkg" "$root/DEBIAN"
  sed "s/@YEAR@/$(date -u -d "@$epoch" +%Y)/" "$here/copyright" > "$root/usr/share/doc/$pkg/copyright"
  chmod 0644 "$root/usr/share/doc/$pkg/copyright"
  # Policy 12.7: changelog.Debian.gz for a Debian revision (1.2-1), changelog.gz
  # for a native version (1.2).
  local changelog=changelog.gz
  case "$version" in *-*) changelog=changelog.Debian.gz ;; esac
  {
    printf '%s (%s) unstable; urgency=medium\n\n' "$pkg" "$version"
    printf '  * Built from the deltasync sources by deploy/debian/build-packages.sh.\n\n'
    printf ' -- %s  %s\n' "$maintainer" "$(date -R -u -d "@$epoch")"
  } | gzip -9n > "$root/usr/share/doc/$pkg/$changelog"
  chmod 0644 "$root/usr/share/doc/$pkg/$changelog"
  if [ -f "$here/$pkg.lintian-overrides" ]; then
    install -d -m 0755 "$root/usr/share/lintian/overrides"
    install -m 0644 "$here/$pkg.lintian-overrides" "$root/usr/share/lintian/overrides/$pkg"
  fi
}

stage_binary() {  # pkg binary section
  local root="$work/debian/$1" mandir="$work/debian/$1/usr/share/man/man$3"
  install -d -m 0755 "$root/usr/bin" "$mandir"
  # As dh_strip does: no debug info or build notes in the package.
  strip --strip-unneeded --remove-section=.comment --remove-section=.note \
    -o "$root/usr/bin/$2" "$build_dir/$2"
  chmod 0755 "$root/usr/bin/$2"
  # As dh_installman and dh_compress do: the page, gzip -9n.
  gzip -9n < "$build_dir/man/$2.$3" > "$mandir/$2.$3.gz"
  chmod 0644 "$mandir/$2.$3.gz"
}

stage_server() {  # pkg component config example
  local pkg="$1" component="$2" config="$3" example="$4" other
  local root="$work/debian/$pkg"
  other=$([ "$component" = hub ] && echo deltasync-agent || echo deltasync-hub)
  stage_binary "$pkg" "$pkg" 8
  install -d -m 0755 "$root/etc/deltasync" "$root/lib/systemd/system"
  install -m 0644 "$source_dir/deploy/systemd/$pkg.service" "$root/lib/systemd/system/$pkg.service"
  for script in postinst prerm postrm; do
    sed -e "s/@PACKAGE@/$pkg/g" -e "s/@COMPONENT@/$component/g" -e "s/@CONFIG@/$config/g" \
        -e "s/@OTHER@/$other/g" "$here/$script.in" > "$root/DEBIAN/$script"
    chmod 0755 "$root/DEBIAN/$script"
  done
  echo "/etc/deltasync/$config" > "$root/DEBIAN/conffiles"
  chmod 0644 "$root/DEBIAN/conffiles"
}

stage_common deltasync-agent
stage_server deltasync-agent agent agent.toml "$source_dir/deploy/agent.example.toml"
make_config agent "$source_dir/deploy/agent.example.toml" "$here/agent.toml.header" \
  'path = "data/replica.db"|path = "/var/lib/deltasync/agent/replica.db"' \
  > "$work/debian/deltasync-agent/etc/deltasync/agent.toml"

stage_common deltasync-hub
stage_server deltasync-hub hub hub.toml "$source_dir/deploy/hub.example.toml"
make_config hub "$source_dir/deploy/hub.example.toml" "$here/hub.toml.header" \
  'path = "data/hub.db"|path = "/var/lib/deltasync/hub/hub.db"' \
  'listen = "127.0.0.1:8080"|listen = ""' \
  'token = "replace-with-a-long-random-secret"|# token = "<at least 16 characters: openssl rand -hex 24>"' \
  > "$work/debian/deltasync-hub/etc/deltasync/hub.toml"

stage_common deltasync
stage_binary deltasync deltasync 1

# The shipped configurations must load (a typo in a rewrite is caught here).
"$build_dir/deltasync-agent" --check-config --config "$work/debian/deltasync-agent/etc/deltasync/agent.toml" \
  >/dev/null || die "the packaged agent.toml does not load"
"$build_dir/deltasync-hub" --check-config --config "$work/debian/deltasync-hub/etc/deltasync/hub.toml" \
  >/dev/null || die "the packaged hub.toml does not load"
chmod 0644 "$work"/debian/deltasync-*/etc/deltasync/*.toml

write_control() {  # pkg extra_depends recommends description_file
  local pkg="$1" extra="$2" recommends="$3" description="$4" root="$work/debian/$1" shlibs depends
  local binaries=("$root"/usr/bin/*)
  shlibs="$(cd "$work" && dpkg-shlibdeps -O "${binaries[@]/#/-e}")" ||
    die "dpkg-shlibdeps failed for $pkg"
  depends="${shlibs#shlibs:Depends=}"
  [ -n "$extra" ] && depends="$depends, $extra"
  (cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
    > "$root/DEBIAN/md5sums"
  chmod 0644 "$root/DEBIAN/md5sums"
  {
    echo "Package: $pkg"
    echo "Version: $version"
    echo "Architecture: $arch"
    echo "Maintainer: $maintainer"
    echo "Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)"
    echo "Depends: $depends"
    [ -n "$recommends" ] && echo "Recommends: $recommends"
    echo "Section: net"
    echo "Priority: optional"
    cat "$description"
  } > "$root/DEBIAN/control"
  chmod 0644 "$root/DEBIAN/control"
}

write_control deltasync-agent "adduser" "" "$here/deltasync-agent.description"
write_control deltasync-hub "adduser" "nats-server" "$here/deltasync-hub.description"
write_control deltasync "" "" "$here/deltasync.description"

for pkg in deltasync-agent deltasync-hub deltasync; do
  deb="$out_dir/${pkg}_${version}_${arch}.deb"
  # --root-owner-group: every file root:root without fakeroot; the service
  # user's ownership is set by postinst. gzip: a few times faster than xz,
  # which matters on the 2-core CI running the tests.
  dpkg-deb --root-owner-group -Zgzip --build "$work/debian/$pkg" "$deb" >/dev/null ||
    die "dpkg-deb failed for $pkg"
  echo "$deb"
done
