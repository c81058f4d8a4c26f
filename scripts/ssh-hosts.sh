#!/usr/bin/env bash
# Hosts reachable over SSH, for tests and benches of `ferry … --ssh`: each one a small machine of
# its own on this one, as far as ferry can tell:
#   - a network namespace ferry-sshN joined to this machine by a veth pair (a /30 of its own from
#     198.18.0.0/15, the range set aside for network tests; this end 198.18.N.1, the host 198.18.N.2);
#   - a mount and UTS namespace: hostname edge-N, its own /run (so /var/run/docker.sock is ITS
#     engine) and its own /var/lib/ferry (a directory under the state dir, bind-mounted);
#   - its own dockerd (own data root, exec root, pid file, containerd namespace; on a Docker 26 host
#     also its own containerd, see FERRY_SSH_DOCKER26C_HOSTS) and its own sshd (generated host key,
#     key-only root login, no passwords), all inside those namespaces.
# So `docker compose` run over SSH, ferry's default paths and the forwarded Docker socket all hit
# that host's engine and state, and relative bind mounts in compose files resolve where its
# engine looks, as on a real host.
#
#   ssh-hosts.sh up [N]            start (or reuse) hosts 1..N (default 3); prints `export …` lines (see env)
#   ssh-hosts.sh down              stop every host this script started, delete its namespaces and files
#   ssh-hosts.sh env               FERRY_SSH_HOSTS="root@198.18.1.2 …", FERRY_SSH_IDENTITY, FERRY_SSH_KNOWN_HOSTS, …
#   ssh-hosts.sh sshd stop|start I stop or start host I's sshd (its engine keeps running): an unreachable host
#   ssh-hosts.sh reset-engine I    host I's engine empty again (stopped, data root wiped, started; a Docker 26
#                                  host's containerd too), its state dir emptied
#   ssh-hosts.sh kill-sessions I   SIGKILL every connection host I's sshd is serving (the listener stays):
#                                  a link that dies mid-transfer
#   ssh-hosts.sh status            what runs; exit 0 only when every started host answers
#
# FERRY_SSH_ENGINE_TMPFS=1 (for benches): each engine keeps its data root in memory (a tmpfs inside
# the host's mount namespace; on a Docker 26 host containerd's root too, where that store keeps its
# images), so the shared disk's stalls do not drown what a bench compares.
#
# FERRY_SSH_DOCKER26C_HOSTS="3" (host numbers, space- or comma-separated): those hosts run what
# today's users run instead of Debian 12's Docker 20.10: Docker 26.1 from Debian 13 (unpacked into
# $FERRY_DOCKER26_PREFIX, default /opt/docker26, by scripts/docker26.sh) on the containerd image store
# (daemon.json `{"features":{"containerd-snapshotter":true}}`), with its own containerd 1.7 (config,
# root, state and gRPC socket under the host's dir, inside the host's namespaces), and Compose v2 as
# `docker compose`. That host alone gets them: root's PATH in its SSH sessions starts with the
# prefix's bin dirs (Docker 26 CLI; `docker-compose` is Compose v2 there too) and its root's
# ~/.docker/cli-plugins holds Compose v2 (root's home is the host's own); nothing changes on this
# machine's PATH or plugin dirs. Each host records its engine (h<N>/engine-kind: 20.10 or 26c);
# `up` with the variable SET (even empty) rebuilds every host whose engine differs from it, from
# scratch; with it unset, hosts already up keep theirs (new ones get 20.10). reset-engine, down and
# status go by the record. `env` prints the 26c hosts as FERRY_SSH_DOCKER26C_HOSTS.
#
# FERRY_SSH_NAME (default ferry-ssh) names the namespaces and root-side links (NAME1, NAME2, …) and
# FERRY_SSH_HOSTNAME (default edge) the hosts' hostnames: with FERRY_ENGINES_DIR and
# FERRY_SSH_NET_PREFIX also set, a second set of hosts runs beside the first (scripts/swarm.sh's).
# A file listen-extra in a host's dir (an address of that host) makes its sshd listen there too.
#
# Ownership as in engines.sh: only processes whose pid files and command lines are ours are ever
# signalled, never anything by name; only namespaces, links and mounts this script made are removed.
set -euo pipefail

STATE="${FERRY_ENGINES_DIR:-/tmp/ferry-engines}/ssh"
NET_PREFIX="${FERRY_SSH_NET_PREFIX:-198.18}"
START_TIMEOUT="${FERRY_ENGINE_START_TIMEOUT:-60}"
SSHD=/usr/sbin/sshd
D26="${FERRY_DOCKER26_PREFIX:-/opt/docker26}"
D26="${D26%/}"
SFTP_SERVER=/usr/lib/openssh/sftp-server
NAME="${FERRY_SSH_NAME:-ferry-ssh}"
HOSTNAME_PREFIX="${FERRY_SSH_HOSTNAME:-edge}"

log() { echo "ssh-hosts: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 && exec sudo -E bash "$0" "$@"
  die "must run as root (no sudo available)"
fi

hdir() { echo "$STATE/h$1"; }
# The engine host $1 runs, as recorded when it was set up: 20.10 (Debian 12's docker.io, with the
# containerd dockerd starts itself) or 26c (Docker 26 on the containerd image store, own containerd).
kind_of() { cat "$(hdir "$1")/engine-kind" 2>/dev/null || echo 20.10; }
# What FERRY_SSH_DOCKER26C_HOSTS asks of host $1; "" when the variable is unset (keep what runs).
wanted_kind() {
  [ -n "${FERRY_SSH_DOCKER26C_HOSTS+set}" ] || return 0
  case " ${FERRY_SSH_DOCKER26C_HOSTS//,/ } " in *" $1 "*) echo 26c ;; *) echo 20.10 ;; esac
}
kind_label() { case "$1" in 26c) echo "Docker 26 on the containerd store" ;; *) echo "Docker 20.10" ;; esac; }
# Docker 26's bin dirs first: dockerd looks up containerd-shim-runc-v2, docker-proxy and docker-init
# on PATH; runc (and tini) come from this machine's packages further down.
d26_path() { echo "$D26/usr/bin:$D26/usr/sbin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"; }
netns() { echo "$NAME$1"; }
addr() { echo "$NET_PREFIX.$1.2"; }
peer() { echo "$NET_PREFIX.$1.1"; }
# shellcheck source=scripts/lib/procs.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/procs.sh"

# --- keys ---------------------------------------------------------------------------------------

client_key() {
  mkdir -p "$STATE"
  chmod 700 "$STATE"
  [ -s "$STATE/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C ferry-test-client -f "$STATE/id_ed25519"
  cp "$STATE/id_ed25519.pub" "$STATE/authorized_keys"
  chmod 600 "$STATE/authorized_keys"
}

write_known_hosts() {
  local n="$1" i tmp="$STATE/known_hosts.new"
  : >"$tmp"
  for ((i = 1; i <= n; i++)); do
    echo "$(addr "$i") $(cut -d' ' -f1,2 "$(hdir "$i")/ssh_host_ed25519_key.pub")" >>"$tmp"
  done
  mv -f "$tmp" "$STATE/known_hosts"
}

# --- one host -----------------------------------------------------------------------------------

net_up() {
  local i="$1" ns link
  ns="$(netns "$i")"
  link="$NAME$i"
  if ! { [ -e "/var/run/netns/$ns" ] && nsenter --net="/var/run/netns/$ns" true 2>/dev/null; }; then
    [ -e "/var/run/netns/$ns" ] && { ip netns delete "$ns" 2>/dev/null || rm -f "/var/run/netns/$ns"; }
    # A direct or local route to our address means the range is someone else's here.
    local route
    route="$(ip route get "$(addr "$i")" 2>/dev/null | head -n 1 || true)"
    case "$route" in
      "" | *" via "* | *"dev $link "*) ;;
      *) die "$(addr "$i") is already in use on this machine ($route); set FERRY_SSH_NET_PREFIX to a free a.b prefix" ;;
    esac
    ip netns add "$ns"
    touch "$(hdir "$i")/netns-owned"
  fi
  nsenter --net="/var/run/netns/$ns" ip link set lo up
  if ! ip link show "$link" >/dev/null 2>&1; then
    ip link add "$link" type veth peer name eth0 netns "$ns"
    ip addr add "$(peer "$i")/30" dev "$link"
    ip link set "$link" up
    nsenter --net="/var/run/netns/$ns" ip addr add "$(addr "$i")/30" dev eth0
    nsenter --net="/var/run/netns/$ns" ip link set eth0 up
  fi
}

# The host's own mount + UTS namespaces, kept alive by bind mounts on files (like `ip netns`), so
# that dockerd and sshd, started separately, share them.
fs_up() {
  local i="$1" d
  d="$(hdir "$i")"
  if [ -e "$d/ns/ready" ] && grep -qF " $d/ns/mnt " /proc/self/mountinfo; then return 0; fi
  mkdir -p "$d/ns" "$d/state"
  if ! grep -qF " $d/ns " /proc/self/mountinfo; then
    # Binding a namespace file needs a mount that does not propagate (else it would contain itself).
    mount --bind "$d/ns" "$d/ns"
    mount --make-private "$d/ns"
  fi
  touch "$d/ns/mnt" "$d/ns/uts"
  # The mount point must exist on the shared filesystem; an empty /var/lib/ferry is harmless and
  # removed at `down` when this script made it and it is still empty.
  if [ ! -d /var/lib/ferry ]; then
    mkdir -p /var/lib/ferry
    touch "$STATE/made-var-lib-ferry"
  fi
  # root's home on a fresh host: only the test client's key. This machine's /root (shell start-up
  # files, tools on PATH) is not the host's business, and slow start-up files would be timed too.
  mkdir -p "$d/root-home/.ssh"
  chmod 700 "$d/root-home" "$d/root-home/.ssh"
  cp "$STATE/authorized_keys" "$d/root-home/.ssh/authorized_keys"
  chmod 600 "$d/root-home/.ssh/authorized_keys"
  unshare --mount="$d/ns/mnt" --uts="$d/ns/uts" --propagation private sh -ec "
    mount -t tmpfs -o mode=755 ferry-run /run
    mkdir -p /run/sshd /run/lock
    ln -s '$d/docker.sock' /run/docker.sock
    mount --bind '$d/state' /var/lib/ferry
    mount --bind '$d/root-home' /root
    hostname '$HOSTNAME_PREFIX-$i'
  "
  touch "$d/ns/ready"
}

# What a host's SSH sessions find besides the system's tools: on a 26c host, Compose v2 as a CLI
# plugin in root's own ~/.docker (root's home is the host's, see fs_up); PATH is set in sshd_config.
host_tools() {
  local i="$1" d
  d="$(hdir "$i")"
  if [ "$(kind_of "$i")" = 26c ]; then
    mkdir -p "$d/root-home/.docker/cli-plugins"
    ln -sfn "$D26/usr/libexec/docker/cli-plugins/docker-compose" "$d/root-home/.docker/cli-plugins/docker-compose"
  else
    rm -f "$d/root-home/.docker/cli-plugins/docker-compose"
  fi
}

in_host() {
  local i="$1" d
  shift
  d="$(hdir "$i")"
  nsenter --net="/var/run/netns/$(netns "$i")" --mount="$d/ns/mnt" --uts="$d/ns/uts" "$@"
}

ctd_answers() { timeout 5 "$D26/usr/bin/ctr" --address "$1" version >/dev/null 2>&1; }

# Host $1's own containerd (26c hosts), inside the host's namespaces: its shims' sockets
# (/run/containerd/s) and runc's state (/run/containerd/runc) land in the host's own /run.
containerd_up() {
  local i="$1" d k
  d="$(hdir "$i")"
  write_containerd_config "$d" "$d/containerd.sock"
  : >"$d/containerd.log"
  # setsid and nsenter exec (no fork without --pid): $! is containerd's own pid.
  PATH="$(d26_path)" setsid nsenter --net="/var/run/netns/$(netns "$i")" --mount="$d/ns/mnt" --uts="$d/ns/uts" \
    "$D26/usr/bin/containerd" --config "$d/containerd.toml" >>"$d/containerd.log" 2>&1 </dev/null 9>&- &
  echo "$!" >"$d/containerd.pid"
  for ((k = 0; k < START_TIMEOUT * 2; k++)); do
    ctd_answers "$d/containerd.sock" && return 0
    [ -d "/proc/$(pid_from "$d/containerd.pid")" ] || break
    sleep 0.5
  done
  tail -n 20 "$d/containerd.log" >&2
  die "host $i containerd did not answer within ${START_TIMEOUT}s"
}

dockerd_up() {
  local i="$1" d pid k kind
  d="$(hdir "$i")"
  kind="$(kind_of "$i")"
  pid="$(pid_from "$d/dockerd.pid")"
  if is_ours "$pid" dockerd "$d/docker.sock" && engine_answers "$d/docker.sock"; then return 0; fi
  # Whatever is left of an earlier engine (dockerd, containerd, shims) goes first.
  engine_down "$i"
  # A tmpfs data root lives in the host's mount namespace; unmounting it there frees its memory.
  in_host "$i" umount "$d/root" 2>/dev/null || true
  in_host "$i" umount "$d/ctd-root" 2>/dev/null || true
  rm -rf "$d/root" "$d/exec" "$d/ctd-root" "$d/ctd-state" "$d/ctd-opt"
  rm -f "$d/docker.sock" "$d/dockerd.pid" "$d/containerd.sock" "$d/containerd.sock.ttrpc"
  mkdir -p "$d/root" "$d/exec"
  if [ "${FERRY_SSH_ENGINE_TMPFS:-}" = 1 ]; then
    in_host "$i" mount -t tmpfs -o mode=711 "ferry-ssh$i-root" "$d/root"
  fi
  : >"$d/dockerd.log"
  if [ "$kind" = 26c ]; then
    # Unix socket paths end at 108 bytes; dockerd's longest is $d/exec/libnetwork/<12 hex>.sock.
    [ "${#d}" -le 70 ] || die "FERRY_ENGINES_DIR too long for unix sockets: $d"
    mkdir -p "$d/ctd-root" "$d/ctd-state" "$d/ctd-opt"
    # On the containerd store the images live in containerd's root: in memory too when asked.
    if [ "${FERRY_SSH_ENGINE_TMPFS:-}" = 1 ]; then
      in_host "$i" mount -t tmpfs -o mode=711 "ferry-ssh$i-ctd-root" "$d/ctd-root"
    fi
    echo '{"features":{"containerd-snapshotter":true}}' >"$d/daemon.json"
    containerd_up "$i"
    PATH="$(d26_path)" setsid nsenter --net="/var/run/netns/$(netns "$i")" --mount="$d/ns/mnt" --uts="$d/ns/uts" "$D26/usr/sbin/dockerd" \
      --config-file "$d/daemon.json" --containerd "$d/containerd.sock" --data-root "$d/root" --exec-root "$d/exec" --pidfile "$d/dockerd.pid" \
      -H "unix://$d/docker.sock" --containerd-namespace "$NAME$i" --containerd-plugins-namespace "$NAME$i-plugins" \
      >>"$d/dockerd.log" 2>&1 </dev/null 9>&- &
  else
    echo '{}' >"$d/daemon.json"
    setsid nsenter --net="/var/run/netns/$(netns "$i")" --mount="$d/ns/mnt" --uts="$d/ns/uts" dockerd \
      --config-file "$d/daemon.json" --data-root "$d/root" --exec-root "$d/exec" --pidfile "$d/dockerd.pid" \
      -H "unix://$d/docker.sock" --containerd-namespace "$NAME$i" --containerd-plugins-namespace "$NAME$i-plugins" \
      >>"$d/dockerd.log" 2>&1 </dev/null 9>&- &
  fi
  for ((k = 0; k < START_TIMEOUT * 2; k++)); do
    engine_answers "$d/docker.sock" && return 0
    sleep 0.5
  done
  tail -n 20 "$d/dockerd.log" >&2
  die "host $i engine did not answer within ${START_TIMEOUT}s"
}

sshd_up() {
  local i="$1" d pid k
  d="$(hdir "$i")"
  pid="$(pid_from "$d/sshd.pid")"
  if is_ours "$pid" sshd "$d/sshd_config"; then return 0; fi
  [ -s "$d/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C "edge-$i" -f "$d/ssh_host_ed25519_key"
  # Debian's defaults where they matter (sftp-server, stream-local forwarding allowed, keys in
  # ~/.ssh/authorized_keys with StrictModes) and what a locked-down host has: keys only. UsePAM no:
  # PAM sessions would touch this machine's login records.
  cat >"$d/sshd_config" <<EOF
ListenAddress $(addr "$i"):22
HostKey $d/ssh_host_ed25519_key
PidFile $d/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowStreamLocalForwarding yes
MaxSessions 20
Subsystem sftp $SFTP_SERVER
EOF
  # A Docker 26 host's own tools first in its sessions (the 26 CLI; `docker-compose` is v2 there).
  [ "$(kind_of "$i")" != 26c ] || echo "SetEnv PATH=$(d26_path)" >>"$d/sshd_config"
  [ ! -s "$d/listen-extra" ] || echo "ListenAddress $(cat "$d/listen-extra"):22" >>"$d/sshd_config"
  rm -f "$d/sshd.pid"
  : >"$d/sshd.log"
  setsid nsenter --net="/var/run/netns/$(netns "$i")" --mount="$d/ns/mnt" --uts="$d/ns/uts" "$SSHD" -D -e -f "$d/sshd_config" \
    >>"$d/sshd.log" 2>&1 </dev/null 9>&- &
  for ((k = 0; k < 40; k++)); do
    grep -q "Server listening" "$d/sshd.log" 2>/dev/null && [ -s "$d/sshd.pid" ] && return 0
    sleep 0.25
  done
  cat "$d/sshd.log" >&2
  die "host $i sshd did not start"
}

sshd_down() {
  local i="$1" d pid
  d="$(hdir "$i")"
  pid="$(pid_from "$d/sshd.pid")"
  if is_ours "$pid" sshd "$d/sshd_config"; then
    kill_sessions "$i"
    stop_pid "$pid" "host $i sshd"
  fi
  rm -f "$d/sshd.pid"
}

kill_sessions() {
  local i="$1" d pid c
  d="$(hdir "$i")"
  pid="$(pid_from "$d/sshd.pid")"
  is_ours "$pid" sshd "$d/sshd_config" || die "host $i sshd is not running"
  # The whole tree: the per-connection monitor, its unprivileged child holding the socket, and
  # the commands it runs. Collected first, then killed, so none is re-parented away in between.
  local victims
  victims="$(descendants "$pid")"
  for c in $victims; do kill -KILL "$c" 2>/dev/null || true; done
  [ -z "$victims" ] || log "host $i: killed sessions $(echo "$victims" | tr '\n' ' ')"
}

engine_down() {
  local i="$1" d pid
  d="$(hdir "$i")"
  stop_if_ours "$d/dockerd.pid" dockerd "$d/docker.sock" "host $i engine"
  # A 26c host's own containerd, after the dockerd that used it.
  stop_if_ours "$d/containerd.pid" containerd "$d/containerd.toml" "host $i containerd"
  rm -f "$d/containerd.pid"
  # Left over from a killed engine: a containerd (20.10's own, under exec/, or a 26c host's whose
  # pid file was lost) and container shims, all naming a path under the host's dir.
  kill_stale_engine_children "$d/" "host $i engine"
}

host_down() {
  local i="$1" d pid proc
  d="$(hdir "$i")"
  [ -d "$d" ] || return 0
  sshd_down "$i"
  engine_down "$i"
  # The namespaces end with their last process once these bindings are gone.
  umount "$d/ns/mnt" 2>/dev/null || true
  umount "$d/ns/uts" 2>/dev/null || true
  umount "$d/ns" 2>/dev/null || true
  awk '{print $5}' /proc/self/mountinfo | { grep -F -- "$d/" || true; } | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  if [ -e "$d/netns-owned" ]; then
    ip netns delete "$(netns "$i")" 2>/dev/null || true
  fi
  # The root end of the veth goes with the namespace, but only once its last process has exited.
  ip link delete "$NAME$i" 2>/dev/null || true
  rm -rf "$d"
}

hosts_recorded() { cat "$STATE/hosts" 2>/dev/null || echo 0; }

print_env() {
  local n i list=""
  n="$(hosts_recorded)"
  for ((i = 1; i <= n; i++)); do list="$list${list:+ }root@$(addr "$i")"; done
  echo "export FERRY_SSH_HOSTS=\"$list\""
  echo "export FERRY_SSH_IDENTITY=$STATE/id_ed25519"
  echo "export FERRY_SSH_KNOWN_HOSTS=$STATE/known_hosts"
  echo "export FERRY_SSH_DIR=$STATE"
  list=""
  for ((i = 1; i <= n; i++)); do [ "$(kind_of "$i")" != 26c ] || list="$list${list:+ }$i"; done
  echo "export FERRY_SSH_DOCKER26C_HOSTS=\"$list\""
}

with_lock() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock -w 180 9 || die "another ssh-hosts.sh holds $STATE/.lock"
}

cmd="${1:-}"
[ "$#" -gt 0 ] && shift
case "$cmd" in
  up)
    n="${1:-3}"
    [[ "$n" =~ ^[1-9]$ ]] || die "up takes a number of hosts, 1 to 9"
    for tool in "$SSHD" "$SFTP_SERVER"; do [ -x "$tool" ] || die "$tool missing (apt-get install openssh-server; scripts/setup.sh does)"; done
    command -v dockerd >/dev/null || die "dockerd not installed (run scripts/setup.sh)"
    with_lock
    client_key
    [ "$(hosts_recorded)" -ge "$n" ] || echo "$n" >"$STATE/hosts"
    n="$(hosts_recorded)"
    for ((i = 1; i <= n; i++)); do
      want="$(wanted_kind "$i")"
      if [ -n "$want" ] && [ -d "$(hdir "$i")" ] && [ "$(kind_of "$i")" != "$want" ]; then
        log "host $i: rebuilding it with $(kind_label "$want") (it ran $(kind_label "$(kind_of "$i")"))"
        host_down "$i"
      fi
      mkdir -p "$(hdir "$i")"
      [ -e "$(hdir "$i")/engine-kind" ] || echo "${want:-20.10}" >"$(hdir "$i")/engine-kind"
    done
    for ((i = 1; i <= n; i++)); do
      if [ "$(kind_of "$i")" = 26c ]; then
        bash "$(dirname "${BASH_SOURCE[0]}")/docker26.sh" >&2 || die "Docker 26 is not available (scripts/docker26.sh failed)"
        break
      fi
    done
    for ((i = 1; i <= n; i++)); do
      net_up "$i"
      fs_up "$i"
      host_tools "$i"
    done
    # Engines start in parallel: each takes a few seconds, mostly waiting.
    pids=()
    for ((i = 1; i <= n; i++)); do dockerd_up "$i" & pids+=("$!"); done
    for p in "${pids[@]}"; do wait "$p" || die "an engine failed to start"; done
    for ((i = 1; i <= n; i++)); do sshd_up "$i"; done
    write_known_hosts "$n"
    log "$n hosts up: $(for ((i = 1; i <= n; i++)); do printf '%s-%s=%s ' "$HOSTNAME_PREFIX" "$i" "$(addr "$i")"; done)"
    print_env
    ;;
  down)
    with_lock
    for d in "$STATE"/h[0-9]*; do [ -d "$d" ] && host_down "${d##*/h}"; done
    if [ -e "$STATE/made-var-lib-ferry" ]; then
      rmdir /var/lib/ferry 2>/dev/null || true
    fi
    rm -rf "$STATE"
    log "down"
    ;;
  env)
    print_env
    ;;
  sshd)
    action="${1:-}" i="${2:-}"
    [[ "$i" =~ ^[1-9]$ ]] && [ -d "$(hdir "$i")" ] || die "no host '$i'"
    case "$action" in
      stop) sshd_down "$i" ;;
      start) sshd_up "$i" ;;
      *) die "sshd stop|start I" ;;
    esac
    ;;
  reset-engine)
    # An empty engine again (what a fresh host has), its state directory emptied too; sshd stays.
    i="${1:-}"
    [[ "$i" =~ ^[1-9]$ ]] && [ -d "$(hdir "$i")" ] || die "no host '$i'"
    if [ "$(kind_of "$i")" = 26c ]; then
      bash "$(dirname "${BASH_SOURCE[0]}")/docker26.sh" >&2 || die "Docker 26 is not available (scripts/docker26.sh failed)"
    fi
    with_lock
    engine_down "$i"
    find "$(hdir "$i")/state" -mindepth 1 -delete
    dockerd_up "$i"
    ;;
  kill-sessions)
    i="${1:-}"
    [[ "$i" =~ ^[1-9]$ ]] && [ -d "$(hdir "$i")" ] || die "no host '$i'"
    kill_sessions "$i"
    ;;
  status)
    rc=0
    n="$(hosts_recorded)"
    [ "$n" -gt 0 ] || { echo "no ssh hosts"; exit 1; }
    for ((i = 1; i <= n; i++)); do
      d="$(hdir "$i")"
      e=down; s=down
      engine_answers "$d/docker.sock" && e=up
      is_ours "$(pid_from "$d/sshd.pid")" sshd "$d/sshd_config" && s=up
      echo "$HOSTNAME_PREFIX-$i: root@$(addr "$i") engine $e ($(kind_label "$(kind_of "$i")")), sshd $s"
      [ "$e" = up ] && [ "$s" = up ] || rc=1
    done
    exit "$rc"
    ;;
  *)
    echo "usage: $0 up [N] | down | env | sshd stop|start I | reset-engine I | kill-sessions I | status" >&2
    exit 2
    ;;
esac
