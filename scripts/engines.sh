#!/usr/bin/env bash
# Two real Docker engines for tests, the demo and benches:
#   build  - the engine on the default socket, where bundles are created;
#   airgap - a second engine inside its own network namespace (only `lo`), playing a locked-down host.
#
#   engines.sh up [build|airgap]...    start (or reuse) engines; prints the ones THIS call started, one a line
#   engines.sh down [build|airgap]...  stop engines this script started (all when none named)
#   engines.sh reset [airgap]          restart the airgap engine empty (keeps it up if it was up)
#   engines.sh env                     print `export ...` lines for FERRY_BUILD_DOCKER_HOST / FERRY_TARGET_DOCKER_HOST
#   engines.sh status                  say what runs; exit 0 only when both engines answer
#
# Ownership: an engine is ours only when we started it and its pid file still names a live dockerd.
# `down` never touches an engine it did not start, and never kills anything by name.
set -euo pipefail

STATE="${FERRY_ENGINES_DIR:-/tmp/ferry-engines}"
NETNS=ferry-airgap
NETNS_PATH="/var/run/netns/$NETNS"
BUILD_SOCK=/var/run/docker.sock
AIRGAP_DIR="$STATE/airgap"
AIRGAP_SOCK="$AIRGAP_DIR/docker.sock"
BUILD_DIR="$STATE/build"
START_TIMEOUT="${FERRY_ENGINE_START_TIMEOUT:-60}"

log() { echo "engines: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    # dockerd and network namespaces need root; re-run the whole command under sudo rather than
    # sprinkling sudo over every line.
    if command -v sudo >/dev/null 2>&1; then
      exec sudo -E bash "$0" "$@"
    fi
    die "must run as root (no sudo available)"
  fi
}

# shellcheck source=scripts/lib/procs.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/procs.sh"

wait_answers() {
  local sock="$1" pidfile="$2" logfile="$3" name="$4" i
  for ((i = 0; i < START_TIMEOUT * 2; i++)); do
    if engine_answers "$sock"; then
      log "$name engine answers on unix://$sock ($((i / 2)) s)"
      return 0
    fi
    # A dockerd that died at start will not come back: fail now, with its reason.
    if [ "$i" -gt 4 ] && [ -s "$pidfile" ] && ! [ -d "/proc/$(pid_from "$pidfile")" ]; then
      break
    fi
    sleep 0.5
  done
  log "$name engine did not answer on unix://$sock within ${START_TIMEOUT}s; last lines of $logfile:"
  tail -n 30 "$logfile" >&2 || true
  return 1
}

stop_engine() { # pid name
  log "stopping $2 engine (pid $1)"
  stop_pid "$1" "$2 engine"
}

# --- build engine -------------------------------------------------------------------------------

build_up() {
  local pidfile="$BUILD_DIR/dockerd.pid" logfile="$BUILD_DIR/dockerd.log" pid
  mkdir -p "$BUILD_DIR"
  pid="$(pid_from "$pidfile")"
  if engine_answers "$BUILD_SOCK"; then
    if [ -e "$BUILD_DIR/owned" ] && is_ours "$pid" dockerd "$pidfile"; then
      log "build engine already up (started by engines.sh, pid $pid)"
    else
      # Someone else's engine (systemd, a developer's dockerd): use it, never stop it.
      rm -f "$BUILD_DIR/owned" "$pidfile"
      log "build engine already up on unix://$BUILD_SOCK (not ours; will not stop it)"
    fi
    return 0
  fi
  if [ -e "$BUILD_DIR/owned" ] && is_ours "$pid" dockerd "$pidfile"; then
    # Ours but not answering: maybe still starting, so give it the usual time before giving up.
    wait_answers "$BUILD_SOCK" "$pidfile" "$logfile" build && return 0
    stop_engine "$pid" build
  fi
  command -v dockerd >/dev/null || die "dockerd not installed (run scripts/setup.sh)"
  rm -f "$pidfile" "$BUILD_DIR/owned"
  # A socket left by a killed engine would make the next client wait on nothing.
  [ -S "$BUILD_SOCK" ] && rm -f "$BUILD_SOCK"
  # dockerd refuses to start while /var/run/docker.pid names a live dockerd; a dead one is stale.
  if [ -s /var/run/docker.pid ] && ! [ -d "/proc/$(pid_from /var/run/docker.pid)" ]; then
    rm -f /var/run/docker.pid
  fi
  log "starting build engine (log: $logfile)"
  : >"$logfile"
  # setsid: the engine must outlive this script and not get the Ctrl-C / SIGTERM sent to the
  # process group of whoever ran us (vitest, npm).
  setsid dockerd -H "unix://$BUILD_SOCK" --pidfile "$pidfile" >>"$logfile" 2>&1 </dev/null 9>&- &
  # Ownership is recorded before waiting so that a failed start can still be cleaned up by `down`.
  echo "$!" >"$BUILD_DIR/owned"
  wait_answers "$BUILD_SOCK" "$pidfile" "$logfile" build || die "build engine failed to start"
  echo build
}

build_down() {
  local pidfile="$BUILD_DIR/dockerd.pid" pid
  pid="$(pid_from "$pidfile")"
  [ -n "$pid" ] || pid="$(pid_from "$BUILD_DIR/owned")"
  if [ -e "$BUILD_DIR/owned" ] && is_ours "$pid" dockerd "$BUILD_SOCK"; then
    stop_engine "$pid" build
  elif [ -e "$BUILD_DIR/owned" ]; then
    log "build engine recorded as ours is not running; clearing its record"
  else
    log "build engine not started by engines.sh; leaving it alone"
    return 0
  fi
  rm -f "$BUILD_DIR/owned" "$pidfile"
}

# --- airgap engine ------------------------------------------------------------------------------

netns_ok() { [ -e "$NETNS_PATH" ] && nsenter --net="$NETNS_PATH" true 2>/dev/null; }

netns_up() {
  if ! netns_ok; then
    # A plain file left where the namespace mount was (e.g. after a crash) blocks `ip netns add`.
    if [ -e "$NETNS_PATH" ]; then
      ip netns delete "$NETNS" 2>/dev/null || rm -f "$NETNS_PATH"
    fi
    ip netns add "$NETNS"
    touch "$AIRGAP_DIR/netns-owned"
    log "created network namespace $NETNS"
  fi
  nsenter --net="$NETNS_PATH" ip link set lo up
}

airgap_up() {
  local pidfile="$AIRGAP_DIR/dockerd.pid" logfile="$AIRGAP_DIR/dockerd.log" pid
  mkdir -p "$AIRGAP_DIR"
  pid="$(pid_from "$pidfile")"
  if is_ours "$pid" dockerd "$AIRGAP_SOCK"; then
    if engine_answers "$AIRGAP_SOCK"; then
      log "airgap engine already up (pid $pid)"
      return 0
    fi
    wait_answers "$AIRGAP_SOCK" "$pidfile" "$logfile" airgap && return 0
    stop_engine "$pid" airgap
  fi
  command -v dockerd >/dev/null || die "dockerd not installed (run scripts/setup.sh)"
  command -v nsenter >/dev/null || die "nsenter not installed (util-linux)"
  command -v ip >/dev/null || die "ip not installed (iproute2)"
  # Unix socket paths are limited to 108 bytes and containerd puts its own under the exec root.
  [ "${#AIRGAP_DIR}" -le 60 ] || die "FERRY_ENGINES_DIR too long for unix sockets: $STATE"
  kill_stale_engine_children "$AIRGAP_DIR/exec/" "a previous airgap engine"
  # A fresh airgap engine starts empty, like a newly installed host: tests then never depend on
  # what a previous, perhaps killed, run left in it.
  unmount_under "$AIRGAP_DIR"
  rm -rf "$AIRGAP_DIR/root" "$AIRGAP_DIR/exec"
  rm -f "$pidfile" "$AIRGAP_SOCK"
  mkdir -p "$AIRGAP_DIR/root" "$AIRGAP_DIR/exec"
  # Its own config file: settings in /etc/docker/daemon.json (hosts, data-root, pidfile) are
  # meant for the system engine and would clash with ours.
  echo '{}' >"$AIRGAP_DIR/daemon.json"
  netns_up
  log "starting airgap engine in netns $NETNS (log: $logfile)"
  : >"$logfile"
  # nsenter --net only: `ip netns exec` also remounts /sys, which hides the cgroup hierarchy and
  # makes dockerd fail ("Devices cgroup isn't mounted"). Separate containerd namespaces keep the
  # two engines apart should both ever share a system containerd.
  setsid nsenter --net="$NETNS_PATH" dockerd \
    --config-file "$AIRGAP_DIR/daemon.json" \
    --data-root "$AIRGAP_DIR/root" \
    --exec-root "$AIRGAP_DIR/exec" \
    --pidfile "$pidfile" \
    -H "unix://$AIRGAP_SOCK" \
    --containerd-namespace ferry-airgap \
    --containerd-plugins-namespace ferry-airgap-plugins \
    >>"$logfile" 2>&1 </dev/null 9>&- &
  echo "$!" >"$AIRGAP_DIR/owned"
  wait_answers "$AIRGAP_SOCK" "$pidfile" "$logfile" airgap || die "airgap engine failed to start"
  echo airgap
}

airgap_down() {
  local pidfile="$AIRGAP_DIR/dockerd.pid" pid
  pid="$(pid_from "$pidfile")"
  [ -n "$pid" ] || pid="$(pid_from "$AIRGAP_DIR/owned")"
  if is_ours "$pid" dockerd "$AIRGAP_SOCK"; then
    stop_engine "$pid" airgap
  else
    log "airgap engine not running"
  fi
  kill_stale_engine_children "$AIRGAP_DIR/exec/" "a previous airgap engine"
  unmount_under "$AIRGAP_DIR"
  if [ "${FERRY_ENGINES_KEEP_DATA:-0}" != 1 ]; then
    rm -rf "$AIRGAP_DIR/root" "$AIRGAP_DIR/exec"
  fi
  rm -f "$pidfile" "$AIRGAP_SOCK" "$AIRGAP_DIR/owned"
  if [ -e "$AIRGAP_DIR/netns-owned" ]; then
    ip netns delete "$NETNS" 2>/dev/null || true
    rm -f "$AIRGAP_DIR/netns-owned"
    log "deleted network namespace $NETNS"
  fi
}

# --- commands -----------------------------------------------------------------------------------

with_lock() {
  mkdir -p "$STATE"
  # Two `up`s at once (a test run and the demo) must not both start an engine.
  exec 9>"$STATE/.lock"
  flock -w 180 9 || die "another engines.sh holds $STATE/.lock"
}

check_targets() {
  local t
  for t in "$@"; do
    case "$t" in build | airgap) ;; *) die "unknown engine '$t' (build|airgap)" ;; esac
  done
}

cmd="${1:-}"
[ "$#" -gt 0 ] && shift
case "$cmd" in
  up)
    check_targets "$@"
    need_root up "$@"
    with_lock
    [ "$#" -gt 0 ] || set -- build airgap
    for t in "$@"; do "${t}_up"; done
    ;;
  down)
    check_targets "$@"
    need_root down "$@"
    with_lock
    [ "$#" -gt 0 ] || set -- airgap build
    for t in "$@"; do "${t}_down"; done
    ;;
  reset)
    # A fresh, empty airgap engine (what a new host looks like) without changing who owns it:
    # an engine left up by an earlier `up` stays up for its owner after the caller is done.
    [ "$#" -eq 0 ] || [ "$*" = airgap ] || die "only the airgap engine can be reset"
    need_root reset "$@"
    with_lock
    pid="$(pid_from "$AIRGAP_DIR/dockerd.pid")"
    if is_ours "$pid" dockerd "$AIRGAP_SOCK"; then stop_engine "$pid" airgap; fi
    # The namespace outlives the engine: bridges of networks the empty engine no longer has would
    # pile up run after run until Docker finds no free address pool. With the engine stopped none
    # is in use; the engine makes again those of the networks it keeps.
    if netns_ok; then
      for link in $(nsenter --net="$NETNS_PATH" ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
        case "$link" in br-*|docker_gwbridge) nsenter --net="$NETNS_PATH" ip link delete "$link" 2>/dev/null || true ;; esac
      done
    fi
    airgap_up >/dev/null
    ;;
  env)
    echo "export FERRY_BUILD_DOCKER_HOST=unix://$BUILD_SOCK"
    echo "export FERRY_TARGET_DOCKER_HOST=unix://$AIRGAP_SOCK"
    echo "export FERRY_TARGET_NETNS=$NETNS_PATH"
    ;;
  status)
    rc=0
    if engine_answers "$BUILD_SOCK"; then
      owner="not ours"; [ -e "$BUILD_DIR/owned" ] && owner="started by engines.sh"
      echo "build:  up   unix://$BUILD_SOCK ($owner)"
    else
      echo "build:  down"; rc=1
    fi
    if engine_answers "$AIRGAP_SOCK"; then
      echo "airgap: up   unix://$AIRGAP_SOCK (netns $NETNS)"
    else
      echo "airgap: down"; rc=1
    fi
    exit "$rc"
    ;;
  *)
    echo "usage: $0 up|down [build|airgap]... | reset [airgap] | env | status" >&2
    exit 2
    ;;
esac
