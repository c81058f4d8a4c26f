#!/usr/bin/env bash
# The demo: two releases of bundles/demo travel from the build engine to the air-gapped engine
# (a second dockerd in its own network namespace, reachable only through its unix socket).
#
#   build server:  keys generate, bundle create (release 1), bundle verify, bundle inspect
#   host:          bundle install, host status, page checked from inside the namespace,
#                  host inventory (carried back)
#   build server:  bundle create release 2 --base inventory (only new layers travel)
#   host:          bundle install release 2, host rollback
#   blue/green:    scripts/demo-blue-green.sh, an upgrade and a broken release with a request counter
#
# Everything happens under $FERRY_DEMO_DIR (default /tmp/ferry-demo), recreated on each run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

bash scripts/engines.sh up >/dev/null
# shellcheck source=/dev/null
source <(bash scripts/engines.sh env)

DEMO="${FERRY_DEMO_DIR:-/tmp/ferry-demo}"
USB="$DEMO/usb"
ferry() { node "$ROOT/bin/ferry" "$@"; }
on_host() { DOCKER_HOST="$FERRY_TARGET_DOCKER_HOST" node "$ROOT/bin/ferry" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
page() { nsenter --net="$FERRY_TARGET_NETNS" wget -qO- "http://127.0.0.1:$1/" | sed -n 's/.*id="\(version\|host\)">\([^<]*\)<.*/  \1: \2/p'; }
size_of() { du -sb "$1" | cut -f1; }

# A previous run's stack on the host is removed so the demo always starts from an empty host.
old=$(DOCKER_HOST="$FERRY_TARGET_DOCKER_HOST" docker ps -aq --filter label=com.docker.compose.project=demo)
[ -z "$old" ] || DOCKER_HOST="$FERRY_TARGET_DOCKER_HOST" docker rm -f $old >/dev/null
rm -rf "$DEMO"
mkdir -p "$USB" "$DEMO/keys"

step "build server: the tested images of release 1.0.0 and 1.1.0"
DOCKER_HOST="$FERRY_BUILD_DOCKER_HOST" bash scripts/build-demo-images.sh --version 1.0.0
DOCKER_HOST="$FERRY_BUILD_DOCKER_HOST" bash scripts/build-demo-images.sh --version 1.1.0

step "build server: a signing key; its allowed_signers line goes to the hosts"
ferry keys generate --out "$DEMO/keys/ferry_ed25519" --comment demo-build-server >"$DEMO/allowed_signers"
cat "$DEMO/allowed_signers"

step "build server: ferry bundle create (release 1.0.0)"
DOCKER_HOST="$FERRY_BUILD_DOCKER_HOST" ferry bundle create bundles/demo --out "$USB/demo-1.0.0.ferry" \
  --sign-key "$DEMO/keys/ferry_ed25519" --sequence 1

step "operator: ferry bundle verify, then inspect, before walking in"
ferry bundle verify "$USB/demo-1.0.0.ferry" --trust "$DEMO/allowed_signers"
ferry bundle inspect "$USB/demo-1.0.0.ferry" --trust "$DEMO/allowed_signers"

step "host edge-1 (air-gapped engine): ferry bundle install"
on_host bundle install "$USB/demo-1.0.0.ferry" --trust "$DEMO/allowed_signers" --host edge-1 --state-dir "$DEMO/state"
echo "the page, fetched from inside the host's network namespace:"
page 8081

step "host: ferry host status demo"
on_host host status demo --state-dir "$DEMO/state"

step "host: ferry host inventory (carried back to the build server)"
on_host host inventory --host edge-1 --out "$USB/edge-1.inventory.json" --state-dir "$DEMO/state"

step "build server: ferry bundle create (release 1.1.0) against the host's inventory"
mkdir -p "$DEMO/defs"
cp -r bundles/demo "$DEMO/defs/demo-1.1.0"
rm -rf "$DEMO/defs/demo-1.1.0/images"
sed -i 's/:1\.0\.0/:1.1.0/' "$DEMO/defs/demo-1.1.0/compose.yaml"
sed -i 's/^version: .*/version: 1.1.0/' "$DEMO/defs/demo-1.1.0/ferry.yaml"
base_args=()
if ferry bundle create --help | grep -q -- '--base'; then base_args=(--base "$USB/edge-1.inventory.json"); fi
DOCKER_HOST="$FERRY_BUILD_DOCKER_HOST" ferry bundle create "$DEMO/defs/demo-1.1.0" --out "$USB/demo-1.1.0.ferry" \
  --sign-key "$DEMO/keys/ferry_ed25519" --sequence 2 "${base_args[@]}"
r1=$(size_of "$USB/demo-1.0.0.ferry")
r2=$(size_of "$USB/demo-1.1.0.ferry")
echo "release 1.0.0 bundle: $r1 bytes; release 1.1.0 bundle: $r2 bytes ($((r2 * 100 / r1))% of release 1)"

step "host: ferry bundle install (release 1.1.0)"
on_host bundle install "$USB/demo-1.1.0.ferry" --trust "$DEMO/allowed_signers" --host edge-1 --state-dir "$DEMO/state"
page 8081

step "host: ferry host rollback demo (back to 1.0.0)"
on_host host rollback demo --state-dir "$DEMO/state"
page 8081

bash scripts/demo-blue-green.sh

step "done"
echo "bundles: $USB; host state: $DEMO/state"
echo "stop the engines with: bash scripts/engines.sh down"
