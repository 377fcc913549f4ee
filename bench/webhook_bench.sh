#!/usr/bin/env bash
# The CI webhook front door: verification + enqueue throughput and latency over loopback beside
# Node's @octokit/webhooks-methods verify() (bench/webhook_load.mjs), and queued-to-runner-started
# latency with a real runc runner on the two-socket fixture. Needs root, runc, node and the npm
# packages of tests/webhook, and berth_bench_webhook_load from the same build as BERTHD (or
# WEBHOOK_LOAD=PATH). Usage: webhook_bench.sh BERTHD BERTHCTL [REQUESTS] [STARTS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
BERTHD=$(realpath "$1")
BERTHCTL=$(realpath "$2")
requests=${3:-3000}
starts=${4:-10}
LOAD=${WEBHOOK_LOAD:-$(dirname "$(dirname "$BERTHD")")/bench/berth_bench_webhook_load}
. "$repo/tests/harness/host.sh"
[ -d "$repo/tests/webhook/node_modules/@octokit" ] || (cd "$repo/tests/webhook" && npm ci --no-audit --no-fund >/dev/null)
D=$(mktemp -d /tmp/berth-webhook-bench.XXXXXX)
chmod 755 "$D"
peer_pid=
trap '[ -z "$peer_pid" ] || kill "$peer_pid" 2>/dev/null; berthd_stop; for c in $(runc --root "$D/runc" list -q 2>/dev/null); do runc --root "$D/runc" delete -f "$c"; done; rm -rf "$D"' EXIT
printf 'bench-secret' >"$D/secret" && chmod 600 "$D/secret"
bundle_template "$D"
port=$((20000 + RANDOM % 20000))
fixture=$repo/tests/fixtures/two-socket
config() {  # MAX_RUNNERS
  cat >"$D/berthd.json" <<JSON
{"sysfs_root": "$fixture/sys", "dev_root": "$fixture/dev", "proc_root": "$fixture/proc",
 "state_dir": "$D/state", "runtime_dir": "$D/run", "control_socket": "$D/berth.sock",
 "log_level": "warn", "udev_source": "off", "runc_root": "$D/runc",
 "github": {"listen": "127.0.0.1:$port", "secret_file": "$D/secret", "max_runners": $1,
   "rate_per_peer": 1000000, "max_connections": 256,
   "flavors": [{"name": "gpu", "labels": ["ubuntu-latest", "gpu"], "request": {"gpus": 1},
     "runner": {"rootfs": "$D/rootfs", "args": ["sleep", "1000000"]}}]}}
JSON
}
# Verify + enqueue: max_runners 0, so every queued job is verified, recorded durably and queued.
config 0
berthd_start "$D/berthd.json" "$D/berth.sock"
echo "== webhook verify + enqueue, $requests requests, 16 at a time (median of 3 interleaved rounds)"
# The C++ client first: it costs a fraction of either server per request, so the servers bound
# the loop. Then the same rounds through a Node client, which costs as much as either server.
node "$here/webhook_load.mjs" template "$repo" "$D/queued.json"
node "$here/webhook_load.mjs" serve "$repo" >"$D/peer.port" &
peer_pid=$!
for ((w = 0; w < 100; w++)); do [ -s "$D/peer.port" ] && break; sleep 0.05; done
"$LOAD" "$D/queued.json" bench-secret "$requests" 16 5000000000 \
  "berthd=127.0.0.1:$port:$BERTHD_PID" "octokit_verify=127.0.0.1:$(cat "$D/peer.port"):$peer_pid"
kill "$peer_pid"
peer_pid=
node "$here/webhook_load.mjs" "$repo" "http://127.0.0.1:$port/v1/webhooks/github" "$requests" 16 "$BERTHD_PID"
berthd_stop
rm -rf "$D/state"

# Queued to runner started: one runner at a time, measured from berthd's own log timestamps.
config 1
sed -i 's/"log_level": "warn"/"log_level": "info"/' "$D/berthd.json"
berthd_start "$D/berthd.json" "$D/berth.sock"
send() { node "$repo/tests/webhook/deliver.mjs" send "http://127.0.0.1:$port/v1/webhooks/github" bench-secret "$@" >/dev/null; }
for ((i = 1; i <= starts; i++)); do
  send workflow_job queued --id $((7000 + i))
  for ((w = 0; w < 200; w++)); do
    grep -q "BERTH_RUNNER_STARTED job $((7000 + i)) " "$D/berthd.log" && break
    sleep 0.05
  done
  send workflow_job completed --id $((7000 + i))
  for ((w = 0; w < 200; w++)); do
    grep -q "BERTH_RUNNER_FINISHED job $((7000 + i))" "$D/berthd.log" && break
    sleep 0.05
  done
done
berthd_stop
python3 - "$D/berthd.log" "$starts" <<'PY'
import re, sys, datetime
log = open(sys.argv[1]).read().splitlines()
t = lambda line: datetime.datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S.%f")
queued, started = {}, {}
for line in log:
    m = re.search(r"BERTH_WEBHOOK delivery \S+ workflow_job.queued: 200 job (\d+)", line)
    if m: queued[m.group(1)] = t(line)
    m = re.search(r"BERTH_RUNNER_STARTED job (\d+) ", line)
    if m: started[m.group(1)] = t(line)
ms = sorted((started[j] - queued[j]).total_seconds() * 1000 for j in started if j in queued)
if ms:
    print(f"== queued to runner started (create berth, bundle, runc create, attach, runc start): "
          f"{len(ms)} runners, p50 {ms[len(ms)//2]:.1f} ms, max {ms[-1]:.1f} ms")
PY
