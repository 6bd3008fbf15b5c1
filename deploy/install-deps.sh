#!/usr/bin/env bash
# Installs every build, run and test dependency of deltasync from Debian 12
# packages. Idempotent: when everything is already installed it touches nothing
# and does not even refresh the package lists.
set -euo pipefail

packages=(
  # toolchain
  cmake g++ make pkg-config
  # message engine: broker and C client (JetStream)
  nats-server libnats-dev
  # storage, codec, networking
  libsqlite3-dev sqlite3 libmsgpack-cxx-dev libboost-dev libasio-dev
  # helper libraries: logging, command lines, config files, JSON, HTTP, nkeys
  libspdlog-dev libfmt-dev libcli11-dev libtomlplusplus-dev nlohmann-json3-dev
  librestinio-dev libsodium-dev
  # OpenSSL headers: the agent sets libcrypto's random method (cnats loads it);
  # the hub's HTTPS listener uses libssl
  libssl-dev
  # the CLI's HTTP(S) client
  libcurl4-openssl-dev
  # tests make a private CA and certificates with the openssl command
  openssl
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # readiness for systemd's Type=notify units (sd_notify, shared/service_notify.h)
  libsystemd-dev
  # Debian packages (deploy/debian/build-packages.sh: dpkg-deb, dpkg-shlibdeps)
  # and their tests: lintian, systemd-analyze verify on the units (systemd is
  # only installed for that tool, never booted), adduser for the postinst
  dpkg-dev lintian systemd adduser
  # the manual pages deltasync(1), deltasync-hub(8), deltasync-agent(8) are
  # generated from the binaries' --help at build time (deploy/man)
  help2man
  # fuzzing (deploy/build-fuzz.sh, tests/fuzz/): libFuzzer needs clang;
  # libclang-rt-14-dev holds the libFuzzer, ASan and UBSan runtimes that
  # -fsanitize=fuzzer,address,undefined links (libfuzzer-14-dev, a standalone
  # libFuzzer.a, is not needed)
  clang-14 libclang-rt-14-dev
  # used by scripts: free-port lookup, waiting on sockets
  python3 procps curl
  # deploy/rollout reaches the fleet over ssh; its test (tests/rollout) runs
  # an sshd per host, each host a network namespace (ip) on a bridge
  openssh-client openssh-server iproute2
  # the clock-skew fault tests (tests/faults/clock_skew_test.cc) give the hub
  # or an agent a wrong or stepping wall clock with libfaketime
  faketime
  # the metrics test scrapes a real hub and agent with Prometheus and checks
  # the exposition, deploy/prometheus/ rules and config with promtool (same package)
  prometheus
  # the dashboard's browser test (tests/browser, label browser) runs the hub's
  # page in Debian's chromium (/usr/bin/chromium), driven by playwright-core
  # from npm (below): never a browser downloaded by a test tool
  chromium
  # node runs that driver (tests/browser); the locked playwright-core needs
  # Node.js 18 or later: Debian 12's own nodejs (18) will do
  nodejs
)
# npm installs the locked playwright-core: part of nodejs where that comes
# from NodeSource, a package of its own in Debian
if ! command -v npm >/dev/null; then packages+=(npm); fi

repo="$(cd "$(dirname "$0")/.." && pwd)"

# playwright-core for the browser test, exactly the version locked in
# tests/browser/package-lock.json (`npm ci`), into tests/browser/node_modules.
# It downloads no browser (PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD makes sure); the
# test launches Debian's chromium. Skipped when that version is there.
install_browser_test_packages() {
  local dir="$repo/tests/browser"
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "install-deps: node and npm (Node.js 18 or later) are needed for the browser test (tests/browser)" \
         "and were not found in PATH" >&2
    exit 1
  fi
  if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 18 ]; then
    echo "install-deps: the browser test (tests/browser) needs Node.js 18 or later for playwright-core;" \
         "this node is $(node --version)" >&2
    exit 1
  fi
  local want have
  want="$(node -p 'require(process.argv[1]).packages["node_modules/playwright-core"].version' "$dir/package-lock.json")"
  have="$(node -p 'require(process.argv[1]).version' "$dir/node_modules/playwright-core/package.json" 2>/dev/null || true)"
  if [ "$want" = "$have" ]; then return 0; fi
  echo "install-deps: installing playwright-core $want for tests/browser (npm ci)"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix "$dir" --no-audit --no-fund
}

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  install_browser_test_packages
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update
$sudo apt-get install -y --no-install-recommends "${missing[@]}"
install_browser_test_packages
