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

# Pinging through the CLI rather than testing for the socket file: a stale socket from a killed
# engine exists but answers nothing. `timeout` because a half-dead engine can accept and hang.
answers() { timeout 10 docker -H "unix://$1" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

pid_from() { if [ -s "$1" ]; then tr -dc '0-9' <"$1"; fi; }

# A pid only counts as our engine when it is a dockerd whose command line names $2 (socket or
# pid file): pids get reused after a crash, and we must never signal a stranger.
is_our_dockerd() {
  local pid="$1" marker="$2"
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker"
}

wait_answers() {
  local sock="$1" pidfile="$2" logfile="$3" name="$4" i
  for ((i = 0; i < START_TIMEOUT * 2; i++)); do
    if answers "$sock"; then
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

stop_pid() {
  local pid="$1" name="$2" i
  log "stopping $name engine (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || return 0
  # dockerd gives running containers up to ~15 s to stop before it exits itself.
  for ((i = 0; i < 90; i++)); do
    [ -d "/proc/$pid" ] || return 0
    # A zombie has exited; only its parent can reap it.
    [ "$(awk '/^State:/{print $2}' "/proc/$pid/status" 2>/dev/null)" = Z ] && return 0
    sleep 0.5
  done
  log "$name engine (pid $pid) ignored SIGTERM for 45 s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 20; i++)); do [ -d "/proc/$pid" ] || return 0; sleep 0.5; done
  die "$name engine (pid $pid) did not exit"
}

# Mounts left under our state dir by a killed engine (overlay, netns bind mounts) keep rm -rf
# from working; unmount them deepest first. Only paths under $STATE are touched.
unmount_under() {
  local dir="$1" m
  [ -d "$dir" ] || return 0
  awk '{print $5}' /proc/self/mountinfo | { grep -F -- "$dir/" || true; } | sort -r | while read -r m; do
    case "$m" in "$dir"/*) umount -l "$m" 2>/dev/null || true ;; esac
  done
}

# --- build engine -------------------------------------------------------------------------------

build_up() {
  local pidfile="$BUILD_DIR/dockerd.pid" logfile="$BUILD_DIR/dockerd.log" pid
  mkdir -p "$BUILD_DIR"
  pid="$(pid_from "$pidfile")"
  if answers "$BUILD_SOCK"; then
    if [ -e "$BUILD_DIR/owned" ] && is_our_dockerd "$pid" "$pidfile"; then
      log "build engine already up (started by engines.sh, pid $pid)"
    else
      # Someone else's engine (systemd, a developer's dockerd): use it, never stop it.
      rm -f "$BUILD_DIR/owned" "$pidfile"
      log "build engine already up on unix://$BUILD_SOCK (not ours; will not stop it)"
    fi
    return 0
  fi
  if [ -e "$BUILD_DIR/owned" ] && is_our_dockerd "$pid" "$pidfile"; then
    # Ours but not answering: maybe still starting, so give it the usual time before giving up.
    wait_answers "$BUILD_SOCK" "$pidfile" "$logfile" build && return 0
    stop_pid "$pid" build
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
  if [ -e "$BUILD_DIR/owned" ] && is_our_dockerd "$pid" "$BUILD_SOCK"; then
    stop_pid "$pid" build
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
  if is_our_dockerd "$pid" "$AIRGAP_SOCK"; then
    if answers "$AIRGAP_SOCK"; then
      log "airgap engine already up (pid $pid)"
      return 0
    fi
    wait_answers "$AIRGAP_SOCK" "$pidfile" "$logfile" airgap && return 0
    stop_pid "$pid" airgap
  fi
  command -v dockerd >/dev/null || die "dockerd not installed (run scripts/setup.sh)"
  command -v nsenter >/dev/null || die "nsenter not installed (util-linux)"
  command -v ip >/dev/null || die "ip not installed (iproute2)"
  # Unix socket paths are limited to 108 bytes and containerd puts its own under the exec root.
  [ "${#AIRGAP_DIR}" -le 60 ] || die "FERRY_ENGINES_DIR too long for unix sockets: $STATE"
  kill_stale_containerd
  kill_stale_shims
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

# The containerd that dockerd supervises outlives a SIGKILLed dockerd; a new dockerd would adopt
# it, but it still sits in the old (possibly deleted) network namespace with old state.
kill_stale_containerd() {
  local cpidfile="$AIRGAP_DIR/exec/containerd/containerd.pid" cpid i
  cpid="$(pid_from "$cpidfile")"
  [ -n "$cpid" ] && [ -d "/proc/$cpid" ] || return 0
  [ "$(cat "/proc/$cpid/comm" 2>/dev/null)" = containerd ] || return 0
  tr '\0' ' ' <"/proc/$cpid/cmdline" | grep -qF -- "$AIRGAP_DIR/" || return 0
  log "stopping leftover containerd of a previous airgap engine (pid $cpid)"
  kill -TERM "$cpid" 2>/dev/null || true
  for ((i = 0; i < 20; i++)); do [ -d "/proc/$cpid" ] || return 0; sleep 0.5; done
  kill -KILL "$cpid" 2>/dev/null || true
}

# Containers of a killed airgap engine keep running under their shims, holding mounts in the
# data root we are about to wipe. Only shims whose command line names our exec root are touched;
# killing a container's init (its direct child) ends its whole pid namespace.
kill_stale_shims() {
  local proc pid child
  for proc in /proc/[0-9]*; do
    pid="${proc#/proc/}"
    case "$(cat "$proc/comm" 2>/dev/null)" in containerd-shim*) ;; *) continue ;; esac
    tr '\0' ' ' <"$proc/cmdline" 2>/dev/null | grep -qF -- "$AIRGAP_DIR/exec/" || continue
    log "stopping leftover container shim of a previous airgap engine (pid $pid)"
    # shellcheck disable=SC2013 # `children` is one line of space-separated pids
    for child in $(cat "$proc"/task/*/children 2>/dev/null); do kill -KILL "$child" 2>/dev/null || true; done
    kill -KILL "$pid" 2>/dev/null || true
  done
}

airgap_down() {
  local pidfile="$AIRGAP_DIR/dockerd.pid" pid
  pid="$(pid_from "$pidfile")"
  [ -n "$pid" ] || pid="$(pid_from "$AIRGAP_DIR/owned")"
  if is_our_dockerd "$pid" "$AIRGAP_SOCK"; then
    stop_pid "$pid" airgap
  else
    log "airgap engine not running"
  fi
  kill_stale_containerd
  kill_stale_shims
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
    if is_our_dockerd "$pid" "$AIRGAP_SOCK"; then stop_pid "$pid" airgap; fi
    airgap_up >/dev/null
    ;;
  env)
    echo "export FERRY_BUILD_DOCKER_HOST=unix://$BUILD_SOCK"
    echo "export FERRY_TARGET_DOCKER_HOST=unix://$AIRGAP_SOCK"
    echo "export FERRY_TARGET_NETNS=$NETNS_PATH"
    ;;
  status)
    rc=0
    if answers "$BUILD_SOCK"; then
      owner="not ours"; [ -e "$BUILD_DIR/owned" ] && owner="started by engines.sh"
      echo "build:  up   unix://$BUILD_SOCK ($owner)"
    else
      echo "build:  down"; rc=1
    fi
    if answers "$AIRGAP_SOCK"; then
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
