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

log() { echo "build-images: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v docker >/dev/null || die "docker CLI not found"
# Test suites on this machine restart the shared engine now and then: give it a moment to come back.
for _ in $(seq "${FERRY_BENCH_ENGINE_WAIT:-30}"); do
  docker version --format '{{.Server.Version}}' >/dev/null 2>&1 && break
  sleep 1
done
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 \
  || die "no Docker engine answers at ${DOCKER_HOST:-the default socket} (start one, e.g. scripts/engines.sh up build)"
[ -x /bin/busybox ] || die "/bin/busybox missing (apt-get install busybox-static)"

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

existing() { for p in "$@"; do [ -e "$p" ] || [ -L "$p" ] && echo "$p"; done; return 0; }

# The base's libraries: those the runtime binaries link against, plus every small shared library
# of the system (< 2 MiB each), so the shared layer has the size and mix of a real distro base.
base_libs() {
  {
    for b in $RUNTIME_BINARIES; do
      [ -e "$b" ] && ldd "$b" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'
    done
    find "$LIBDIR" -maxdepth 1 -name 'lib*.so.*' -type f -size -2M
  } | while read -r f; do
    # ldd reports /lib/... (merged /usr): keep canonical /usr paths, and each soname link with its target.
    case "$f" in /lib/*|/lib64/*) f="/usr$f" ;; esac
    [ -e "$f" ] || continue
    echo "$f"
    [ -L "$f" ] && readlink -f "$f"
  done | sort -u
}

fingerprint() { # paths... -> hash of recipe + file list with sizes and mtimes
  { echo "recipe=$RECIPE"; echo "$*"; find "$@" -printf '%p %s %T@ %y\n' 2>/dev/null | sort; } | sha256sum | cut -c1-16
}

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

current_label() { docker image inspect --format "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null || true; }

# Hardlinks make a 600 MB context nearly free; a context on another filesystem gets copies.
# Not `cp --parents`: combined with -l it creates the parent directories mode 0700, which the
# image would keep, and fails anyway.
stage() { # dest paths...
  local dest="$1" p; shift
  for p in "$@"; do
    mkdir -p "$dest$(dirname "$p")"
    cp -al "$p" "$dest$p" 2>/dev/null || { rm -rf "${dest:?}$p"; cp -a "$p" "$dest$p"; }
  done
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

# --- base ------------------------------------------------------------------------------------
mapfile -t LIBS < <(base_libs)
base_fp=$(fingerprint /bin/busybox "${LIBS[@]}")
if [ "$(current_label "$BASE")" = "$base_fp" ]; then
  log "$BASE is up to date"
else
  ctx="$WORK/ctx/base"
  rm -rf "$ctx"
  stage "$ctx/rootfs" "${LIBS[@]}"
  root="$ctx/rootfs"
  mkdir -p "$root/usr/bin" "$root/usr/sbin" "$root/usr/lib64" "$root/etc" "$root/tmp"
  chmod 1777 "$root/tmp"
  cp /bin/busybox "$root/usr/bin/busybox"
  # Applets as symlinks made here rather than with a RUN step: no container needs to start.
  for applet in $(/bin/busybox --list); do [ -e "$root/usr/bin/$applet" ] || ln -s busybox "$root/usr/bin/$applet"; done
  # The merged-/usr layout of Debian, so ldd's /lib and /lib64 paths resolve inside the image.
  ln -sfn usr/bin "$root/bin"; ln -sfn usr/lib "$root/lib"; ln -sfn usr/lib64 "$root/lib64"; ln -sfn usr/sbin "$root/sbin"
  ln -sfn ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$root/usr/lib64/ld-linux-x86-64.so.2"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
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
base_id=$(docker image inspect --format '{{.Id}}' "$BASE")

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
