#!/usr/bin/env bash
# Builds the bench stack: FROM-scratch images made of real files already on this machine (no
# registry is reachable), so layer sizes and compressibility look like a real stack, not /dev/urandom
# or zeros. One shared base layer (busybox + shared libraries) under several app images.
#
#   bench/build-images.sh        build what is missing or stale, then print key=value lines on stdout:
#                                  def=DIR        definition of the full stack (ferry.yaml + compose.yaml)
#                                  def_small=DIR  definition of base + one app, for the "flat RSS" check
#                                  images=REF...  the service images of the full stack
#
# Idempotent: every image carries a fingerprint label of its recipe and source files (paths, sizes,
# mtimes); an image whose label matches is not rebuilt. Logs go to stderr.
set -euo pipefail

WORK="${FERRY_BENCH_DIR:-/tmp/ferry-bench}"
TAG=1
BASE="ferry-bench/base:$TAG"
LABEL=ferry-bench.fingerprint
# Bump when the recipe below changes in a way the source fingerprint cannot see.
RECIPE=4
LIBDIR=/usr/lib/x86_64-linux-gnu

LOG_NAME=build-images
# shellcheck source=bench/image-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/image-lib.sh"
require_engine

# App images: name -> source paths (absolute; copied into the image at the same place).
declare -A APP_SOURCES=(
  [node]="/usr/bin/node /usr/lib/node_modules /usr/include/node"
  [python]="/usr/bin/python3.11 /usr/lib/python3.11 /usr/lib/python3/dist-packages"
  [perl]="/usr/bin/perl /usr/share/perl /usr/share/perl5 $LIBDIR/perl $LIBDIR/perl-base $LIBDIR/perl5"
  [gcc]="/usr/bin/x86_64-linux-gnu-gcc-12 /usr/bin/gcc-12 /usr/lib/gcc/x86_64-linux-gnu/12"
  [docs]="/usr/share/doc"
)
APPS=(node python perl gcc docs)
# The small stack for the RSS-vs-size comparison: base plus the smallest app.
SMALL_APP=perl
# Binaries and extension modules whose libraries must be in the base so the app images actually run.
RUNTIME_BINARIES="/usr/bin/node /usr/bin/python3.11 /usr/lib/python3.11/lib-dynload/*.so /usr/bin/perl
  $LIBDIR/perl/5.36.0/auto/*/*.so /usr/bin/x86_64-linux-gnu-gcc-12 /usr/lib/gcc/x86_64-linux-gnu/12/cc1"

# Everything below runs under one lock: two engineers starting `npm run bench` at once would
# otherwise race on the same context directories and tags.
mkdir -p "$WORK"
exec 9>"$WORK/.build.lock"
flock 9

# The base's libraries: those the runtime binaries link against, plus every small shared library
# of the system (< 2 MiB each), so the shared layer has the size and mix of a real distro base.
base_libs() {
  {
    # shellcheck disable=SC2086 # globs in the list are meant to expand
    linked_libs $RUNTIME_BINARIES
    find "$LIBDIR" -maxdepth 1 -name 'lib*.so.*' -type f -size -2M
  } | canonical_libs
}

fingerprint() { # paths... -> hash of recipe + file list with sizes and mtimes
  { echo "recipe=$RECIPE"; echo "$*"; find "$@" -printf '%p %s %T@ %y\n' 2>/dev/null | sort; } | sha256sum | cut -c1-16
}

# --- base ------------------------------------------------------------------------------------
mapfile -t LIBS < <(base_libs)
base_fp=$(fingerprint /bin/busybox "${LIBS[@]}")
if [ "$(current_label "$BASE")" = "$base_fp" ]; then
  log "$BASE is up to date"
else
  ctx="$WORK/ctx/base"
  rm -rf "$ctx"
  stage "$ctx/rootfs" "${LIBS[@]}"
  base_rootfs "$ctx/rootfs"
  cat >"$ctx/Dockerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin:/usr/bin:/bin
CMD ["/bin/sh"]
EOF
  remember_stale "$BASE"
  build "$BASE" "$base_fp" "$ctx"
  rm -rf "$ctx"
fi
base_id=$(image_id "$BASE")

# --- apps ------------------------------------------------------------------------------------
refs=()
for app in "${APPS[@]}"; do
  ref="ferry-bench/$app:$TAG"
  refs+=("$ref")
  mapfile -t src < <(existing ${APP_SOURCES[$app]})
  [ "${#src[@]}" -gt 0 ] || die "none of the sources of $app exist: ${APP_SOURCES[$app]}"
  # The base's ID is part of the fingerprint: a rebuilt base must rebuild every app on top of it.
  fp=$(fingerprint "${src[@]}" | sed "s/\$/-${base_id:7:12}/")
  if [ "$(current_label "$ref")" = "$fp" ]; then
    log "$ref is up to date"
    continue
  fi
  ctx="$WORK/ctx/$app"
  rm -rf "$ctx"
  stage "$ctx/rootfs" "${src[@]}"
  printf 'FROM %s\nCOPY rootfs/ /\nCMD ["/bin/sh"]\n' "$BASE" >"$ctx/Dockerfile"
  remember_stale "$ref"
  build "$ref" "$fp" "$ctx"
  rm -rf "$ctx"
done
rmdir "$WORK/ctx" 2>/dev/null || true
remove_stale

# --- definitions -----------------------------------------------------------------------------
write_def() { # dir refs...
  local dir="$1"; shift
  mkdir -p "$dir"
  printf 'name: bench\nversion: 1.0.0\ncompose: compose.yaml\n' >"$dir/ferry.yaml"
  {
    echo "services:"
    for ref in "$@"; do
      local svc="${ref#ferry-bench/}"; svc="${svc%%:*}"
      cat <<EOF
  $svc:
    image: $ref
    restart: unless-stopped
    healthcheck:
      test: ["CMD", "true"]
    user: "65534"
EOF
    done
  } >"$dir/compose.yaml"
}
write_def "$WORK/def" "${refs[@]}"
write_def "$WORK/def-small" "ferry-bench/$SMALL_APP:$TAG"

echo "def=$WORK/def"
echo "def_small=$WORK/def-small"
echo "images=${refs[*]}"
