#!/usr/bin/env bash
# Builds the stack of the `delta` bench: six service images in two releases, FROM scratch, out of
# real files already on this machine (no registry is reachable), layered the way real images are:
#
#   base (busybox + the shared libraries)                       shared by all six
#   └ runtime (python3.11 + stdlib | node | perl)                shared by the services of a language
#     └ dependencies (site-packages | node_modules | perl5 | …)  one per service
#       └ application code (.py | .js | .pl | html)              one per service
#
#   service  runtime  dependency layer                           application layer
#   api      python   requests, urllib3, yaml, jwt, …             docker-compose's python package
#   worker   python   cryptography, attrs, jsonschema, …          docker-py's python package
#   web      node     npm's node_modules                          npm's lib/*.js
#   jobs     node     corepack, /usr/share/javascript             npm's bin/, index.js
#   report   perl     /usr/share/perl5                            the perl scripts of /usr/bin
#   static   -        /usr/share/mime, /usr/share/javascript      python's html docs, man3 pages
#
# Release 2 (`:r2`) changes what a typical release changes:
#   api, web  application code: three source files edited (a line appended to each);
#   worker    its dependency layer gains one small package (dockerpty, 88 KB of files, as in issue 12's
#             own measurement), so the application layer above it is rebuilt too, as `docker build`
#             would. FERRY_BENCH_DELTA_ADD=pygments adds an 8.5 MB package instead (2.4 MB at zstd -3:
#             more than a 0.2 MB bundle can carry, whatever the deltas);
#   jobs, report, static  unchanged: their r2 tag names the r1 image.
#
#   bench/build-delta-images.sh   build what is missing or stale, then print key=value lines:
#                                   def_r1=DIR def_r2=DIR       definitions (ferry.yaml + compose.yaml)
#                                   images_r1=REF… images_r2=REF…
#                                   changed=SERVICE…            the services whose r2 image differs
#
# Every step is its own image (ferry-delta/<name>:<tag>) carrying a fingerprint label of its recipe,
# its sources (paths, sizes, mtimes) and its parent's ID: a step whose label matches is not rebuilt,
# so r1 and r2 share exactly the layers they should. Application files are copied (never
# hardlinked), so the edits of release 2 never touch the machine's own files. Logs go to stderr.
set -euo pipefail

WORK="${FERRY_BENCH_DIR:-/tmp/ferry-bench}/delta"
REPO=ferry-delta
LABEL=ferry-bench.fingerprint
# Bump when the recipe below changes in a way the source fingerprint cannot see.
RECIPE=1
LIBDIR=/usr/lib/x86_64-linux-gnu
DIST=/usr/lib/python3/dist-packages
NPM=/usr/lib/node_modules/npm

LOG_NAME=build-delta-images
# shellcheck source=bench/image-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/image-lib.sh"
require_engine
for p in /usr/bin/python3.11 /usr/lib/python3.11 /usr/bin/node "$NPM" /usr/bin/perl "$DIST/compose" "$DIST/docker" "$DIST/${FERRY_BENCH_DELTA_ADD:-dockerpty}"; do
  [ -e "$p" ] || die "$p missing: the delta stack is built from it (see scripts/setup.sh)"
done

mkdir -p "$WORK"
exec 9>"$WORK/.build.lock"
flock 9

# SRC or SRC=DEST: put SRC at DEST (default: the same path) under a rootfs. link: hardlinks where
# possible (a big context for free); copy: real copies, which the release-2 edits may change.
place() { # rootfs mode spec
  local root="$1" mode="$2" spec="$3" src dest
  src="${spec%%=*}"
  dest="${spec#*=}"
  mkdir -p "$root$(dirname "$dest")"
  if [ "$mode" = link ]; then
    link_or_copy "$src" "$root$dest"
  else
    cp -a "$src" "$root$dest"
  fi
}

# Release 2's code change: one line appended to each of the first N source files (sorted by path).
edit_sources() { # rootfs pattern comment-prefix count
  local root="$1" pattern="$2" prefix="$3" count="$4" f n=0
  while IFS= read -r f; do
    # A hardlinked file would carry the edit back into the machine's own copy: refuse.
    [ "$(stat -c %h "$f")" = 1 ] || die "refusing to edit $f: it is hardlinked"
    printf '\n%s release 2: ferry-delta bench change (%s)\n' "$prefix" "${f#"$root"}" >>"$f"
    n=$((n + 1))
  done < <(find "$root" -type f -name "$pattern" -size +1k | LC_ALL=C sort | head -n "$count")
  [ "$n" = "$count" ] || die "found only $n files matching $pattern to edit"
}

# One image = one COPY of a rootfs onto a parent (or scratch). Rebuilt only when its fingerprint —
# recipe, parent ID, specs, edit and every source file's path, size and mtime — changed.
step() { # ref parent mode edit specs...
  local ref="$1" parent="$2" mode="$3" edit="$4" parent_id=scratch ctx fp s
  shift 4
  [ "$parent" = scratch ] || parent_id=$(image_id "$parent")
  local srcs=()
  for s in "$@"; do srcs+=("${s%%=*}"); done
  fp=$({ echo "recipe=$RECIPE ref=$ref parent=$parent_id mode=$mode edit=$edit"; printf '%s\n' "$@"; find "${srcs[@]}" -printf '%p %s %T@ %y\n' 2>/dev/null | sort; } | sha256sum | cut -c1-16)
  if [ "$(current_label "$ref")" = "$fp" ]; then
    log "$ref is up to date"
    return 0
  fi
  ctx="$WORK/ctx/${ref//[\/:]/-}"
  rm -rf "$ctx"
  mkdir -p "$ctx/rootfs"
  for s in "$@"; do place "$ctx/rootfs" "$mode" "$s"; done
  case "$edit" in
    none) ;;
    py) edit_sources "$ctx/rootfs" '*.py' '#' 3 ;;
    js) edit_sources "$ctx/rootfs" '*.js' '//' 3 ;;
    *) die "unknown edit $edit" ;;
  esac
  if [ "$parent" = scratch ]; then echo 'FROM scratch'; else echo "FROM $parent"; fi >"$ctx/Dockerfile"
  echo 'COPY rootfs/ /' >>"$ctx/Dockerfile"
  remember_stale "$ref"
  build "$ref" "$fp" "$ctx"
  rm -rf "$ctx"
}

# --- base: busybox, the merged-/usr layout, and the libraries the runtimes link against ----------
RUNTIME_BINARIES="/usr/bin/node /usr/bin/python3.11 /usr/lib/python3.11/lib-dynload/*.so /usr/bin/perl $LIBDIR/perl/5.36.0/auto/*/*.so"
# shellcheck disable=SC2086 # globs in the list are meant to expand
base_libs() { linked_libs $RUNTIME_BINARIES | canonical_libs; }
BASE="$REPO/base:1"
mapfile -t LIBS < <(base_libs)
base_fp=$({ echo "recipe=$RECIPE base"; find /bin/busybox "${LIBS[@]}" -printf '%p %s %T@ %y\n' | sort; } | sha256sum | cut -c1-16)
if [ "$(current_label "$BASE")" = "$base_fp" ]; then
  log "$BASE is up to date"
else
  ctx="$WORK/ctx/base"
  rm -rf "$ctx"
  root="$ctx/rootfs"
  stage "$root" "${LIBS[@]}"
  base_rootfs "$root"
  mkdir -p "$root/app"
  printf 'FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/local/bin:/usr/bin:/bin\nWORKDIR /app\nCMD ["/bin/sh"]\n' >"$ctx/Dockerfile"
  remember_stale "$BASE"
  build "$BASE" "$base_fp" "$ctx"
  rm -rf "$ctx"
fi

# --- runtimes ------------------------------------------------------------------------------------
step "$REPO/python:1" "$BASE" link none /usr/bin/python3.11 /usr/lib/python3.11
step "$REPO/node:1" "$BASE" link none /usr/bin/node
# shellcheck disable=SC2046 # existing prints one path a line, none with spaces
step "$REPO/perl:1" "$BASE" link none $(existing /usr/bin/perl /usr/share/perl "$LIBDIR/perl" "$LIBDIR/perl-base" "$LIBDIR/perl5")

# --- dependency layers ---------------------------------------------------------------------------
dist() { for p in "$@"; do [ -e "$DIST/$p" ] && echo "$DIST/$p"; done; return 0; }
mapfile -t API_DEPS < <(dist requests urllib3 idna certifi charset_normalizer chardet yaml _yaml jwt websocket six.py)
mapfile -t WORKER_DEPS < <(dist cryptography attr attrs jsonschema pyrsistent pyparsing oauthlib OpenSSL httplib2 toml)
# Release 2 adds one package to the worker's dependencies.
ADDED_PACKAGE="$DIST/${FERRY_BENCH_DELTA_ADD:-dockerpty}"
step "$REPO/api-deps:r1" "$REPO/python:1" link none "${API_DEPS[@]}"
step "$REPO/worker-deps:r1" "$REPO/python:1" link none "${WORKER_DEPS[@]}"
step "$REPO/worker-deps:r2" "$REPO/python:1" link none "${WORKER_DEPS[@]}" "$ADDED_PACKAGE"
step "$REPO/web-deps:r1" "$REPO/node:1" link none "$NPM/node_modules=/app/node_modules"
# shellcheck disable=SC2046
step "$REPO/jobs-deps:r1" "$REPO/node:1" link none /usr/lib/node_modules/corepack=/app/node_modules/corepack $(existing /usr/share/javascript | sed 's|$|=/app/vendor|')
step "$REPO/report-deps:r1" "$REPO/perl:1" link none /usr/share/perl5
# shellcheck disable=SC2046
step "$REPO/static-deps:r1" "$BASE" link none /usr/share/mime=/srv/mime $(existing /usr/share/javascript | sed 's|$|=/srv/javascript|')

# --- application layers --------------------------------------------------------------------------
mapfile -t PERL_SCRIPTS < <(for f in /usr/bin/*; do [ -f "$f" ] && [ ! -L "$f" ] && head -c 64 "$f" 2>/dev/null | head -n 1 | grep -q '^#!.*perl' && echo "$f=/app/bin/$(basename "$f")"; done; true)
[ "${#PERL_SCRIPTS[@]}" -gt 0 ] || die "no perl scripts found in /usr/bin"
step "$REPO/api:r1" "$REPO/api-deps:r1" copy none "$DIST/compose=/app/compose"
step "$REPO/api:r2" "$REPO/api-deps:r1" copy py "$DIST/compose=/app/compose"
step "$REPO/worker:r1" "$REPO/worker-deps:r1" copy none "$DIST/docker=/app/docker"
step "$REPO/worker:r2" "$REPO/worker-deps:r2" copy none "$DIST/docker=/app/docker"
step "$REPO/web:r1" "$REPO/web-deps:r1" copy none "$NPM/lib=/app/lib" "$NPM/package.json=/app/package.json"
step "$REPO/web:r2" "$REPO/web-deps:r1" copy js "$NPM/lib=/app/lib" "$NPM/package.json=/app/package.json"
step "$REPO/jobs:r1" "$REPO/jobs-deps:r1" copy none "$NPM/bin=/app/bin" "$NPM/index.js=/app/index.js" "$NPM/package.json=/app/package.json"
step "$REPO/report:r1" "$REPO/report-deps:r1" copy none "${PERL_SCRIPTS[@]}"
step "$REPO/static:r1" "$REPO/static-deps:r1" copy none /usr/share/doc/python3.11=/srv/www/python /usr/share/man/man3=/srv/www/man3
# The big stack (FERRY_BENCH_DELTA_BIG=1, for the delta section's RSS rows): the worker's change
# on a dependency layer of about 570 MB (the machine's JDKs under /opt/jvm, a few files over 100 MB,
# plus the worker's packages): release 2 adds the same one package, the application layer above is
# rebuilt. Peak RSS must not grow with the layer.
BIG=0
if [ "${FERRY_BENCH_DELTA_BIG:-0}" = 1 ]; then
  [ -d /usr/lib/jvm ] || die "/usr/lib/jvm missing: the big stack's dependency layer is built from it"
  BIG=1
  step "$REPO/big-deps:r1" "$REPO/python:1" link none /usr/lib/jvm=/opt/jvm "${WORKER_DEPS[@]}"
  step "$REPO/big-deps:r2" "$REPO/python:1" link none /usr/lib/jvm=/opt/jvm "${WORKER_DEPS[@]}" "$ADDED_PACKAGE"
  step "$REPO/big:r1" "$REPO/big-deps:r1" copy none "$DIST/docker=/app/docker"
  step "$REPO/big:r2" "$REPO/big-deps:r2" copy none "$DIST/docker=/app/docker"
fi
# Unchanged services: release 2 ships the very same image.
for svc in jobs report static; do docker tag "$REPO/$svc:r1" "$REPO/$svc:r2"; done
rmdir "$WORK/ctx" 2>/dev/null || true
remove_stale

SERVICES=(api worker web jobs report static)
CHANGED=(api worker web)
CHECKED=("${SERVICES[@]}")
[ "$BIG" = 0 ] || CHECKED+=(big)

# Release 2 must share with release 1 exactly what the recipe says: every layer below the changed
# one. A cache or recipe slip would quietly change what the bench measures, so check it here.
layers() { docker image inspect --format '{{range .RootFS.Layers}}{{.}} {{end}}' "$1"; }
for svc in "${CHECKED[@]}"; do
  read -r -a l1 <<<"$(layers "$REPO/$svc:r1")"
  read -r -a l2 <<<"$(layers "$REPO/$svc:r2")"
  same=0
  while [ "$same" -lt "${#l1[@]}" ] && [ "$same" -lt "${#l2[@]}" ] && [ "${l1[$same]}" = "${l2[$same]}" ]; do same=$((same + 1)); done
  case "$svc" in
    api | web) want=$((${#l1[@]} - 1)) ;;   # only the application layer differs
    worker | big) want=$((${#l1[@]} - 2)) ;; # dependencies and the application layer above them
    *) want=${#l1[@]} ;;                    # identical
  esac
  if [ "$same" != "$want" ] || [ "${#l1[@]}" != "${#l2[@]}" ]; then
    die "$svc: r1 and r2 share $same of ${#l1[@]}/${#l2[@]} layers, the recipe says $want"
  fi
done

# --- definitions ---------------------------------------------------------------------------------
write_def() { # dir release version name services...
  local dir="$1" rel="$2" version="$3" name="$4" svc
  shift 4
  mkdir -p "$dir"
  printf 'name: %s\nversion: %s\ncompose: compose.yaml\n' "$name" "$version" >"$dir/ferry.yaml"
  {
    echo "services:"
    for svc in "$@"; do
      cat <<EOF
  $svc:
    image: $REPO/$svc:$rel
    restart: unless-stopped
    healthcheck:
      test: ["CMD", "true"]
    user: "65534"
EOF
    done
  } >"$dir/compose.yaml"
}
write_def "$WORK/def-r1" r1 1.0.0 delta "${SERVICES[@]}"
write_def "$WORK/def-r2" r2 2.0.0 delta "${SERVICES[@]}"
if [ "$BIG" = 1 ]; then
  write_def "$WORK/def-big-r1" r1 1.0.0 delta-big big
  write_def "$WORK/def-big-r2" r2 2.0.0 delta-big big
fi

echo "def_r1=$WORK/def-r1"
echo "def_r2=$WORK/def-r2"
echo "images_r1=$(printf "$REPO/%s:r1 " "${SERVICES[@]}" | sed 's/ $//')"
echo "images_r2=$(printf "$REPO/%s:r2 " "${SERVICES[@]}" | sed 's/ $//')"
echo "changed=${CHANGED[*]}"
echo "added=$ADDED_PACKAGE"
if [ "$BIG" = 1 ]; then
  echo "def_big_r1=$WORK/def-big-r1"
  echo "def_big_r2=$WORK/def-big-r2"
  echo "images_big_r1=$REPO/big:r1"
  echo "images_big_r2=$REPO/big:r2"
fi
