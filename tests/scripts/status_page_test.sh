#!/usr/bin/env bash
# The status page in Debian's headless chromium, driven by playwright-core (npm, no browser
# download): berthd on the two-socket fixture, its socket relayed to a loopback TCP port by socat
# as an admin would (or ssh -L). Usage: status_page_test.sh BERTHD BERTHCTL ARTIFACT_DIR.
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
BERTHD=$(realpath "$1")
BERTHCTL=$(realpath "$2")
artifacts=$3
for b in chromium socat node npm; do
  command -v $b >/dev/null || { echo "SKIP status_page_test: $b is not installed"; exit 77; }
done
. "$repo/tests/harness/host.sh"
D=$(mktemp -d /tmp/berth-page.XXXXXX)
relay=
cleanup() { [ -n "$relay" ] && kill "$relay" 2>/dev/null; berthd_stop; rm -rf "$D"; }
trap cleanup EXIT
if [ ! -d "$repo/tests/status_page/node_modules/playwright-core" ]; then
  (cd "$repo/tests/status_page" && npm ci --no-audit --no-fund >"$D/npm.log" 2>&1) ||
    { echo "SKIP status_page_test: npm ci failed (no registry?): $(tail -3 "$D/npm.log")"; exit 77; }
fi
fixture=$repo/tests/fixtures/two-socket
cat >"$D/berthd.json" <<JSON
{"sysfs_root": "$fixture/sys", "dev_root": "$fixture/dev", "proc_root": "$fixture/proc",
 "state_dir": "$D/state", "runtime_dir": "$D/run", "control_socket": "$D/berth.sock",
 "log_level": "warn", "udev_source": "off"}
JSON
berthd_start "$D/berthd.json" "$D/berth.sock" || exit 1
port=$((20000 + RANDOM % 20000))
socat TCP-LISTEN:$port,bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:"$D/berth.sock" &
relay=$!
for ((i = 0; i < 50; i++)); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
mkdir -p "$artifacts"
node "$repo/tests/status_page/page_test.js" "http://127.0.0.1:$port/" "$BERTHCTL" "$D/berth.sock" \
  "$artifacts/status-page.png" "kill $BERTHD_PID"
