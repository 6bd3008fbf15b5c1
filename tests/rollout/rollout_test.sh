#!/usr/bin/env bash
# deploy/rollout for real: five hosts (network + mount namespaces, each with
# its own sshd, dpkg database, /etc/deltasync and /var/lib/deltasync) reached
# by ssh with a generated key and a generated known_hosts; nats-server with
# per-identity credentials and the hub run on the machine, on the hosts'
# bridge. The agents run from the installed package on each host.
#
#   1. --dry-run prints the plan (canary, batches) and installs nothing; a
#      host that does not answer and one whose key is not in known_hosts are
#      shown unreachable; a bad inventory is refused with its line (exit 2).
#   2. Rollout of 1.0.0 to h1..h5 in batches of 2, h3 broken (its replica
#      path is a directory: the agent cannot start): h1 passes, h3 fails its
#      gate, the rollout stops (exit 1), reports h3 and why, removes the
#      package from h3 (it had none) and leaves h4, h5 untouched.
#   3. The four good hosts: a re-run of 1.0.0 skips h1, h2 and installs h4,
#      h5; the upgrade to 1.1.0 stops at h4, whose replica was changed
#      behind deltasync's back (verify fails), and puts 1.1.0 back to 1.0.0
#      there; after verify --repair the upgrade finishes, and a last re-run
#      skips every host.
# Every step checks the hosts' dpkg databases and that the machine's own is
# untouched. Needs root. Usage: rollout_test.sh BUILD_DIR
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "${1:?usage: rollout_test.sh BUILD_DIR}" && pwd)
rollout="$root/deploy/rollout/rollout"
source "$here/fleet.sh"

[ "$(id -u)" -eq 0 ] || { echo "rollout_test: needs root (network and mount namespaces)" >&2; exit 1; }
for tool in ip unshare /usr/sbin/sshd ssh ssh-keygen nats-server dpkg-deb sqlite3 curl; do
  command -v "$tool" >/dev/null || { echo "rollout_test: $tool is missing (bash deploy/install-deps.sh)" >&2; exit 1; }
done

# A run killed by a ctest timeout leaves its fleet behind (see the script).
bash "$here/reap_stale_fleets.sh"
work=$(mktemp -d /tmp/ds-rollout-test.XXXXXX)
nats_pid="" hub_pid=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ $rc -ne 0 ]; then
    echo "--- nats-server log (tail)"; tail -5 "$work/nats.log" 2>/dev/null
    echo "--- hub log (tail)"; tail -20 "$work/hub.log" 2>/dev/null
    for i in 1 2 3 4 5; do
      [ -n "${FLEET_HOST_IP[$i]:-}" ] || continue
      echo "--- h$i agent log (tail)"; tail -5 "$(fleet_view "$i")/var/log/deltasync/agent.log" 2>/dev/null
    done
  fi
  fleet_down
  for pid in $hub_pid $nats_pid; do kill -TERM "$pid" 2>/dev/null; done
  for pid in $hub_pid $nats_pid; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  done
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "rollout_test: FAIL: $*" >&2; exit 1; }
step() { printf '\n=== [%s] %s\n' "$(date +%T)" "$*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() {  # wait_for WHAT SECONDS COMMAND...
  local what="$1" secs="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "timed out after ${secs} s waiting for $what"
    sleep 0.2
  done
}
host_version() {  # the deltasync-agent version in host i's own dpkg database, or "none"
  local v; v=$(fleet_ssh "$1" "dpkg-query -W -f='\${Status} \${Version}' deltasync-agent 2>/dev/null") || true
  case "$v" in "install ok installed "*) echo "${v##* }" ;; *) echo none ;; esac
}
expect_versions() {  # expect_versions V1 V2 ... (one per host)
  local i=1 want got
  for want in "$@"; do
    got=$(host_version "$i")
    [ "$got" = "$want" ] || fail "h$i: deltasync-agent $got installed, expected $want"
    i=$((i + 1))
  done
  echo "hosts' dpkg databases: $*"
}
expect_in() {  # expect_in FILE TEXT: the rollout's output says TEXT
  grep -qF -- "$2" "$1" || fail "the rollout's output lacks: $2"
}
machine_dpkg() { dpkg-query -W -f='${Status} ${Version}\n' deltasync-agent 2>/dev/null || echo absent; }
machine_before=$(machine_dpkg)

step "five hosts: network + mount namespaces, each with its own sshd"
fleet_up 5 || fail "fleet_up"
for i in 1 2 3 4 5; do echo "h$i: root@${FLEET_HOST_IP[$i]} (host key in the generated known_hosts)"; done
# Isolation: what dpkg writes on a host stays there.
fleet_ssh 1 'touch /var/lib/dpkg/ds-isolation-probe /etc/ds-isolation-probe' || fail "ssh to h1"
[ ! -e /var/lib/dpkg/ds-isolation-probe ] && [ ! -e /etc/ds-isolation-probe ] || fail "h1's /var/lib/dpkg or /etc is the machine's"
fleet_ssh 2 '[ ! -e /var/lib/dpkg/ds-isolation-probe ]' || fail "h2 sees h1's /var/lib/dpkg"
[ -e "$(fleet_view 1)/dpkg/ds-isolation-probe" ] || fail "h1's private /var/lib/dpkg is not its overlay"
fleet_ssh 1 'rm /var/lib/dpkg/ds-isolation-probe /etc/ds-isolation-probe'
# Every host starts without deltasync (whatever the machine has installed).
for i in 1 2 3 4 5; do
  fleet_ssh "$i" 'for p in deltasync-agent deltasync-hub deltasync; do
                    ! dpkg-query -W "$p" >/dev/null 2>&1 || dpkg --purge "$p" >/dev/null; done' || fail "h$i: purging deltasync"
done

step "credentials, nats-server and the hub on the machine (bridge address $FLEET_GATEWAY)"
creds="$work/creds"
# The hub and the producer; the rollout adds each agent (deltasync creds add --reload).
"$build/deltasync" creds init --dir "$creds" --hub hub --producer erp:prices,products > "$work/creds.log" 2>&1 ||
  fail "deltasync creds init: $(cat "$work/creds.log")"
nats_port=$(free_port); http_port=$(free_port)
cat > "$work/nats.conf" <<CONF  # include paths are relative to this file
listen: $FLEET_GATEWAY:$nats_port
pid_file: "$work/nats.pid"
jetstream { store_dir: "$work/js" }
include "creds/auth.conf"
CONF
nats-server -c "$work/nats.conf" > "$work/nats.log" 2>&1 &
nats_pid=$!
wait_for "nats-server" 20 bash -c "exec 3<>/dev/tcp/$FLEET_GATEWAY/$nats_port"
wait_for "nats-server's pid file" 10 test -s "$work/nats.pid"
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat > "$work/hub.toml" <<CONF
[hub]
name = "rollout-test"
[nats]
url = "nats://$FLEET_GATEWAY:$nats_port"
nkey_seed_file = "$creds/hub.nk"
[store]
path = "$work/hub.db"
[auth]
identities_file = "$creds/identities.json"
[http]
listen = "127.0.0.1:$http_port"
token = "$token"
[liveness]
heartbeat_interval_ms = 1000
dead_after = 3
[[types]]
name = "products"
key = "sku"
columns = [ { name = "name", type = "text" }, { name = "category", type = "text" },
            { name = "unit", type = "text" }, { name = "active", type = "bool" },
            { name = "attributes", type = "json" } ]
[[types]]
name = "prices"
key = "id"
partition = "store_id"
columns = [ { name = "store_id", type = "text" }, { name = "sku", type = "text" },
            { name = "price", type = "real" }, { name = "currency", type = "text" },
            { name = "valid_from", type = "integer" } ]
CONF
"$build/deltasync-hub" --config "$work/hub.toml" > "$work/hub.log" 2>&1 &
hub_pid=$!
export DELTASYNC_HUB="http://127.0.0.1:$http_port" DELTASYNC_TOKEN="$token"
wait_for "the hub to be ready" 30 curl -sf "$DELTASYNC_HUB/readyz"
for type in products prices; do
  "$build/deltasync" sample "$type" --articles 40 --stores 5 > "$work/$type.jsonl"
  "$build/deltasync" push --quiet --type "$type" --producer erp --nkey-seed "$creds/erp.nk" \
    --nats "nats://$FLEET_GATEWAY:$nats_port" "$work/$type.jsonl" || fail "push $type"
done

step "packages 1.0.0 and 1.1.0 of deltasync-agent"
for v in 1.0.0 1.1.0; do
  bash "$root/deploy/debian/build-packages.sh" --build-dir "$build" --version "$v" --out "$work/pkg-$v" \
    > "$work/pkg-$v.log" 2>&1 || fail "build-packages.sh --version $v: $(tail -5 "$work/pkg-$v.log")"
done
deb1="$work/pkg-1.0.0/deltasync-agent_1.0.0_amd64.deb"
deb2="$work/pkg-1.1.0/deltasync-agent_1.1.0_amd64.deb"
ls -1 "$deb1" "$deb2" || fail "no packages"

inv5="$work/inventory"
{
  echo "# host  ssh address  agent id  grants"
  for i in 1 2 3 4 5; do echo "h$i  root@${FLEET_HOST_IP[$i]}  store-$i  prices:store-$i,products"; done
} > "$inv5"
grep -v '^h3 ' "$inv5" > "$work/inventory4"
common=(--creds-dir "$creds" --nats-pidfile "$work/nats.pid" --nats-url "nats://$FLEET_GATEWAY:$nats_port"
        --ssh-identity "$FLEET_KEY" --ssh-known-hosts "$FLEET_KNOWN_HOSTS" --deltasync "$build/deltasync"
        --batch 2 --gate-timeout 45)
run_rollout() {  # run_rollout OUTFILE ARGS...: prints the output, returns the exit code
  local out="$1"; shift
  timeout 300 "$rollout" "$@" > "$out" 2>&1
  local rc=$?
  sed 's/^/  | /' "$out"
  return $rc
}

step "refused before anything happens: a bad inventory line, a bad --batch (exit 2)"
printf 'h1 root@%s store-1 prices:store-1\nh2 root@%s store-2\nh3 root@bad:host:99 store-3 prices\n' \
  "${FLEET_HOST_IP[1]}" "${FLEET_HOST_IP[2]}" > "$work/bad-inventory"
run_rollout "$work/out-bad" --inventory "$work/bad-inventory" --package "$deb1" "${common[@]}"; rc=$?
[ $rc -eq 2 ] || fail "a bad inventory: exit $rc, expected 2"
expect_in "$work/out-bad" "bad-inventory:2: expected 4 fields (host, ssh address, agent id, grants), found 3"
expect_in "$work/out-bad" "bad-inventory:3: ssh address 'root@bad:host:99': expected [user@]host[:port]"
run_rollout "$work/out-bad" --inventory "$inv5" --package "$deb1" "${common[@]}" --batch 0; rc=$?
[ $rc -eq 2 ] || fail "--batch 0: exit $rc, expected 2"
expect_versions none none none none none

step "--dry-run: the plan, nothing installed"
run_rollout "$work/out-dry" --inventory "$inv5" --package "$deb1" "${common[@]}" --dry-run; rc=$?
[ $rc -eq 0 ] || fail "dry run: exit $rc"
expect_in "$work/out-dry" "canary   h1"
expect_in "$work/out-dry" "batch 1  h2"
expect_in "$work/out-dry" "batch 1  h3"
expect_in "$work/out-dry" "batch 2  h5"
expect_in "$work/out-dry" "install 1.0.0 [start-stop-daemon]"
expect_versions none none none none none
# A host nobody answers for, and a host key the known_hosts file lacks: both
# are shown unreachable, with ssh's reason (the key is never accepted).
{ cat "$inv5"; echo "h6  root@$FLEET_NET.99  store-6  prices:store-6,products"; } > "$work/inventory6"
: > "$work/empty_known_hosts"
run_rollout "$work/out-dry6" --inventory "$work/inventory6" --package "$deb1" "${common[@]}" --dry-run --hosts h1,h6 \
  || fail "dry run with an unreachable host: exit $?"
expect_in "$work/out-dry6" "h6                   store-6              UNREACHABLE now: ssh root@$FLEET_NET.99"
run_rollout "$work/out-dry-key" --inventory "$inv5" --package "$deb1" "${common[@]}" --dry-run --hosts h1 \
  --ssh-known-hosts "$work/empty_known_hosts" || fail "dry run with an unknown host key: exit $?"
expect_in "$work/out-dry-key" "UNREACHABLE now: ssh root@${FLEET_HOST_IP[1]}: "
expect_in "$work/out-dry-key" "Host key verification failed"

step "rollout of 1.0.0 to five hosts, h3 broken (its replica path is a directory)"
fleet_ssh 3 'mkdir -p /var/lib/deltasync/agent/replica.db' || fail "breaking h3"
run_rollout "$work/out-1" --inventory "$inv5" --package "$deb1" "${common[@]}"; rc=$?
[ $rc -eq 1 ] || fail "rollout with a broken host: exit $rc, expected 1"
expect_in "$work/out-1" "[h1] gate passed"
expect_in "$work/out-1" "[h1] identity store-1 added to $creds (nats-server reloaded)"
expect_in "$work/out-1" "[h3] FAILED: health gate: the agent is not running on the host"
expect_in "$work/out-1" "[h3] rolled back: the agent package is removed (the host had none before)"
expect_in "$work/out-1" "STOPPED: h3 failed; not attempted: h4, h5"
grep -E '^  h4 .* not attempted$' "$work/out-1" >/dev/null || fail "the report does not say h4 was not attempted"
expect_versions 1.0.0 1.0.0 none none none
fleet_ssh 3 '[ ! -e /etc/deltasync/creds/store-3.nk ] && [ ! -e /usr/bin/deltasync-agent ]' ||
  fail "h3 still holds its seed or the agent after the rollback"
fleet_ssh 1 'start-stop-daemon --status --pidfile /run/deltasync/deltasync-agent.pid' || fail "h1's agent is not running"
[ "$(machine_dpkg)" = "$machine_before" ] || fail "the machine's own dpkg database changed: $(machine_dpkg)"

step "the four good hosts: re-run of 1.0.0 skips h1, h2 and installs h4, h5"
run_rollout "$work/out-2" --inventory "$work/inventory4" --package "$deb1" "${common[@]}"; rc=$?
[ $rc -eq 0 ] || fail "re-run of 1.0.0: exit $rc"
expect_in "$work/out-2" "[h1] skip: already at 1.0.0 and healthy"
expect_in "$work/out-2" "[h2] skip: already at 1.0.0 and healthy"
expect_in "$work/out-2" "[h5] gate passed"
expect_versions 1.0.0 1.0.0 none 1.0.0 1.0.0

step "upgrade to 1.1.0; h4's replica was changed behind deltasync's back: its gate fails, back to 1.0.0"
fleet_ssh 4 "sqlite3 /var/lib/deltasync/agent/replica.db \"UPDATE products SET name = 'changed by hand' WHERE sku = 'sku-00007'\"" ||
  fail "changing h4's replica"
run_rollout "$work/out-3" --inventory "$work/inventory4" --package "$deb2" "${common[@]}"; rc=$?
[ $rc -eq 1 ] || fail "upgrade with a diverged replica: exit $rc, expected 1"
expect_in "$work/out-3" "[h1] gate passed"
expect_in "$work/out-3" "key 'sku-00007': values differ"
expect_in "$work/out-3" "[h4] rolled back to 1.0.0; its agent is live again"
expect_in "$work/out-3" "not attempted: h5"
expect_versions 1.1.0 1.1.0 none 1.0.0 1.0.0

step "after deltasync verify --repair the upgrade finishes"
"$build/deltasync" verify --repair --quiet || fail "verify --repair"
run_rollout "$work/out-4" --inventory "$work/inventory4" --package "$deb2" "${common[@]}"; rc=$?
[ $rc -eq 0 ] || fail "upgrade: exit $rc"
expect_in "$work/out-4" "[h1] skip: already at 1.1.0 and healthy"
expect_in "$work/out-4" "[h4] upgrade: deltasync-agent 1.0.0 -> 1.1.0"
expect_in "$work/out-4" "[h5] gate passed"
expect_versions 1.1.0 1.1.0 none 1.1.0 1.1.0
"$build/deltasync" verify --quiet || fail "the fleet does not verify after the upgrade"

step "a last re-run skips every host"
run_rollout "$work/out-5" --inventory "$work/inventory4" --package "$deb2" "${common[@]}"; rc=$?
[ $rc -eq 0 ] || fail "re-run: exit $rc"
[ "$(grep -c 'skip: already at 1.1.0 and healthy' "$work/out-5")" -ge 4 ] || fail "not every host was skipped"
! grep -q 'gate passed' "$work/out-5" || fail "a re-run touched a host"
[ "$(machine_dpkg)" = "$machine_before" ] || fail "the machine's own dpkg database changed: $(machine_dpkg)"
step "PASS"
