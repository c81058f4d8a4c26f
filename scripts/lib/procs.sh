# Sourced, not run, by scripts/engines.sh, scripts/ssh-hosts.sh and bench/bench-engine.sh: the
# process and mount handling every script that runs its own dockerd needs. The sourcing script
# defines log and die. The rule all of it keeps: only a process whose pid file AND command line are
# ours is ever signalled, never anything by name; only mounts under our own directories are touched.
# shellcheck shell=bash

pid_from() { if [ -s "$1" ]; then tr -dc '0-9' <"$1"; fi; }

# Pinging through the CLI rather than testing for the socket file: a stale socket from a killed
# engine exists but answers nothing. `timeout` because a half-dead engine can accept and hang.
engine_answers() { timeout 10 docker -H "unix://$1" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# A pid counts as ours only when it runs $2 (comm) and its command line names $3 (a socket, a pid
# file, a directory of ours): pids get reused after a crash, and a stranger must never be signalled.
is_ours() {
  local pid="$1" comm="$2" marker="$3"
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker"
}

# Whether pid $1 is gone within $2 seconds. A zombie has exited; only its parent can reap it.
wait_gone() {
  local i
  for ((i = 0; i < $2 * 2; i++)); do
    [ -d "/proc/$1" ] || return 0
    [ "$(awk '/^State:/{print $2}' "/proc/$1/status" 2>/dev/null)" = Z ] && return 0
    sleep 0.5
  done
  return 1
}

# SIGTERM, then SIGKILL after 45 s (dockerd gives running containers ~15 s to stop before it exits).
stop_pid() { # pid what
  kill -TERM "$1" 2>/dev/null || return 0
  wait_gone "$1" 45 && return 0
  log "$2 (pid $1) ignored SIGTERM for 45 s; sending SIGKILL"
  kill -KILL "$1" 2>/dev/null || true
  wait_gone "$1" 10 || die "$2 (pid $1) did not exit"
}

descendants() {
  local pid="$1" c
  # shellcheck disable=SC2013 # `children` is one line of space-separated pids
  for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
    echo "$c"
    descendants "$c"
  done
}

# What a killed dockerd leaves running: the containerd it supervised (a new dockerd would adopt it,
# in the old, possibly deleted network namespace, with old state) and the shims of its containers,
# which hold mounts in the data root about to be wiped. Found by the exec root in their command
# line; killing a shim's descendants ends each container's whole pid namespace.
kill_stale_engine_children() { # exec-root what
  local proc pid c
  for proc in /proc/[0-9]*; do
    pid="${proc#/proc/}"
    case "$(cat "$proc/comm" 2>/dev/null)" in
      containerd)
        tr '\0' ' ' <"$proc/cmdline" 2>/dev/null | grep -qF -- "$1" || continue
        log "stopping leftover containerd of $2 (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || kill -KILL "$pid" 2>/dev/null || true
        ;;
      containerd-shim*)
        tr '\0' ' ' <"$proc/cmdline" 2>/dev/null | grep -qF -- "$1" || continue
        log "stopping leftover container shim of $2 (pid $pid)"
        for c in $(descendants "$pid"); do kill -KILL "$c" 2>/dev/null || true; done
        kill -KILL "$pid" 2>/dev/null || true
        ;;
    esac
  done
  return 0
}

# Mounts left under a directory of ours by a killed engine (overlay, namespace bind mounts) keep
# rm -rf from working: unmounted deepest first, and only those under that directory.
unmount_under() { # dir
  local dir="$1" m
  [ -d "$dir" ] || return 0
  awk '{print $5}' /proc/self/mountinfo | { grep -F -- "$dir/" || true; } | sort -r | while read -r m; do
    case "$m" in "$dir"/*) umount -l "$m" 2>/dev/null || true ;; esac
  done
}

# Stops the process pid file $1 names when it is ours ($2 its comm, $3 a marker in its command
# line); $4 names it in the log. Nothing to stop is fine: stopping is idempotent.
stop_if_ours() { # pidfile comm marker what
  local pid
  pid="$(pid_from "$1")"
  is_ours "$pid" "$2" "$3" || return 0
  log "stopping $4 (pid $pid)"
  stop_pid "$pid" "$4"
}

# The config of a containerd of our own (for a Docker 26 engine): its root, state, opt dir and grpc
# socket under $1, never the system's /run/containerd, and no CRI plugin (no Kubernetes here).
write_containerd_config() { # dir socket
  cat >"$1/containerd.toml" <<EOF
version = 2
root = "$1/ctd-root"
state = "$1/ctd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$2"

[debug]
  address = ""

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$1/ctd-opt"
EOF
}
