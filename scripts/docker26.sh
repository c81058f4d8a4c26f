#!/usr/bin/env bash
# Docker 26 + containerd 1.7 + Compose v2 from Debian 13 (trixie) packages, unpacked into a prefix
# (default /opt/docker26) next to, never over, the system's docker.io 20.10. What today's users run
# (Docker 25-29, Compose v2, the containerd image store) for scripts/engines26.sh and tests.
#
#   docker26.sh        fetch and unpack when not done yet (a no-op well under 1 s otherwise)
#   docker26.sh env    the same, then print `export ...` lines for FERRY_DOCKER26_PREFIX and
#                      FERRY_COMPOSE_V2_CONFIG (a DOCKER_CONFIG dir whose cli-plugins hold Compose v2)
#
# Only the `env` lines ever go to stdout; progress goes to stderr, apt's output to a log file.
# Compose v2 is deliberately NOT put where a plain `docker compose` finds it (~/.docker/cli-plugins,
# /usr/libexec/docker/cli-plugins): tests that expect Compose v1 must not get v2 by accident. Use
#   DOCKER_CONFIG="$FERRY_COMPOSE_V2_CONFIG" docker compose ...
# or run "$FERRY_DOCKER26_PREFIX/usr/libexec/docker/cli-plugins/docker-compose" standalone.
#
# FERRY_DOCKER26_PREFIX   where to unpack (default /opt/docker26)
# FERRY_DOCKER26_SUITE    Debian suite to fetch from (default trixie)
# FERRY_DOCKER26_MIRROR   Debian mirror (default: the one apt already uses on this machine)
set -euo pipefail

PREFIX="${FERRY_DOCKER26_PREFIX:-/opt/docker26}"
PREFIX="${PREFIX%/}"
case "$PREFIX" in /?*/?* | /opt/?* | /tmp/?*) ;; *) echo "docker26: ERROR: FERRY_DOCKER26_PREFIX must be an absolute path of its own, like /opt/docker26 (got '$PREFIX')" >&2; exit 1 ;; esac
SUITE="${FERRY_DOCKER26_SUITE:-trixie}"
# apt's private state (lists, downloaded .debs, its log) lives beside the prefix, not inside it:
# the prefix is replaced as a whole when (re)unpacked.
APT_DIR="$PREFIX.apt"
APT_LOG="$APT_DIR/apt.log"
COMPOSE_CONFIG="$PREFIX/docker-config"
PACKAGES=(docker.io docker-cli containerd docker-compose)

log() { echo "docker26: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# What an unpacked prefix must hold, checked by running the binaries (a half-unpacked or
# wrong-architecture prefix fails here, not later inside an engine start).
prefix_ok() {
  local p="$1"
  "$p/usr/sbin/dockerd" --version >/dev/null 2>&1 &&
    "$p/usr/bin/containerd" --version >/dev/null 2>&1 &&
    [ -x "$p/usr/bin/containerd-shim-runc-v2" ] &&
    [ -x "$p/usr/bin/docker" ] &&
    [ -x "$p/usr/libexec/docker/cli-plugins/docker-compose" ] &&
    [ -x "$p/docker-config/cli-plugins/docker-compose" ]
}

print_env() {
  if [ "${1:-}" = env ]; then
    echo "export FERRY_DOCKER26_PREFIX=$PREFIX"
    echo "export FERRY_COMPOSE_V2_CONFIG=$COMPOSE_CONFIG"
  fi
}

case "${1:-}" in
  "" | env) ;;
  *) echo "usage: $0 [env]" >&2; exit 2 ;;
esac

# The quick path, taken before any lock or root check so that `env` works for anyone.
if prefix_ok "$PREFIX"; then
  print_env "${1:-}"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "$PREFIX is not unpacked yet and unpacking it needs root (run as root once)"
for c in apt-get dpkg-deb flock; do command -v "$c" >/dev/null || die "$c not found"; done

mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$APT_DIR/debs"
# Two engine starts at once (a test run and the demo) must not both unpack.
exec 8>"$APT_DIR/.lock"
flock -w 600 8 || die "another docker26.sh holds $APT_DIR/.lock"
if prefix_ok "$PREFIX"; then # done by the run we waited for
  print_env "${1:-}"
  exit 0
fi

fail_with_log() {
  log "ERROR: $*; last lines of $APT_LOG:"
  tail -n 25 "$APT_LOG" >&2 || true
  exit 1
}

if [ -n "${FERRY_DOCKER26_MIRROR:-}" ]; then
  MIRROR="$FERRY_DOCKER26_MIRROR"
elif [ -f /etc/apt/sources.list.d/debian.sources ]; then
  # deb822: the first URIs line is the main archive (the security archive comes after it).
  MIRROR="$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)"
elif [ -f /etc/apt/sources.list ]; then
  MIRROR="$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)"
fi
[ -n "${MIRROR:-}" ] || MIRROR=http://deb.debian.org/debian
case "$MIRROR" in *security*) MIRROR=http://deb.debian.org/debian ;; esac
MIRROR="${MIRROR%/}"

echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $SUITE main" >"$APT_DIR/sources.list"
# Only our list, our lists dir and our cache: the system's apt state and sources stay untouched.
# The lock timeout waits for an apt run of the system (setup.sh, unattended upgrades).
APT=(apt-get -q
  -o "Dir::Etc::sourcelist=$APT_DIR/sources.list" -o Dir::Etc::sourceparts=-
  -o "Dir::State::Lists=$APT_DIR/lists" -o "Dir::Cache=$APT_DIR/cache"
  -o Acquire::Languages=none -o DPkg::Lock::Timeout=300
  -o APT::Get::List-Cleanup=0)

: >"$APT_LOG"
start=$SECONDS
log "fetching the $SUITE package lists from $MIRROR (apt log: $APT_LOG)"
"${APT[@]}" update >>"$APT_LOG" 2>&1 || fail_with_log "apt-get update of the $SUITE list failed"

log "downloading ${PACKAGES[*]} ($SUITE)"
rm -f "$APT_DIR/debs/"*.deb
(cd "$APT_DIR/debs" && "${APT[@]}" download "${PACKAGES[@]}") >>"$APT_LOG" 2>&1 ||
  fail_with_log "apt-get download ${PACKAGES[*]} failed"
ls "$APT_DIR/debs/"*.deb >/dev/null 2>&1 || fail_with_log "no .deb downloaded"

# Unpacked beside the prefix and moved into place only once complete and working: a run killed
# half-way leaves no prefix that looks ready.
STAGE="$PREFIX.new"
rm -rf "$STAGE"
mkdir -p "$STAGE"
for deb in "$APT_DIR/debs/"*.deb; do
  log "unpacking $(basename "$deb")"
  dpkg-deb -x "$deb" "$STAGE" || die "dpkg-deb -x $deb failed"
done
# A DOCKER_CONFIG dir that holds only the Compose v2 plugin (relative link: survives a moved prefix).
mkdir -p "$STAGE/docker-config/cli-plugins"
ln -sfn ../../usr/libexec/docker/cli-plugins/docker-compose "$STAGE/docker-config/cli-plugins/docker-compose"
echo '{}' >"$STAGE/docker-config/config.json"
# docker.io links docker-init to tini-static of the tini package, which is not unpacked here: point
# it at this machine's tini (Debian 12's) so `docker run --init` works; drop it when there is none
# (dockerd then finds the system's docker-init further down PATH, or reports it missing).
if [ -L "$STAGE/usr/bin/docker-init" ] && ! [ -e "$STAGE/usr/bin/docker-init" ]; then
  if [ -x /usr/bin/tini-static ]; then
    ln -sfn /usr/bin/tini-static "$STAGE/usr/bin/docker-init"
  else
    rm -f "$STAGE/usr/bin/docker-init"
  fi
fi
# Which packages went in, for whoever wonders what the prefix holds.
for deb in "$APT_DIR/debs/"*.deb; do dpkg-deb -W --showformat='${Package} ${Version}\n' "$deb"; done >"$STAGE/PACKAGES"

prefix_ok "$STAGE" || die "unpacked binaries do not run from $STAGE (see $STAGE/PACKAGES)"
# Replace only a prefix this script made (it has PACKAGES): never wipe a directory someone else owns.
if [ -e "$PREFIX" ] && [ -n "$(ls -A "$PREFIX" 2>/dev/null)" ] && ! [ -e "$PREFIX/PACKAGES" ]; then
  die "$PREFIX exists, is not empty and was not made by docker26.sh; move it away or set FERRY_DOCKER26_PREFIX"
fi
rm -rf "$PREFIX"
mv "$STAGE" "$PREFIX"
# Not packaged with them: runc (and tini for --init) come from this machine's own packages.
command -v runc >/dev/null || log "warning: no runc on PATH (apt-get install runc); containers will not start"
log "ready in $((SECONDS - start)) s: $("$PREFIX/usr/sbin/dockerd" --version), $("$PREFIX/usr/bin/containerd" --version | awk '{print $1, $3}'), compose $("$PREFIX/usr/libexec/docker/cli-plugins/docker-compose" version --short 2>/dev/null)"
print_env "${1:-}"
