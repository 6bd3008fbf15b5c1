#!/usr/bin/env bash
# The README's main job: installs what is missing, builds, then runs a local
# deltasync system in run/demo: a nats-server with JetStream, the hub and three
# agents of a retail chain (store-1 and store-2 take the catalogue plus their
# own prices and stock; hq takes the catalogue and every store's prices). It
# pushes thousands of sample records, shows the replicas converge, stops one
# agent, pushes more, shows it dead and receiving nothing, restarts it and
# shows it catch up. Ctrl-C stops everything.
#
#   bash deploy/demo.sh [--verbose] [--no-wait] [--articles N]
#     --verbose    show the processes' logs on the terminal
#     --no-wait    stop at the end instead of waiting for Ctrl-C (CI, scripts)
#     --articles N articles in the sample catalogue (default 2000)
#     --no-build   use the binaries already built (in $DELTASYNC_BUILD_DIR or build)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

verbose=0 wait_at_end=1 articles=2000 build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --verbose) verbose=1 ;;
    --no-wait) wait_at_end=0 ;;
    --articles) articles="$2"; shift ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ $build -eq 1 ]; then
  say "installing and building (deploy/build.sh)"
  if [ $verbose -eq 1 ]; then
    bash deploy/build.sh
  elif ! bash deploy/build.sh > /tmp/deltasync-demo-build.log 2>&1; then
    tail -40 /tmp/deltasync-demo-build.log
    echo "demo.sh: build failed (full log: /tmp/deltasync-demo-build.log)" >&2
    exit 1
  fi
fi
bin="${DELTASYNC_BUILD_DIR:-build}"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
work="${DELTASYNC_DEMO_DIR:-$root/run/demo}"

rm -rf "$work"
# Logs, configs (the token) and databases of the demo: owner-only
# (docs/security.md, Files).
umask 077
mkdir -p "$work"
cd "$work"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nats_port=$(free_port)
http_port=$(free_port)
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
nats_url="nats://127.0.0.1:$nats_port"
hub_url="http://127.0.0.1:$http_port"
export DELTASYNC_HUB="$hub_url" DELTASYNC_TOKEN="$token" DELTASYNC_NATS="$nats_url"

pids=()
declare -A agent_pid
cleanup() {
  trap - EXIT INT TERM
  say "stopping everything"
  for pid in "${agent_pid[@]}" "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${agent_pid[@]}" "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "stopped; logs and databases are in $work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME LOGFILE COMMAND...: runs a process in the background, its output
# to a log file (and the terminal with --verbose).
start() {
  local log="$1"; shift
  if [ $verbose -eq 1 ]; then "$@" > >(tee -a "$log") 2>&1 &
  else "$@" >> "$log" 2>&1 & fi
  echo $!
}
wait_for() {  # wait_for DESCRIPTION SECONDS COMMAND...
  local what="$1" secs="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then echo "demo.sh: timed out waiting for $what" >&2; return 1; fi
    sleep 0.2
  done
}

say "starting nats-server with JetStream on $nats_url"
mkdir -p nats
sed -e "s|@NATS_PORT@|$nats_port|" -e "s|@STORE_DIR@|$work/nats/js|" "$root/deploy/demo/nats.conf" > nats/nats.conf
pids+=("$(start nats/nats.log nats-server -c nats/nats.conf)")
wait_for "nats-server" 20 bash -c "exec 3<>/dev/tcp/127.0.0.1/$nats_port"

say "starting the hub (HTTP API on $hub_url)"
mkdir -p hub
sed -e "s|@NATS_URL@|$nats_url|" -e "s|@HTTP_LISTEN@|127.0.0.1:$http_port|" -e "s|@TOKEN@|$token|" \
    "$root/deploy/demo/hub.toml" > hub/hub.toml
pids+=("$(start hub/hub.log "$bin/deltasync-hub" --config hub/hub.toml)")
wait_for "the hub to be ready" 30 curl -sf "$hub_url/readyz"

agents=(store-1 store-2 hq)
# store-N: the catalogue plus its own prices and stock; hq: the catalogue and
# every store's prices.
write_agent_config() {
  local id="$1" dir="$work/$1" store_partition="$1"
  mkdir -p "$dir"
  [ "$id" = hq ] && store_partition="*"
  {
    printf '[agent]\nid = "%s"\n\n[log]\nlevel = "info"\n\n' "$id"
    printf '[nats]\nurl = "%s"\n\n[replica]\npath = "replica.db"\n' "$nats_url"
    printf '\n[[subscriptions]]\ntype = "products"\npartition = "*"\n'
    printf '\n[[subscriptions]]\ntype = "prices"\npartition = "%s"\n' "$store_partition"
    [ "$id" = hq ] || printf '\n[[subscriptions]]\ntype = "inventory"\npartition = "%s"\n' "$store_partition"
  } > "$dir/agent.toml"
}
start_agent() {
  agent_pid[$1]=$(start "$work/$1/agent.log" "$bin/deltasync-agent" run --config "$work/$1/agent.toml")
}
say "starting agents: ${agents[*]}"
for a in "${agents[@]}"; do write_agent_config "$a"; start_agent "$a"; done
sleep 1

push_round() {  # push_round ROUND: every type's sample data of that round
  local round="$1" deletes="$2"
  for type in products prices inventory; do
    "$bin/deltasync" sample "$type" --articles "$articles" --stores 3 --round "$round" --delete-every "$deletes" \
      > "sample-$type-$round.jsonl"
    printf '  %-9s ' "$type"
    "$bin/deltasync" push --type "$type" --quiet --json "sample-$type-$round.jsonl"
  done
}

say "pushing sample data: $articles articles, 3 stores (products, prices, inventory)"
push_round 0 0

converged() { "$bin/deltasync" verify --quiet; }
say "waiting for every replica to converge (deltasync verify)"
wait_for "convergence" 120 converged
"$bin/deltasync" verify

say "stopping agent store-2 and pushing more updates (round 1, with deletes)"
kill -TERM "${agent_pid[store-2]}"; wait "${agent_pid[store-2]}" 2>/dev/null || true
unset 'agent_pid[store-2]'
push_round 1 7
echo "  waiting for the hub to mark store-2 dead (3 missed heartbeats of 1 s)"
wait_for "store-2 to be dead" 30 bash -c "'$bin/deltasync' agents --json | grep -q '\"state\": *\"dead\"'"
"$bin/deltasync" agents
echo "  store-2's replica still holds round 0 (it receives nothing while dead):"
sqlite3 "$work/store-2/replica.db" "SELECT 'prices rows: ' || count(*) FROM prices; SELECT 'checkpoint: ' || type || ' v' || version FROM _deltasync_checkpoint;"

say "restarting store-2: it catches up from its checkpoint"
start_agent store-2
wait_for "convergence after catch-up" 120 converged
"$bin/deltasync" verify
"$bin/deltasync" agents

say "the system is running"
cat <<INFO
  HTTP API:   curl -H "Authorization: Bearer $token" $hub_url/v1/agents
  CLI:        DELTASYNC_HUB=$hub_url DELTASYNC_TOKEN=$token $bin/deltasync types
  a replica:  sqlite3 $work/store-1/replica.db 'SELECT id, price FROM prices LIMIT 5'
  logs:       $work/*/*.log
INFO
if [ $wait_at_end -eq 1 ]; then
  echo "Press Ctrl-C to stop."
  while true; do sleep 3600; done
fi
