# Sourced, not run, by bench/build-images.sh and bench/build-delta-images.sh: what both need to
# build FROM-scratch images out of this machine's own files, each labelled with a fingerprint of its
# recipe so that an image already up to date is never built again. The sourcing script sets
# LOG_NAME, WORK and LABEL first, and keeps its fingerprints (and so its images) its own.
# shellcheck shell=bash

log() { echo "$LOG_NAME: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

require_engine() {
  command -v docker >/dev/null || die "docker CLI not found"
  # Test suites on this machine restart the shared engine now and then: give it a moment to come back.
  for _ in $(seq "${FERRY_BENCH_ENGINE_WAIT:-30}"); do
    docker version --format '{{.Server.Version}}' >/dev/null 2>&1 && break
    sleep 1
  done
  docker version --format '{{.Server.Version}}' >/dev/null 2>&1 \
    || die "no Docker engine answers at ${DOCKER_HOST:-the default socket} (start one, e.g. scripts/engines.sh up build)"
  [ -x /bin/busybox ] || die "/bin/busybox missing (apt-get install busybox-static)"
}

existing() { for p in "$@"; do if [ -e "$p" ] || [ -L "$p" ]; then echo "$p"; fi; done; return 0; }
current_label() { docker image inspect --format "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null || true; }
image_id() { docker image inspect --format '{{.Id}}' "$1"; }

# Images this script built before and has just replaced: removed at the end (apps before the base
# they sit on), but only while they still carry our label and no tag, so nobody else's image goes.
STALE=()
remember_stale() {
  local id
  id=$(docker image inspect --format '{{.Id}}' "$1" 2>/dev/null) || return 0
  [ -n "$(current_label "$1")" ] && STALE=("$id" "${STALE[@]}")
  return 0
}
remove_stale() {
  local id
  for id in "${STALE[@]}"; do
    [ -n "$(docker image inspect --format "{{if not .RepoTags}}{{index .Config.Labels \"$LABEL\"}}{{end}}" "$id" 2>/dev/null)" ] || continue
    docker rmi "$id" >/dev/null 2>&1 && log "removed the superseded ${id:7:12}"
  done
  return 0
}

build() { # ref fingerprint context
  log "building $1 ($(du -sh "$3" | cut -f1) of content)"
  # The legacy builder's deprecation banner is noise here; its stderr is shown only on failure.
  if ! DOCKER_BUILDKIT=0 docker build -q --label "$LABEL=$2" -t "$1" "$3" >/dev/null 2>"$WORK/build.err"; then
    cat "$WORK/build.err" >&2
    die "docker build of $1 failed"
  fi
  rm -f "$WORK/build.err"
}

# Hardlinks make a 600 MB context nearly free; a context on another filesystem gets copies.
link_or_copy() { # src dest
  cp -al "$1" "$2" 2>/dev/null || { rm -rf "${2:?}"; cp -a "$1" "$2"; }
}

# Each path under a rootfs at the same place. Not `cp --parents`: combined with -l it creates the
# parent directories mode 0700, which the image would keep, and fails anyway.
stage() { # rootfs paths...
  local root="$1" p
  shift
  for p in "$@"; do
    mkdir -p "$root$(dirname "$p")"
    link_or_copy "$p" "$root$p"
  done
}

# The shared libraries the given binaries link against, as ldd names them.
linked_libs() { # binaries...
  local b
  for b in "$@"; do
    [ -e "$b" ] && ldd "$b" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'
  done
  return 0
}

# Library paths on stdin, as an image needs them: ldd reports /lib/... (merged /usr), so canonical
# /usr paths, and each soname link with its target; sorted, once each.
canonical_libs() {
  local f
  while read -r f; do
    case "$f" in /lib/* | /lib64/*) f="/usr$f" ;; esac
    [ -e "$f" ] || continue
    echo "$f"
    [ -L "$f" ] && readlink -f "$f"
  done | sort -u
}

# A base rootfs: busybox with its applets as symlinks (no container needs to start to make them),
# Debian's merged-/usr layout so that ldd's /lib and /lib64 paths resolve, root and nobody.
base_rootfs() { # root
  local root="$1" applet
  mkdir -p "$root/usr/bin" "$root/usr/sbin" "$root/usr/lib64" "$root/etc" "$root/tmp"
  chmod 1777 "$root/tmp"
  cp /bin/busybox "$root/usr/bin/busybox"
  for applet in $(/bin/busybox --list); do [ -e "$root/usr/bin/$applet" ] || ln -s busybox "$root/usr/bin/$applet"; done
  ln -sfn usr/bin "$root/bin"; ln -sfn usr/lib "$root/lib"; ln -sfn usr/lib64 "$root/lib64"; ln -sfn usr/sbin "$root/sbin"
  ln -sfn ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$root/usr/lib64/ld-linux-x86-64.so.2"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
}
