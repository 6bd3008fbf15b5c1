# Test fleet for deploy/rollout: each "host" is a network namespace with its
# own sshd and its own private view of /etc, /usr and /var (overlay mounts in
# a mount namespace of its own) and a tmpfs /run, so dpkg, the deltasync user,
# /etc/deltasync and /var/lib/deltasync of one host are invisible to the
# machine and to the other hosts. Sourced by rollout_test.sh; needs root.
#
#   fleet_up N        N hosts h1..hN on a bridge; sets FLEET_HOST_IP[i],
#                     FLEET_GATEWAY (the machine's address on the bridge),
#                     FLEET_KEY (ssh private key), FLEET_KNOWN_HOSTS
#   fleet_ssh i CMD   runs CMD as root on host i over ssh (as the rollout does)
#   fleet_view i      the host's private files as seen from the machine:
#                     $(fleet_view i)/{etc,usr,var}/... and .../dpkg/ (its
#                     /var/lib/dpkg), the overlays' upper dirs: read them
#                     only; a change made there while the host runs is
#                     undefined for overlayfs (make it over ssh)
#   fleet_down        kills every process of every host (by the PIDs in their
#                     namespaces), deletes namespaces, links and files;
#                     idempotent, safe after a partial fleet_up
#
# Addresses: one private /24 in 10.200-10.249 that no address or route of the
# machine touches; names carry this shell's PID so two runs do not collide
# and reap_stale_fleets.sh can tell a killed run's leftovers from a live one.

FLEET_TAG="r$$"
FLEET_DIR=""
FLEET_N=0
FLEET_BRIDGE="dsb$$"
FLEET_NET=""
declare -a FLEET_HOST_IP=()

fleet_log() { echo "fleet: $*" >&2; }

fleet_pick_net() {
  local used; used=$( (ip -4 addr; ip -4 route) 2>/dev/null)
  local i a b
  for i in $(seq 0 99); do
    a=$((200 + ($$ + i) % 50)); b=$(( ($$ / 50 + i * 7) % 250 + 1))
    if ! grep -q "10\.$a\.$b\." <<<"$used" && ! grep -q "10\.$a\.0\.0/16\|10\.0\.0\.0/8" <<<"$used"; then
      FLEET_NET="10.$a.$b"; return 0
    fi
  done
  fleet_log "no free 10.x.y.0/24 for the test fleet"; return 1
}

fleet_ns() { echo "ds-${FLEET_TAG}-h$1"; }
fleet_view() { echo "$FLEET_DIR/h$1/upper"; }

fleet_up() {
  local n="$1" i
  FLEET_N="$n"
  FLEET_DIR=$(mktemp -d "/tmp/ds-fleet.r$$.XXXXXX")
  chmod 0755 "$FLEET_DIR"
  fleet_pick_net || return 1
  FLEET_GATEWAY="$FLEET_NET.1"
  ip link add "$FLEET_BRIDGE" type bridge || return 1
  ip addr add "$FLEET_GATEWAY/24" dev "$FLEET_BRIDGE"
  ip link set "$FLEET_BRIDGE" up
  FLEET_KEY="$FLEET_DIR/id_ed25519"
  FLEET_KNOWN_HOSTS="$FLEET_DIR/known_hosts"
  ssh-keygen -q -t ed25519 -N '' -C rollout-test -f "$FLEET_KEY" || return 1
  : > "$FLEET_KNOWN_HOSTS"
  cp -a /var/lib/dpkg "$FLEET_DIR/dpkg-base" || return 1
  for i in $(seq 1 "$n"); do fleet_host_up "$i" || return 1; done
  for i in $(seq 1 "$n"); do fleet_wait_ssh "$i" || return 1; done
}

fleet_host_up() {
  local i="$1" ns h ip
  ns=$(fleet_ns "$i"); h="$FLEET_DIR/h$i"; ip="$FLEET_NET.$((10 + i))"
  FLEET_HOST_IP[$i]="$ip"
  mkdir -p "$h"/upper/{etc,usr,var,dpkg} "$h"/work/{etc,usr,var,dpkg}
  # The key is authorized in the host's own /etc only (its overlay's upper dir).
  install -d -m 0755 "$h/upper/etc/ssh"
  install -m 0600 "$FLEET_KEY.pub" "$h/upper/etc/ssh/rollout_test_authorized_keys"
  ssh-keygen -q -t ed25519 -N '' -C "h$i" -f "$h/ssh_host_ed25519_key" || return 1
  echo "$ip $(cut -d' ' -f1,2 "$h/ssh_host_ed25519_key.pub")" >> "$FLEET_KNOWN_HOSTS"
  cat > "$h/sshd_config" <<CFG
ListenAddress $ip:22
HostKey $h/ssh_host_ed25519_key
PidFile none
AuthorizedKeysFile /etc/ssh/rollout_test_authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes yes
LogLevel ERROR
CFG
  ip netns add "$ns" || return 1
  ip link add "v${FLEET_TAG}h$i" type veth peer name "p${FLEET_TAG}h$i" || return 1
  ip link set "v${FLEET_TAG}h$i" master "$FLEET_BRIDGE" up
  ip link set "p${FLEET_TAG}h$i" netns "$ns"
  ip -n "$ns" link set lo up
  ip -n "$ns" link set "p${FLEET_TAG}h$i" name eth0
  ip -n "$ns" addr add "$ip/24" dev eth0
  ip -n "$ns" link set eth0 up
  local mounts=""
  for d in etc usr var; do
    mounts="$mounts mount -t overlay overlay -o lowerdir=/$d,upperdir=$h/upper/$d,workdir=$h/work/$d /$d || exit 1;"
  done
  # dpkg's database over the snapshot fleet_up took, not the live one: a
  # package installed on the machine meanwhile does not show up half.
  mounts="$mounts mount -t overlay overlay -o lowerdir=$FLEET_DIR/dpkg-base,upperdir=$h/upper/dpkg,workdir=$h/work/dpkg /var/lib/dpkg || exit 1;"
  # The host's private mounts, then sshd in the foreground (its PID stays
  # this background job's: ip netns exec, unshare and sh all exec).
  ip netns exec "$ns" unshare --mount --propagation private sh -c "
    $mounts
    mount -t tmpfs -o mode=0755 tmpfs /run || exit 1
    mkdir -p /run/sshd && chmod 0755 /run/sshd
    exec /usr/sbin/sshd -D -e -f $h/sshd_config" > "$h/sshd.log" 2>&1 &
  echo $! > "$h/sshd.pid"
}

# One multiplexed connection per host (ControlPersist); fleet_down ends them.
fleet_ssh_argv() {
  echo ssh -i "$FLEET_KEY" -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes \
      -o UserKnownHostsFile="$FLEET_KNOWN_HOSTS" -o ConnectTimeout=5 -o LogLevel=ERROR \
      -o ControlMaster=auto -o ControlPath="$FLEET_DIR/ssh-%C" -o ControlPersist=60
}
fleet_ssh() {
  local i="$1"; shift
  $(fleet_ssh_argv) "root@${FLEET_HOST_IP[$i]}" -- "$@"
}

fleet_wait_ssh() {
  local i="$1" deadline=$((SECONDS + 20))
  until fleet_ssh "$i" true 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      fleet_log "h$i: sshd does not answer on ${FLEET_HOST_IP[$i]}:22 after 20 s: $(tail -3 "$FLEET_DIR/h$i/sshd.log")"
      return 1
    fi
    sleep 0.2
  done
}

# Every process in a host's namespace (sshd, sessions, the agent), by PID.
fleet_host_pids() { ip netns pids "$(fleet_ns "$1")" 2>/dev/null; }

fleet_down() {
  local i pid pids deadline
  [ "$FLEET_N" -gt 0 ] || return 0
  for i in $(seq 1 "$FLEET_N"); do
    [ -n "${FLEET_HOST_IP[$i]:-}" ] && $(fleet_ssh_argv) -O exit "root@${FLEET_HOST_IP[$i]}" >/dev/null 2>&1
  done
  for i in $(seq 1 "$FLEET_N"); do
    pids=$(fleet_host_pids "$i")
    [ -n "$pids" ] && kill -TERM $pids 2>/dev/null
  done
  deadline=$((SECONDS + 10))
  for i in $(seq 1 "$FLEET_N"); do
    while [ -n "$(fleet_host_pids "$i")" ] && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    pids=$(fleet_host_pids "$i")
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
    ip netns del "$(fleet_ns "$i")" 2>/dev/null
    ip link del "v${FLEET_TAG}h$i" 2>/dev/null
  done
  ip link del "$FLEET_BRIDGE" 2>/dev/null
  sleep 0.2
  [ -n "$FLEET_DIR" ] && rm -rf "$FLEET_DIR"
  FLEET_N=0
  return 0
}
