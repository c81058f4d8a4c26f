#!/usr/bin/env bash
# Make this machine able to build, test, demo and bench ferry: system packages (Docker 20.10 engine,
# Compose v1, skopeo, busybox-static, sshd, zstd, ...), node_modules, and dist/.
# Idempotent and quick (well under 2 s) when everything is already there; it runs before every
# `npm test`, `npm run demo` and `npm run bench`.
#
# FERRY_SETUP_DRY_RUN=1  report what would be installed or rebuilt, change nothing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DRY_RUN="${FERRY_SETUP_DRY_RUN:-0}"

log() { echo "setup: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

has() { command -v "$1" >/dev/null 2>&1; }
# sbin tools are not on a non-root PATH; look there too before deciding a package is missing.
has_sbin() { has "$1" || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
# The demo images are FROM scratch: only a statically linked busybox runs in them.
has_static_busybox() { [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; }

# Package -> the check that says it is already usable. Checking the commands rather than dpkg:
# a tool that is present some other way (a newer Docker, say) is good enough, and it is faster.
missing=()
need() {
  local pkg="$1"
  shift
  if ! "$@" >/dev/null 2>&1; then missing+=("$pkg"); fi
}
need docker.io has_sbin dockerd
need docker-compose has docker-compose
need skopeo has skopeo
need busybox-static has_static_busybox
need openssh-server has_sbin sshd
need openssh-client bash -c 'command -v ssh && command -v ssh-keygen' # ssh-keygen -Y verifies SSHSIG
need zstd has zstd
need iproute2 has_sbin ip
need time test -x /usr/bin/time # GNU time: peak RSS in benches (bash's `time` has none)
need util-linux bash -c 'command -v nsenter && command -v flock && command -v setsid'
need podman has podman # the engine that refuses partial archives: the splice path is tested on it
need curl has curl
need dosfstools has_sbin mkfs.vfat # a FAT32 medium for the output tests
need fusefat has fusefat     # mounts it: kernels without a vfat module (these machines)

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$DRY_RUN" = 1 ]; then
    log "would apt-get install: ${missing[*]}"
  else
    has apt-get || die "missing ${missing[*]} and no apt-get to install them"
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
      has sudo || die "missing ${missing[*]}: run as root or install sudo"
      SUDO=(sudo -n)
    fi
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # needrestart (a docker.io Recommends) would scan every process after each install.
    export NEEDRESTART_SUSPEND=1
    # The lock timeout: an apt run started by the machine itself (unattended upgrades) must not fail us.
    apt_opts=(-o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0 -q)
    "${SUDO[@]}" apt-get "${apt_opts[@]}" update >&2 || die "apt-get update failed"
    # With Recommends: docker.io's (cgroupfs-mount, apparmor, xz-utils, ...) are what the engine
    # was measured with on these machines.
    "${SUDO[@]}" apt-get "${apt_opts[@]}" install -y "${missing[@]}" >&2 ||
      die "apt-get install ${missing[*]} failed"
    # Trust the commands, not apt's exit code: check again what was missing.
    missing=()
    need docker.io has_sbin dockerd
    need docker-compose has docker-compose
    need skopeo has skopeo
    need busybox-static has_static_busybox
    need openssh-server has_sbin sshd
    need openssh-client bash -c 'command -v ssh && command -v ssh-keygen'
    need zstd has zstd
    need iproute2 has_sbin ip
    need time test -x /usr/bin/time
    need util-linux bash -c 'command -v nsenter && command -v flock && command -v setsid'
need podman has podman # the engine that refuses partial archives: the splice path is tested on it
need curl has curl
need dosfstools has_sbin mkfs.vfat
need fusefat has fusefat
    [ "${#missing[@]}" -eq 0 ] || die "still missing after apt-get install: ${missing[*]}"
  fi
fi

# --- node_modules -------------------------------------------------------------------------------
zstd_loads() { node -e "require('zstd-napi')" >/dev/null 2>&1; }

if [ ! -d node_modules ] || [ ! -e node_modules/.package-lock.json ] ||
  [ package-lock.json -nt node_modules/.package-lock.json ]; then
  if [ "$DRY_RUN" = 1 ]; then
    log "would run npm ci"
  else
    log "npm ci (builds zstd-napi from source with node-gyp; about a minute)"
    npm_log="$(mktemp)"
    # The lock pins rollup (package.json "overrides") to a release whose per-platform packages
    # the registry has; a lock npm ci refuses is a bug to fix, never to paper over here.
    if ! npm ci --no-audit --no-fund >"$npm_log" 2>&1; then
      tail -n 30 "$npm_log" >&2
      die "npm ci failed"
    fi
    cat "$npm_log" >&2
    rm -f "$npm_log"
    # npm ci may leave the lock file's mtime untouched; touching the marker stops a rerun.
    touch node_modules/.package-lock.json
  fi
fi

if [ "$DRY_RUN" != 1 ] && ! zstd_loads; then
  # An install run with --ignore-scripts, or node upgraded underneath: build the addon now.
  log "zstd-napi does not load; npm rebuild zstd-napi"
  npm rebuild zstd-napi >&2 || die "npm rebuild zstd-napi failed"
  zstd_loads || die "zstd-napi still does not load: node -e \"require('zstd-napi')\""
fi

# --- dist ---------------------------------------------------------------------------------------
STAMP=dist/.setup-build-stamp
needs_build() {
  [ -e "$STAMP" ] || return 0
  [ -n "$(find src tsconfig.json tsconfig.build.json package.json -newer "$STAMP" -print -quit 2>/dev/null)" ]
}
if needs_build; then
  if [ "$DRY_RUN" = 1 ]; then
    log "would run npm run build"
  else
    log "npm run build"
    # Stamp the start, not the end: a file saved during the build must trigger the next one.
    mkdir -p dist
    : >"$STAMP.new"
    npm run --silent build >&2 || { rm -f "$STAMP.new"; die "npm run build failed"; }
    mv -f "$STAMP.new" "$STAMP"
  fi
fi

[ "$DRY_RUN" = 1 ] || log "ready"
