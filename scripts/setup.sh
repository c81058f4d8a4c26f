#!/usr/bin/env bash
# Make this machine able to build, test, demo and bench ferry: system packages (Docker 20.10 engine,
# Compose v1, skopeo, busybox-static, sshd, zstd, ...), node_modules, and dist/.
# Idempotent and quick (well under 2 s) when everything is already there; it runs before every
# `npm test`, `npm run demo` and `npm run bench`.
#
# Quiet: one line per step on stderr (what it installs, then that it is ready). What apt-get, npm
# and tsc print goes to a log per step, .setup/<step>.log in the repository, named on the step's
# line; when a step fails, the last 30 lines of its log and the log's path are printed.
#
# FERRY_SETUP_DRY_RUN=1  report what would be installed or rebuilt, change nothing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DRY_RUN="${FERRY_SETUP_DRY_RUN:-0}"
would=0 # under DRY_RUN: whether any step would change something
LOG_DIR="$ROOT/.setup"

log() { echo "setup: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The log of one step, emptied: the previous run's output would only confuse a reader.
step_log() {
  mkdir -p "$LOG_DIR"
  : >"$LOG_DIR/$1.log"
  echo "$LOG_DIR/$1.log"
}

# run_logged LOG WHAT CMD...: runs CMD with its output appended to LOG; on failure prints the end of
# LOG and where the rest is, and stops.
run_logged() {
  local file="$1" what="$2"
  shift 2
  echo "\$ $*" >>"$file"
  if ! "$@" >>"$file" 2>&1; then
    log "$what failed; the last 30 lines of $file:"
    tail -n 30 "$file" | sed 's/^/  | /' >&2
    die "$what failed (whole log: $file)"
  fi
}

has() { command -v "$1" >/dev/null 2>&1; }
# sbin tools are not on a non-root PATH; look there too before deciding a package is missing.
has_sbin() { has "$1" || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
# The demo images are FROM scratch: only a statically linked busybox runs in them.
has_static_busybox() { [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; }

# Package -> the check that says it is already usable. Checking the commands rather than dpkg:
# a tool that is present some other way (a newer Docker, say) is good enough, and it is faster.
need() {
  local pkg="$1"
  shift
  if ! "$@" >/dev/null 2>&1; then missing+=("$pkg"); fi
}
check_packages() {
  missing=()
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
  need fusefat has fusefat           # mounts it: kernels without a vfat module (these machines)
  need strace has strace             # the executable's host paths never open a native addon
  need binutils bash -c 'command -v objdump && command -v strip' # glibc versions; npm run package strips node
}
check_packages

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$DRY_RUN" = 1 ]; then
    log "would apt-get install: ${missing[*]}"
    would=1
  else
    has apt-get || die "missing ${missing[*]} and no apt-get to install them"
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
      has sudo || die "missing ${missing[*]}: run as root or install sudo"
      SUDO=(sudo -n)
    fi
    apt_log="$(step_log apt)"
    log "installing ${missing[*]} with apt-get (log: $apt_log)"
    export DEBIAN_FRONTEND=noninteractive
    # needrestart (a docker.io Recommends) would scan every process after each install.
    export NEEDRESTART_SUSPEND=1
    # The lock timeout: an apt run started by the machine itself (unattended upgrades) must not fail us.
    apt_opts=(-o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0 -q)
    run_logged "$apt_log" "apt-get update" "${SUDO[@]}" apt-get "${apt_opts[@]}" update
    # With Recommends: docker.io's (cgroupfs-mount, apparmor, xz-utils, ...) are what the engine
    # was measured with on these machines.
    run_logged "$apt_log" "apt-get install ${missing[*]}" "${SUDO[@]}" apt-get "${apt_opts[@]}" install -y "${missing[@]}"
    # Trust the commands, not apt's exit code: check again what was missing.
    check_packages
    [ "${#missing[@]}" -eq 0 ] || die "still missing after apt-get install: ${missing[*]} (apt-get's log: $apt_log)"
    log "system packages ready"
  fi
fi

# --- node_modules -------------------------------------------------------------------------------
zstd_loads() { node -e "require('zstd-napi')" >/dev/null 2>&1; }

if [ ! -d node_modules ] || [ ! -e node_modules/.package-lock.json ] ||
  [ package-lock.json -nt node_modules/.package-lock.json ]; then
  if [ "$DRY_RUN" = 1 ]; then
    log "would run npm ci"
    would=1
  else
    npm_log="$(step_log npm-ci)"
    log "installing node_modules with npm ci (builds zstd-napi from source with node-gyp; about a minute; log: $npm_log)"
    # The lock pins rollup (package.json "overrides") to a release whose per-platform packages
    # the registry has; a lock npm ci refuses is a bug to fix, never to paper over here.
    run_logged "$npm_log" "npm ci" npm ci --no-audit --no-fund
    # npm ci may leave the lock file's mtime untouched; touching the marker stops a rerun.
    touch node_modules/.package-lock.json
    log "node_modules ready"
  fi
fi

if [ "$DRY_RUN" != 1 ] && ! zstd_loads; then
  # An install run with --ignore-scripts, or node upgraded underneath: build the addon now.
  rebuild_log="$(step_log npm-rebuild)"
  log "zstd-napi does not load; rebuilding it with npm rebuild zstd-napi (log: $rebuild_log)"
  run_logged "$rebuild_log" "npm rebuild zstd-napi" npm rebuild zstd-napi
  zstd_loads || die "zstd-napi still does not load: node -e \"require('zstd-napi')\" (npm rebuild's log: $rebuild_log)"
  log "zstd-napi ready"
fi

# --- ssh2's crypto binding ----------------------------------------------------------------------
# ssh2 builds an optional binding for its ciphers at install, with --target=<node version>, which
# makes node-gyp download headers: offline that fails quietly, and ssh2 then creates a Node cipher
# object per 32 KiB packet (a fleet install spent 13% more wall time, its CPU 20% more). Built here
# against the headers of the node that runs. Optional: without it ferry works, only slower.
ssh2_binding=node_modules/ssh2/lib/protocol/crypto/build/Release/sshcrypto.node
ssh2_binding_loads() { node -e "require('./$ssh2_binding')" >/dev/null 2>&1; }
if [ "$DRY_RUN" = 1 ] && [ -d node_modules/ssh2 ] && ! ssh2_binding_loads; then
  log "would build ssh2's crypto binding"
  would=1
elif [ "$DRY_RUN" != 1 ] && [ -d node_modules/ssh2 ] && ! ssh2_binding_loads; then
  node_prefix="$(node -p 'require("path").resolve(process.execPath, "../..")')"
  node_gyp="$(npm prefix -g 2>/dev/null)/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js"
  gyp_log="$(step_log ssh2-binding)"
  if [ -e "$node_prefix/include/node/node.h" ] && [ -e "$node_gyp" ]; then
    log "building ssh2's crypto binding against $node_prefix/include/node (log: $gyp_log)"
    (cd node_modules/ssh2/lib/protocol/crypto &&
      node "$node_gyp" rebuild --nodedir="$node_prefix" --real_openssl_major="$(node -p 'process.versions.openssl.split(".")[0]')") >"$gyp_log" 2>&1 || true
  fi
  if ssh2_binding_loads; then log "ssh2's crypto binding ready"; else log "WARNING: ssh2's crypto binding could not be built (log: $gyp_log); SSH transfers run slower"; fi
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
    would=1
  else
    build_log="$(step_log build)"
    log "building dist/ with npm run build (log: $build_log)"
    # Stamp the start, not the end: a file saved during the build must trigger the next one.
    mkdir -p dist
    : >"$STAMP.new"
    trap 'rm -f "$STAMP.new"' EXIT
    run_logged "$build_log" "npm run build" npm run --silent build
    trap - EXIT
    mv -f "$STAMP.new" "$STAMP"
    log "dist/ built"
  fi
fi

if [ "$DRY_RUN" = 1 ]; then
  if [ "$would" = 1 ]; then log "dry run: nothing changed"; else log "dry run: nothing to do"; fi
else
  log "ready: system packages, node_modules and dist/ are up to date"
fi
