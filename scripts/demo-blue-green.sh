#!/usr/bin/env bash
# The blue/green part of the demo (issue 16): a stack whose front proxy resolves `web` by DNS name
# on every request, upgraded while a request counter runs through the front, rolled back by
# flipping the names to the kept colour, then a release whose web answers 500 refused without a
# single failed request. Every image is ferry-demo/base
# (busybox-static, built by build-demo-images.sh): the front and web are busybox httpd with a CGI.
#
# Runs on the engines of scripts/engines.sh; everything under $FERRY_DEMO_BG_DIR
# (default /tmp/ferry-demo-bg), recreated on each run; the stack is "shop" on port 8082.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

bash scripts/engines.sh up >/dev/null
# shellcheck source=/dev/null
source <(bash scripts/engines.sh env)

DEMO="${FERRY_DEMO_BG_DIR:-/tmp/ferry-demo-bg}"
PORT=8082
STACK=shop
ferry() { node "$ROOT/bin/ferry" "$@"; }
on_host() { DOCKER_HOST="$FERRY_TARGET_DOCKER_HOST" node "$ROOT/bin/ferry" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
in_ns() { nsenter --net="$FERRY_TARGET_NETNS" "$@"; }

for p in "$STACK" "$STACK-blue" "$STACK-green"; do
  old=$(DOCKER_HOST="$FERRY_TARGET_DOCKER_HOST" docker ps -aq --filter "label=com.docker.compose.project=$p")
  [ -z "$old" ] || DOCKER_HOST="$FERRY_TARGET_DOCKER_HOST" docker rm -f $old >/dev/null
done
rm -rf "$DEMO"
mkdir -p "$DEMO/usb" "$DEMO/keys"
DOCKER_HOST="$FERRY_BUILD_DOCKER_HOST" bash scripts/build-demo-images.sh --version 1.0.0 >/dev/null
ferry keys generate --out "$DEMO/keys/ferry_ed25519" --comment demo-bg >"$DEMO/allowed_signers"

# A compose file per release: $1 version, $2 what web's CGI prints.
release() {
  local version="$1" body="$2" dir="$DEMO/defs/$STACK-$1"
  mkdir -p "$dir"
  printf 'name: %s\nversion: %s\ncompose: compose.yaml\n' "$STACK" "$version" >"$dir/ferry.yaml"
  cat >"$dir/compose.yaml" <<EOF
x-ferry:
  smoke: smoke
  switch: blue-green   # test the new release beside the old one, then switch
  front: [front]       # owns the published port; reaches web by name

services:
  front:
    image: ferry-demo/base:1.0.0
    restart: unless-stopped
    stop_grace_period: 1s
    ports: ["$PORT:8080"]
    entrypoint: ["/bin/sh", "-c"]
    command:
      - |
        mkdir -p /tmp/www/cgi-bin
        cat > /tmp/www/cgi-bin/proxy <<'CGI'
        #!/bin/sh
        # Resolves web on every request; a second try covers a container that just left the network.
        for i in 1 2; do
          if body=\$\$(timeout 3 wget -qO- http://web:8080/cgi-bin/app 2>/dev/null); then
            printf 'Content-Type: text/plain\\r\\n\\r\\n%s\\n' "\$\$body"; exit 0
          fi
        done
        printf 'Status: 502 Bad Gateway\\r\\n\\r\\nno upstream\\n'
        CGI
        chmod 755 /tmp/www/cgi-bin/proxy
        exec httpd -f -p 8080 -h /tmp/www
    healthcheck:
      test: ["CMD", "wget", "-qO-", "http://127.0.0.1:8080/cgi-bin/proxy"]
      interval: 1s
      timeout: 3s
      retries: 2

  web:
    image: ferry-demo/base:1.0.0
    restart: unless-stopped
    stop_grace_period: 1s
    entrypoint: ["/bin/sh", "-c"]
    command:
      - |
        mkdir -p /tmp/www/cgi-bin
        printf '#!/bin/sh\\nprintf "$body"\\n' > /tmp/www/cgi-bin/app
        chmod 755 /tmp/www/cgi-bin/app
        exec httpd -f -p 8080 -h /tmp/www
    healthcheck:
      test: ["CMD", "wget", "-qO-", "http://127.0.0.1:8080/cgi-bin/app"]
      interval: 1s
      timeout: 3s
      retries: 2

  smoke:
    image: ferry-demo/base:1.0.0
    profiles: ["smoke"]
    restart: "no"
    command: ["/bin/sh", "-c", "wget -qO- http://web:8080/cgi-bin/app | grep -q 'shop $version'"]
EOF
  DOCKER_HOST="$FERRY_BUILD_DOCKER_HOST" ferry bundle create "$dir" --out "$DEMO/usb/$STACK-$version.ferry" \
    --sign-key "$DEMO/keys/ferry_ed25519" --sequence "${version//./}" >/dev/null 2>&1
}
# A request counter through the front, inside the host's network namespace: 20+ requests a
# second until $DEMO/stop appears (or 120 s), then "ok N failed M" and the answers seen.
counter() {
  rm -f "$DEMO/stop"
  in_ns busybox sh -c "end=\$((\$(date +%s) + 120)); ok=0; failed=0
    while [ ! -e $DEMO/stop ] && [ \$(date +%s) -lt \$end ]; do
      if out=\$(timeout 10 wget -qO- http://127.0.0.1:$PORT/cgi-bin/proxy 2>/dev/null); then ok=\$((ok+1)); echo \"\$out\" >> $DEMO/answers; else failed=\$((failed+1)); fi
      usleep 20000
    done
    echo \"requests: \$ok answered, \$failed failed\"" &
  COUNTER=$!
}
stop_counter() {
  touch "$DEMO/stop"
  wait "$COUNTER"
  sort "$DEMO/answers" | uniq -c | sed 's/^/  /'
  rm -f "$DEMO/answers"
}
install() { on_host bundle install "$DEMO/usb/$STACK-$1.ferry" --trust "$DEMO/allowed_signers" --state-dir "$DEMO/state" --wait-timeout 30 --drain 2 "${@:2}"; }

step "build server: three releases of a blue/green stack (1.0.0, 1.1.0, and 1.2.0 whose web answers 500)"
release 1.0.0 'Content-Type: text/plain\\r\\n\\r\\nshop 1.0.0\\n'
release 1.1.0 'Content-Type: text/plain\\r\\n\\r\\nshop 1.1.0\\n'
release 1.2.0 'Status: 500 Internal Server Error\\r\\n\\r\\nbroken\\n'
ls "$DEMO/usb"

step "host: install 1.0.0 (front in project $STACK, web as $STACK-blue)"
install 1.0.0
in_ns wget -qO- "http://127.0.0.1:$PORT/cgi-bin/proxy"

step "host: upgrade to 1.1.0 with the request counter running"
counter
install 1.1.0
stop_counter

step "host: ferry host rollback $STACK: 1.0.0's colour is still there (stopped), so its containers start as they are and the names flip back"
counter
on_host host rollback "$STACK" --state-dir "$DEMO/state" --drain 2
stop_counter

step "host: 1.2.0, whose web answers 500: tested as the other colour, never switched to"
counter
install 1.2.0 || echo "(exit $?: the new colour was removed; 1.0.0 kept serving)"
stop_counter

step "host: ferry host status $STACK"
on_host host status "$STACK" --state-dir "$DEMO/state"
