#!/usr/bin/env bash
# Build the demo stack's images (bundles/demo/images) on the engine named by DOCKER_HOST
# (default: the build engine). No registry is needed: everything is FROM scratch + busybox-static.
#
#   build-demo-images.sh [--version V] [--tag-suffix X]
#
# Tags: ferry-demo/base:1.0.0X and ferry-demo/{web,worker,smoke}:VX. The base does not change with
# the version; a new version changes web's top layer and only the config of worker and smoke.
# Prints "REF IMAGE_ID" per image on stdout; build logs go to stderr only on failure.
set -euo pipefail

VERSION=1.0.0
SUFFIX=""
BASE_VERSION=1.0.0
while [ "$#" -gt 0 ]; do
  case "$1" in
    --version) VERSION="${2:?--version needs a value}"; shift 2 ;;
    --version=*) VERSION="${1#*=}"; shift ;;
    --tag-suffix) SUFFIX="${2?--tag-suffix needs a value}"; shift 2 ;;
    --tag-suffix=*) SUFFIX="${1#*=}"; shift ;;
    -h | --help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "build-demo-images: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
# A tag allows [A-Za-z0-9_.-], at most 128 characters, not starting with . or -.
if ! [[ "$VERSION$SUFFIX" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ && "$BASE_VERSION$SUFFIX" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]]; then
  echo "build-demo-images: invalid tag '$VERSION$SUFFIX'" >&2
  exit 2
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGES="$ROOT/bundles/demo/images"
export DOCKER_HOST="${DOCKER_HOST:-${FERRY_BUILD_DOCKER_HOST:-unix:///var/run/docker.sock}}"
# The legacy builder works with every engine we meet (20.10 has no buildx here) and gives the
# plain, predictable layer-per-step images that the dedup tests reason about.
export DOCKER_BUILDKIT=0

log() { echo "build-demo-images: $*" >&2; }

busybox="$(command -v busybox || true)"
[ -x /bin/busybox ] && busybox=/bin/busybox
[ -n "$busybox" ] || { log "busybox not found (apt-get install busybox-static)"; exit 1; }
# A dynamically linked busybox would start in the image and then fail on missing libraries.
if ldd "$busybox" >/dev/null 2>&1; then
  log "$busybox is dynamically linked; install busybox-static"
  exit 1
fi
# Copy only when it differs, and atomically: builds with different suffixes may run at once.
if ! cmp -s "$busybox" "$IMAGES/base/busybox"; then
  cp "$busybox" "$IMAGES/base/busybox.tmp.$$"
  chmod 0755 "$IMAGES/base/busybox.tmp.$$"
  mv -f "$IMAGES/base/busybox.tmp.$$" "$IMAGES/base/busybox"
fi

build() {
  local ref="$1" dir="$2" out
  shift 2
  out="$(mktemp)"
  if ! docker build --pull=false -t "$ref" "$@" "$IMAGES/$dir" >"$out" 2>&1; then
    log "docker build of $ref failed:"
    cat "$out" >&2
    rm -f "$out"
    exit 1
  fi
  rm -f "$out"
  echo "$ref $(docker image inspect --format '{{.Id}}' "$ref")"
}

base="ferry-demo/base:$BASE_VERSION$SUFFIX"
log "building on $DOCKER_HOST: $base and web/worker/smoke:$VERSION$SUFFIX"
build "$base" base
for name in web worker smoke; do
  build "ferry-demo/$name:$VERSION$SUFFIX" "$name" \
    --build-arg "BASE_IMAGE=$base" --build-arg "APP_VERSION=$VERSION"
done
