#!/usr/bin/env bash
# A dedicated, throw-away Docker engine for benches that need a "fresh engine" (an empty host):
# its own network namespace (only `lo`, like the airgap engine of scripts/engines.sh), its own data
# root, exec root, pid file and socket under $FERRY_BENCH_ENGINE_DIR. It never touches the build
# engine (/var/run/docker.sock) or the airgap engine that tests use.
#
#   bench/bench-engine.sh up      start it (or reuse it when it already answers); prints DOCKER_HOST=…
#   bench/bench-engine.sh reset   stop it, wipe its data root, start it again: an empty engine
#   bench/bench-engine.sh down    stop it, wipe its data, delete its network namespace
#   bench/bench-engine.sh host    print the DOCKER_HOST value for it
#
# FERRY_BENCH_ENGINE_KIND picks the engine:
#   classic (default)  the system's dockerd (Docker 20.10), classic image store;
#                      dir /tmp/ferry-bench-engine, namespace ferry-bench
#   d26c               Docker 26 from scripts/docker26.sh's prefix on the containerd image store
#                      (features.containerd-snapshotter), as scripts/engines26.sh's d26c, but a
#                      dockerd, containerd, data root and namespace of the bench's own:
#                      dir /tmp/ferry-bench-d26c, namespace ferry-bench-d26c. The tests' d26c is
#                      reset by every test run, so the bench cannot share it.
#
# Only the dockerd named by our pid file (and whose command line names our socket) is ever
# signalled; nothing is killed by name.
set -euo pipefail

KIND="${FERRY_BENCH_ENGINE_KIND:-classic}"
case "$KIND" in
  classic)
    DIR="${FERRY_BENCH_ENGINE_DIR:-/tmp/ferry-bench-engine}"
    NETNS=ferry-bench
    DOCKERD=dockerd
    ENGINE_PATH="$PATH"
    DAEMON_JSON='{}'
    ;;
  d26c)
    DIR="${FERRY_BENCH_ENGINE_DIR:-/tmp/ferry-bench-d26c}"
    NETNS=ferry-bench-d26c
    PREFIX="${FERRY_DOCKER26_PREFIX:-/opt/docker26}"
    PREFIX="${PREFIX%/}"
    DOCKERD="$PREFIX/usr/sbin/dockerd"
    # The prefix first: dockerd starts the containerd, shims, docker-proxy and docker-init it
    # finds on PATH, and the system's (Docker 20.10's) must not be picked instead.
    ENGINE_PATH="$PREFIX/usr/bin:$PREFIX/usr/sbin:$PATH"
    DAEMON_JSON='{"features":{"containerd-snapshotter":true}}'
    ;;
  *)
    echo "bench-engine: ERROR: FERRY_BENCH_ENGINE_KIND must be classic or d26c (got '$KIND')" >&2
    exit 1
    ;;
esac
NETNS_PATH="/var/run/netns/$NETNS"
SOCK="$DIR/docker.sock"
PIDFILE="$DIR/docker.pid"
LOGFILE="$DIR/dockerd.log"
START_TIMEOUT="${FERRY_ENGINE_START_TIMEOUT:-60}"

log() { echo "bench-engine: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (dockerd and network namespaces need it)"
# containerd puts its sockets under the exec root; unix socket paths are limited to 108 bytes.
[ "${#DIR}" -le 60 ] || die "FERRY_BENCH_ENGINE_DIR too long for unix sockets: $DIR"

# shellcheck source=scripts/lib/procs.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/procs.sh"

answers() { engine_answers "$SOCK"; }

# The pid of our engine: a dockerd whose command line names our socket.
our_pid() {
  local pid
  pid="$(pid_from "$PIDFILE")"
  is_ours "$pid" dockerd "unix://$SOCK" || return 1
  echo "$pid"
}

stop_engine() {
  local pid
  if pid="$(our_pid)"; then
    log "stopping the bench engine (pid $pid)"
    stop_pid "$pid" "bench engine"
  fi
  kill_stale_engine_children "$DIR/exec/" "a previous bench engine"
  unmount_under "$DIR"
  rm -f "$PIDFILE" "$SOCK"
}

wipe() {
  rm -rf "$DIR/root" "$DIR/exec"
}

netns_up() {
  if ! { [ -e "$NETNS_PATH" ] && nsenter --net="$NETNS_PATH" true 2>/dev/null; }; then
    [ -e "$NETNS_PATH" ] && { ip netns delete "$NETNS" 2>/dev/null || rm -f "$NETNS_PATH"; }
    ip netns add "$NETNS"
    log "created network namespace $NETNS"
  fi
  nsenter --net="$NETNS_PATH" ip link set lo up
}

start_engine() {
  local i pid
  if [ "$KIND" = d26c ]; then
    bash "$(dirname "${BASH_SOURCE[0]}")/../scripts/docker26.sh" >&2 || die "Docker 26 is not available (scripts/docker26.sh failed)"
    # Without --containerd, a dockerd adopts a containerd listening on the system socket instead of
    # starting its own (in our namespace, with its content store under our data root).
    [ ! -e /run/containerd/containerd.sock ] || die "/run/containerd/containerd.sock exists: dockerd would use that containerd rather than its own"
  fi
  command -v "$DOCKERD" >/dev/null || die "$DOCKERD not installed (run scripts/setup.sh)"
  mkdir -p "$DIR/root" "$DIR/exec"
  # Its own config file: /etc/docker/daemon.json is meant for the system engine.
  echo "$DAEMON_JSON" >"$DIR/daemon.json"
  netns_up
  : >"$LOGFILE"
  # nsenter --net only (`ip netns exec` remounts /sys and hides the cgroups); setsid so that a
  # Ctrl-C of the bench does not reach the engine before `down` stops it properly.
  PATH="$ENGINE_PATH" setsid nsenter --net="$NETNS_PATH" "$DOCKERD" \
    --config-file "$DIR/daemon.json" \
    --data-root "$DIR/root" \
    --exec-root "$DIR/exec" \
    --pidfile "$PIDFILE" \
    -H "unix://$SOCK" \
    --containerd-namespace ferry-bench \
    --containerd-plugins-namespace ferry-bench-plugins \
    >>"$LOGFILE" 2>&1 </dev/null &
  for ((i = 0; i < START_TIMEOUT * 2; i++)); do
    if answers; then
      log "bench engine answers on unix://$SOCK ($((i / 2)) s)"
      return 0
    fi
    pid="$(pid_from "$PIDFILE")"
    if [ "$i" -gt 4 ] && [ -n "$pid" ] && ! [ -d "/proc/$pid" ]; then break; fi
    sleep 0.5
  done
  log "bench engine did not answer within ${START_TIMEOUT}s; last lines of $LOGFILE:"
  tail -n 30 "$LOGFILE" >&2 || true
  exit 1
}

mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock -w 120 9 || die "another bench-engine.sh holds $DIR/.lock"

case "${1:-}" in
  up)
    if our_pid >/dev/null && answers; then
      log "bench engine already up"
    else
      stop_engine
      wipe
      start_engine 9>&-
    fi
    echo "DOCKER_HOST=unix://$SOCK"
    ;;
  reset)
    stop_engine
    wipe
    start_engine 9>&-
    echo "DOCKER_HOST=unix://$SOCK"
    ;;
  down)
    stop_engine
    wipe
    rm -f "$DIR/daemon.json" "$LOGFILE"
    if [ -e "$NETNS_PATH" ]; then ip netns delete "$NETNS" 2>/dev/null || true; log "deleted network namespace $NETNS"; fi
    ;;
  host)
    echo "unix://$SOCK"
    ;;
  *)
    echo "usage: $0 up|reset|down|host" >&2
    exit 2
    ;;
esac
