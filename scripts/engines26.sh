#!/usr/bin/env bash
# Two Docker 26 engines (Debian 13's docker.io, unpacked by scripts/docker26.sh) for tests against
# what users run today, beside scripts/engines.sh's Docker 20.10 engines:
#   d26  - Docker 26 on the classic overlay2 image store (daemon.json `{}`);
#   d26c - Docker 26 on the containerd image store (features.containerd-snapshotter), the default of
#          fresh Docker 29 installs: image IDs are manifest digests, `docker save` writes OCI layouts.
# Each runs with ITS OWN containerd (from the prefix), in its own network namespace (only `lo`), with
# its own data root, exec root, pid files and sockets under $FERRY_E26_DIR/<name>.
#
#   engines26.sh up [d26|d26c]...      start (or reuse) engines; prints the ones THIS call started, one a line
#   engines26.sh down [d26|d26c]...    stop engines this script started (all when none named)
#   engines26.sh reset [d26|d26c]...   restart engines empty (all when none named)
#   engines26.sh env                   print `export ...` lines: FERRY_D26_DOCKER_HOST, FERRY_D26_NETNS,
#                                      FERRY_D26C_DOCKER_HOST, FERRY_D26C_NETNS, FERRY_COMPOSE_V2_CONFIG
#   engines26.sh status                say what runs; exit 0 only when both engines answer
#
# Ownership: an engine is ours only when its pid file names a live dockerd (containerd) whose
# command line names our socket (config); nothing is ever killed by name. A fresh engine starts
# empty: its data is removed on up, reset and down (FERRY_ENGINES_KEEP_DATA=1 keeps it on down).
set -euo pipefail

SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${FERRY_E26_DIR:-/tmp/ferry-e26}"
STATE="${STATE%/}"
PREFIX="${FERRY_DOCKER26_PREFIX:-/opt/docker26}"
PREFIX="${PREFIX%/}"
COMPOSE_CONFIG="$PREFIX/docker-config"
START_TIMEOUT="${FERRY_ENGINE_START_TIMEOUT:-60}"
ALL=(d26 d26c)

log() { echo "engines26: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      exec sudo -E bash "$0" "$@"
    fi
    die "must run as root (no sudo available)"
  fi
}

# shellcheck source=scripts/lib/procs.sh
. "$SCRIPTS/lib/procs.sh"

# Per-engine names. Everything an engine owns sits under its own dir, so that the dir is the marker
# that finds (and only finds) its processes and mounts.
dir_of() { echo "$STATE/$1"; }
sock_of() { echo "$STATE/$1/docker.sock"; }
ctd_sock_of() { echo "$STATE/$1/containerd.sock"; }
netns_of() { echo "ferry-$1"; }
netns_path_of() { echo "/var/run/netns/ferry-$1"; }
upper() { echo "$1" | tr '[:lower:]' '[:upper:]'; }

daemon_json_of() {
  case "$1" in
    d26) echo '{}' ;;
    d26c) echo '{"features":{"containerd-snapshotter":true}}' ;;
  esac
}

# The prefix's binaries first: dockerd looks up containerd-shim-runc-v2, docker-proxy and
# docker-init on PATH, and the system's (Docker 20.10's) must not be picked instead. runc comes
# from the system (Debian 12's), further down.
engine_path() { echo "$PREFIX/usr/bin:$PREFIX/usr/sbin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"; }

wait_answers() {
  local sock="$1" pidfile="$2" logfile="$3" name="$4" i
  for ((i = 0; i < START_TIMEOUT * 2; i++)); do
    if engine_answers "$sock"; then
      log "$name engine answers on unix://$sock ($((i / 2)) s)"
      return 0
    fi
    if [ "$i" -gt 4 ] && [ -s "$pidfile" ] && ! [ -d "/proc/$(pid_from "$pidfile")" ]; then
      break
    fi
    sleep 0.5
  done
  log "$name engine did not answer on unix://$sock within ${START_TIMEOUT}s; last lines of $logfile:"
  tail -n 30 "$logfile" >&2 || true
  return 1
}

ctd_answers() { timeout 5 "$PREFIX/usr/bin/ctr" --address "$1" version >/dev/null 2>&1; }

wait_ctd() { # name
  local d sock pid i
  d="$(dir_of "$1")" sock="$(ctd_sock_of "$1")"
  pid="$(pid_from "$d/containerd.pid")"
  for ((i = 0; i < 60; i++)); do
    if ctd_answers "$sock"; then return 0; fi
    [ -d "/proc/$pid" ] || break
    sleep 0.5
  done
  log "containerd of $1 did not answer on $sock; last lines of $d/containerd.log:"
  tail -n 30 "$d/containerd.log" >&2 || true
  return 1
}

netns_ok() { [ -e "$1" ] && nsenter --net="$1" true 2>/dev/null; }

netns_up() { # name
  local ns path d
  ns="$(netns_of "$1")" path="$(netns_path_of "$1")" d="$(dir_of "$1")"
  if ! netns_ok "$path"; then
    # A plain file left where the namespace mount was (after a crash) blocks `ip netns add`.
    if [ -e "$path" ]; then
      ip netns delete "$ns" 2>/dev/null || rm -f "$path"
    fi
    ip netns add "$ns"
    touch "$d/netns-owned"
    log "created network namespace $ns"
  fi
  nsenter --net="$path" ip link set lo up
}

# Stops what a previous run of this engine left: its dockerd (when the pid file still names ours),
# its containerd, container shims and their containers, mounts under its dir. Idempotent.
stop_all() { # name
  local d sock pid
  d="$(dir_of "$1")" sock="$(sock_of "$1")"
  pid="$(pid_from "$d/dockerd.pid")"
  [ -n "$pid" ] || pid="$(pid_from "$d/owned")"
  if is_ours "$pid" dockerd "$sock"; then
    log "stopping $1 engine (pid $pid)"
    stop_pid "$pid" "$1 engine"
  fi
  stop_if_ours "$d/containerd.pid" containerd "$d/containerd.toml" "containerd of $1"
  # Whatever is left with our dir in its command line: a containerd whose pid file was lost, the
  # shims of containers (they outlive both daemons), found by the marker, never by name alone.
  kill_stale_engine_children "$d/" "a previous $1 engine"
  unmount_under "$d"
  rm -f "$d/dockerd.pid" "$d/containerd.pid" "$d/owned" "$sock" "$(ctd_sock_of "$1")" "$(ctd_sock_of "$1").ttrpc"
}

wipe_data() { # name
  local d
  d="$(dir_of "$1")"
  rm -rf "$d/root" "$d/exec" "$d/ctd-root" "$d/ctd-state" "$d/ctd-opt"
}

engine_up() { # name
  local name="$1" d sock ctd_sock nspath pid
  d="$(dir_of "$name")" sock="$(sock_of "$name")" ctd_sock="$(ctd_sock_of "$name")" nspath="$(netns_path_of "$name")"
  mkdir -p "$d"
  pid="$(pid_from "$d/dockerd.pid")"
  if is_ours "$pid" dockerd "$sock"; then
    if engine_answers "$sock"; then
      log "$name engine already up (pid $pid)"
      return 0
    fi
    # Ours but not answering: maybe still starting.
    wait_answers "$sock" "$d/dockerd.pid" "$d/dockerd.log" "$name" && return 0
  fi
  for c in nsenter ip setsid; do command -v "$c" >/dev/null || die "$c not installed"; done
  command -v runc >/dev/null || die "runc not installed (apt-get install runc; docker.io pulls it in)"
  # Unix socket paths end at 108 bytes; the longest of ours is dockerd's
  # $d/exec/libnetwork/<12 hex>.sock (34 bytes more than $d).
  [ "${#d}" -le 70 ] || die "FERRY_E26_DIR too long for unix sockets: $STATE"
  stop_all "$name"
  # A fresh engine starts empty, like a newly installed host.
  wipe_data "$name"
  mkdir -p "$d/root" "$d/exec" "$d/ctd-root" "$d/ctd-state" "$d/ctd-opt"
  # Own config files: /etc/docker/daemon.json and /etc/containerd/config.toml belong to the
  # system's engine. The CRI plugin is off (Docker's own managed containerd does the same); the
  # root, state and socket are ours, so this containerd never meets /run/containerd/containerd.sock
  # (which a Docker 20.10 dockerd would adopt as "the system containerd").
  daemon_json_of "$name" >"$d/daemon.json"
  write_containerd_config "$d" "$ctd_sock"
  netns_up "$name"
  log "starting containerd of $name in netns $(netns_of "$name") (log: $d/containerd.log)"
  : >"$d/containerd.log"
  # setsid: the engine outlives this script and misses the Ctrl-C / SIGTERM sent to the process
  # group of whoever ran us. nsenter --net only (`ip netns exec` remounts /sys and hides cgroups).
  # setsid and nsenter exec, so $! is the daemon's own pid.
  PATH="$(engine_path)" setsid nsenter --net="$nspath" "$PREFIX/usr/bin/containerd" \
    --config "$d/containerd.toml" >>"$d/containerd.log" 2>&1 </dev/null 9>&- &
  echo "$!" >"$d/containerd.pid"
  wait_ctd "$name" || { stop_all "$name"; die "containerd of $name failed to start"; }

  log "starting $name engine in netns $(netns_of "$name") (log: $d/dockerd.log)"
  : >"$d/dockerd.log"
  PATH="$(engine_path)" setsid nsenter --net="$nspath" "$PREFIX/usr/sbin/dockerd" \
    --config-file "$d/daemon.json" \
    --containerd "$ctd_sock" \
    --data-root "$d/root" \
    --exec-root "$d/exec" \
    --pidfile "$d/dockerd.pid" \
    -H "unix://$sock" \
    >>"$d/dockerd.log" 2>&1 </dev/null 9>&- &
  # Recorded before waiting so that a failed start can still be cleaned up by `down`.
  echo "$!" >"$d/owned"
  wait_answers "$sock" "$d/dockerd.pid" "$d/dockerd.log" "$name" || die "$name engine failed to start"
  echo "$name"
}

engine_down() { # name
  local name="$1" d pid
  d="$(dir_of "$name")"
  [ -d "$d" ] || { log "$name engine not running"; return 0; }
  pid="$(pid_from "$d/dockerd.pid")"
  is_ours "$pid" dockerd "$(sock_of "$name")" || log "$name engine not running"
  stop_all "$name"
  if [ "${FERRY_ENGINES_KEEP_DATA:-0}" != 1 ]; then wipe_data "$name"; fi
  if [ -e "$d/netns-owned" ]; then
    ip netns delete "$(netns_of "$name")" 2>/dev/null || true
    rm -f "$d/netns-owned"
    log "deleted network namespace $(netns_of "$name")"
  fi
}

with_lock() {
  mkdir -p "$STATE"
  exec 9>"$STATE/.lock"
  flock -w 180 9 || die "another engines26.sh holds $STATE/.lock"
}

check_targets() {
  local t
  for t in "$@"; do
    case "$t" in d26 | d26c) ;; *) die "unknown engine '$t' (d26|d26c)" ;; esac
  done
}

cmd="${1:-}"
[ "$#" -gt 0 ] && shift
case "$cmd" in
  up)
    check_targets "$@"
    need_root up "$@"
    bash "$SCRIPTS/docker26.sh" >&2 || die "Docker 26 is not available (scripts/docker26.sh failed)"
    with_lock
    [ "$#" -gt 0 ] || set -- "${ALL[@]}"
    for t in "$@"; do engine_up "$t"; done
    ;;
  down)
    check_targets "$@"
    need_root down "$@"
    with_lock
    [ "$#" -gt 0 ] || set -- "${ALL[@]}"
    for t in "$@"; do engine_down "$t"; done
    ;;
  reset)
    check_targets "$@"
    need_root reset "$@"
    bash "$SCRIPTS/docker26.sh" >&2 || die "Docker 26 is not available (scripts/docker26.sh failed)"
    with_lock
    [ "$#" -gt 0 ] || set -- "${ALL[@]}"
    # engine_up stops and wipes whatever runs, then starts empty.
    for t in "$@"; do stop_all "$t"; engine_up "$t" >/dev/null; done
    ;;
  env)
    for t in "${ALL[@]}"; do
      echo "export FERRY_$(upper "$t")_DOCKER_HOST=unix://$(sock_of "$t")"
      echo "export FERRY_$(upper "$t")_NETNS=$(netns_path_of "$t")"
    done
    echo "export FERRY_DOCKER26_PREFIX=$PREFIX"
    echo "export FERRY_COMPOSE_V2_CONFIG=$COMPOSE_CONFIG"
    ;;
  status)
    rc=0
    for t in "${ALL[@]}"; do
      if engine_answers "$(sock_of "$t")"; then
        v="$(timeout 10 docker -H "unix://$(sock_of "$t")" info --format '{{.ServerVersion}} {{.Driver}}' 2>/dev/null || true)"
        printf '%-5s up   unix://%s (netns %s; %s)\n' "$t:" "$(sock_of "$t")" "$(netns_of "$t")" "$v"
      else
        printf '%-5s down\n' "$t:"
        rc=1
      fi
    done
    exit "$rc"
    ;;
  *)
    echo "usage: $0 up|down|reset [d26|d26c]... | env | status" >&2
    exit 2
    ;;
esac
