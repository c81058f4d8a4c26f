#!/usr/bin/env bash
# A real Docker Swarm of N nodes (default 3) on this machine, for `ferry … --swarm` tests:
#   - N hosts of scripts/ssh-hosts.sh's kind (own network, mount and UTS namespaces, own dockerd and
#     sshd), but a set of their own beside the SSH tests' hosts: namespaces ferry-swN, hostnames
#     swarm-N, data under $FERRY_SWARM_DIR (default /tmp/ferry-swarm), SSH addresses 198.19.N.2;
#   - a LAN between them: a bridge in a namespace of its own (ferry-swlan), each node's eth1 on it
#     at 198.19.0.(10+N)/24 and this machine at 198.19.0.1. Swarm needs the nodes to reach each
#     other (2377/tcp, 7946 tcp+udp, 4789/udp VXLAN); routing through this machine's namespace would
#     go through its FORWARD chain, which the build engine's dockerd sets to DROP. The bridge lives
#     in a namespace whose firewall is empty, so nothing on this machine changes;
#   - sshd on each node also listens on its LAN address, which is the address Swarm reports for the
#     node (node inspect's Status.Addr): ferry's default SSH target for a node works as it would on a
#     real cluster;
#   - node 1 runs `swarm init` (the manager), the others join it as workers.
# This kernel has no IPVS: the ingress routing mesh does not answer. Stacks publish `mode: host`
# ports and use `endpoint_mode: dnsrr`.
#
#   swarm.sh up [N]    start (or reuse) the nodes and the swarm; prints `export …` lines (see env)
#   swarm.sh leave     every node leaves the swarm (nodes keep running); `up` forms it again
#   swarm.sh down      every node leaves the swarm, the nodes and the LAN are removed
#   swarm.sh env       FERRY_SWARM_MANAGER, FERRY_SWARM_NODES, FERRY_SWARM_IDENTITY, FERRY_SWARM_KNOWN_HOSTS, …
#   swarm.sh status    nodes as the manager sees them
#
# FERRY_SWARM_DOCKER26C_NODES="2 3": those nodes run Docker 26 on the containerd image store (passed to
# ssh-hosts.sh as FERRY_SSH_DOCKER26C_HOSTS).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export FERRY_ENGINES_DIR="${FERRY_SWARM_DIR:-/tmp/ferry-swarm}"
export FERRY_SSH_NAME=ferry-sw
export FERRY_SSH_HOSTNAME=swarm
export FERRY_SSH_NET_PREFIX="${FERRY_SWARM_NET_PREFIX:-198.19}"
STATE="$FERRY_ENGINES_DIR/ssh"
LAN_NS=ferry-swlan
LAN_LINK=ferry-swlan
P="$FERRY_SSH_NET_PREFIX"

log() { echo "swarm: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 && exec sudo -E bash "$0" "$@"
  die "must run as root (no sudo available)"
fi

lan_addr() { echo "$P.0.$((10 + $1))"; }
sock() { echo "$STATE/h$1/docker.sock"; }
dk() {
  local i="$1"
  shift
  DOCKER_HOST="unix://$(sock "$i")" DOCKER_CONTEXT='' docker "$@"
}
nodes_recorded() { cat "$STATE/hosts" 2>/dev/null || echo 0; }
hosts_script() { bash "$HERE/ssh-hosts.sh" "$@"; }

lan_up() {
  local n="$1" i
  if ! [ -e "/var/run/netns/$LAN_NS" ]; then
    ip netns add "$LAN_NS"
    touch "$STATE/lan-owned"
  fi
  ip -n "$LAN_NS" link set lo up
  ip -n "$LAN_NS" link show br0 >/dev/null 2>&1 || ip -n "$LAN_NS" link add br0 type bridge
  ip -n "$LAN_NS" link set br0 up
  if ! ip link show "$LAN_LINK" >/dev/null 2>&1; then
    local route
    route="$(ip route get "$P.0.1" 2>/dev/null | head -n 1 || true)"
    case "$route" in "" | *" via "*) ;; *) die "$P.0.0/24 is already in use on this machine ($route); set FERRY_SWARM_NET_PREFIX" ;; esac
    ip link add "$LAN_LINK" type veth peer name up0 netns "$LAN_NS"
    ip addr add "$P.0.1/24" dev "$LAN_LINK"
    ip link set "$LAN_LINK" up
    ip -n "$LAN_NS" link set up0 master br0 up
  fi
  for ((i = 1; i <= n; i++)); do
    if ! ip -n "ferry-sw$i" link show eth1 >/dev/null 2>&1; then
      ip -n "$LAN_NS" link add "n$i" type veth peer name eth1 netns "ferry-sw$i"
      ip -n "$LAN_NS" link set "n$i" master br0 up
      ip -n "ferry-sw$i" addr add "$(lan_addr "$i")/24" dev eth1
      ip -n "ferry-sw$i" link set eth1 up
    fi
    # sshd listens on the LAN address too (ssh-hosts.sh reads listen-extra when it starts sshd).
    if [ "$(cat "$STATE/h$i/listen-extra" 2>/dev/null)" != "$(lan_addr "$i")" ] || ! grep -q "$(lan_addr "$i")" "$STATE/h$i/sshd_config"; then
      lan_addr "$i" >"$STATE/h$i/listen-extra"
      hosts_script sshd stop "$i"
      hosts_script sshd start "$i"
    fi
  done
}

write_known_hosts() {
  local n="$1" i key tmp="$STATE/known_hosts_swarm.new"
  : >"$tmp"
  for ((i = 1; i <= n; i++)); do
    key="$(cut -d' ' -f1,2 "$STATE/h$i/ssh_host_ed25519_key.pub")"
    echo "$(lan_addr "$i"),$P.$i.2 $key" >>"$tmp"
  done
  mv -f "$tmp" "$STATE/known_hosts_swarm"
}

# Each node's /var/lib/ferry is its own state dir, bind-mounted in its mount namespace by
# ssh-hosts.sh. Another set's `ssh-hosts.sh down` removes /var/lib/ferry when it made it, and the
# kernel then detaches that mount point in every namespace: the nodes would share this machine's
# /var/lib/ferry (seen as HOST_BUSY between nodes). Bound again where it is missing.
state_binds() {
  local n="$1" i d
  for ((i = 1; i <= n; i++)); do
    d="$STATE/h$i"
    nsenter --mount="$d/ns/mnt" awk '$5 == "/var/lib/ferry" {found = 1} END {exit !found}' /proc/self/mountinfo && continue
    mkdir -p /var/lib/ferry
    nsenter --mount="$d/ns/mnt" mount --bind "$d/state" /var/lib/ferry
    log "node $i: its /var/lib/ferry was unmounted (another host set's down?); bound again"
  done
}

swarm_state() { dk "$1" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || echo unreachable; }

swarm_up() {
  local n="$1" i k token ready
  if [ "$(swarm_state 1)" != active ]; then
    dk 1 swarm init --advertise-addr "$(lan_addr 1)" --listen-addr "$(lan_addr 1):2377" >/dev/null
  fi
  token="$(dk 1 swarm join-token -q worker)"
  for ((i = 2; i <= n; i++)); do
    [ "$(swarm_state "$i")" = active ] && continue
    # A node that left uncleanly (or belongs to another swarm) leaves first.
    dk "$i" swarm leave --force >/dev/null 2>&1 || true
    dk "$i" swarm join --token "$token" --advertise-addr "$(lan_addr "$i")" --listen-addr "$(lan_addr "$i"):2377" "$(lan_addr 1):2377" >/dev/null
  done
  # Nodes that left and joined again stay listed as Down under their old ID: the manager forgets them.
  for k in $(dk 1 node ls --filter role=worker --format '{{.ID}} {{.Status}}' | awk '$2 == "Down" {print $1}'); do
    dk 1 node rm --force "$k" >/dev/null 2>&1 || true
  done
  for ((k = 0; k < 120; k++)); do
    ready="$(dk 1 node ls --format '{{.Status}}' | grep -c '^Ready$' || true)"
    [ "$ready" -ge "$n" ] && return 0
    sleep 0.5
  done
  dk 1 node ls >&2 || true
  die "only $ready of $n nodes Ready after 60 s"
}

leave_all() {
  local i n
  n="$(nodes_recorded)"
  # Workers first, so the manager does not wait for them.
  for ((i = n; i >= 1; i--)); do
    [ -S "$(sock "$i")" ] || continue
    case "$(swarm_state "$i")" in active | pending | error | locked) dk "$i" swarm leave --force >/dev/null 2>&1 || true ;; esac
  done
}

print_env() {
  local n i list=""
  n="$(nodes_recorded)"
  for ((i = 1; i <= n; i++)); do list="$list${list:+ }root@$(lan_addr "$i")"; done
  echo "export FERRY_SWARM_MANAGER=root@$(lan_addr 1)"
  echo "export FERRY_SWARM_NODES=\"$list\""
  echo "export FERRY_SWARM_IDENTITY=$STATE/id_ed25519"
  echo "export FERRY_SWARM_KNOWN_HOSTS=$STATE/known_hosts_swarm"
  echo "export FERRY_SWARM_DIR=$STATE"
  echo "export FERRY_SWARM_MANAGER_DOCKER_HOST=unix://$(sock 1)"
}

cmd="${1:-}"
[ "$#" -gt 0 ] && shift
case "$cmd" in
  up)
    n="${1:-3}"
    [[ "$n" =~ ^[1-9]$ ]] || die "up takes a number of nodes, 1 to 9"
    if [ -n "${FERRY_SWARM_DOCKER26C_NODES+set}" ]; then
      # A node rebuilt with another engine must not stay listed in the old swarm.
      leave_all
      FERRY_SSH_DOCKER26C_HOSTS="$FERRY_SWARM_DOCKER26C_NODES" hosts_script up "$n" >/dev/null
    else
      hosts_script up "$n" >/dev/null
    fi
    n="$(nodes_recorded)"
    lan_up "$n"
    state_binds "$n"
    write_known_hosts "$n"
    swarm_up "$n"
    log "$n nodes in the swarm: $(for ((i = 1; i <= n; i++)); do printf 'swarm-%s=%s ' "$i" "$(lan_addr "$i")"; done)(manager swarm-1)"
    print_env
    ;;
  leave)
    leave_all
    log "every node left the swarm"
    ;;
  down)
    leave_all
    hosts_script down
    if [ -e "/var/run/netns/$LAN_NS" ]; then ip netns delete "$LAN_NS" 2>/dev/null || true; fi
    ip link delete "$LAN_LINK" 2>/dev/null || true
    rm -rf "$FERRY_ENGINES_DIR"
    log "down"
    ;;
  env)
    print_env
    ;;
  status)
    dk 1 node ls
    ;;
  *)
    echo "usage: $0 up [N] | leave | down | env | status" >&2
    exit 2
    ;;
esac
