#!/usr/bin/env bash
# CI webhooks end to end: GitHub's example payloads (npm @octokit/webhooks-examples) signed with
# octokit's sign() and delivered over HTTP to berthd on the two-socket fixture, whose flavors run
# real runc runners; refusals; dedupe; limits and the durable queue across a restart; a runner
# that dies or never takes a job; a flood of the listener. Usage: webhook_test.sh BERTHD BERTHCTL.
# Exit 77: cannot run here.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
BERTHD=$(realpath "$1")
BERTHCTL=$(realpath "$2")
. "$repo/tests/harness/host.sh"
. "$repo/tests/harness/checks.sh"

why=
[ "$(id -u)" = 0 ] || why="needs root"
for b in runc jq node npm curl setpriv; do command -v $b >/dev/null || why=${why:-"$b is not installed"}; done
[ -n "$why" ] && { echo "SKIP webhook_test: $why"; exit 77; }

D=$(mktemp -d /tmp/berth-webhook.XXXXXX)
chmod 755 "$D"
SOCK=$D/berth.sock
CONF=$D/berthd.json
RUNC_ROOT=$D/runc
PORT=$((20000 + RANDOM % 20000))
URL=http://127.0.0.1:$PORT/v1/webhooks/github
SECRET="It's a Secret to Everybody"
ctl() { "$BERTHCTL" --socket "$SOCK" "$@"; }
send() { node "$repo/tests/webhook/deliver.mjs" send "$URL" "$SECRET" "$@"; }
runners_json() { ctl --json runners; }
runner_state() { runners_json | jq -r --arg j "$1" '.runners[] | select(.job_id == ($j | tonumber)) | .state'; }
containers() { runc --root "$RUNC_ROOT" list -q 2>/dev/null | grep '^berth-runner-' | sort | tr '\n' ' '; }

cleanup() {
  local c
  berthd_stop
  for c in $(runc --root "$RUNC_ROOT" list -q 2>/dev/null); do runc --root "$RUNC_ROOT" delete -f "$c" >/dev/null 2>&1; done
  standins_remove
  checks_cleanup "$D"
}
trap cleanup EXIT

if [ ! -d "$repo/tests/webhook/node_modules/@octokit/webhooks-examples" ]; then
  (cd "$repo/tests/webhook" && npm ci --no-audit --no-fund >"$D/npm.log" 2>&1) ||
    { echo "SKIP webhook_test: npm ci failed (no registry?): $(tail -3 "$D/npm.log")"; exit 77; }
fi

bundle_template "$D"
printf '%s' "$SECRET" >"$D/secret"
chmod 600 "$D/secret"
fixture=$repo/tests/fixtures/two-socket
# The runner: shows what it holds, then waits (as a runner waits for its job) until told to exit.
runner_cmd='echo "name=$RUNNER_NAME jit=$JIT"; while [ ! -e /tmp/exit ]; do sleep 0.2; done'
write_config() {  # MAX_RUNNERS REAP_AFTER_S
  cat >"$CONF" <<JSON
{
  "sysfs_root": "$fixture/sys", "dev_root": "$fixture/dev", "proc_root": "$fixture/proc",
  "state_dir": "$D/state", "runtime_dir": "$D/run", "control_socket": "$SOCK",
  "log_level": "info", "udev_source": "off", "runc_root": "$RUNC_ROOT",
  "passthrough_iommu_groups": [70],
  "pools": [{"name": "grid", "subnet": "10.77.0.0/24", "ranges": ["10.77.0.10-10.77.0.20"], "gateway": "10.77.0.1"}],
  "github": {
    "listen": "127.0.0.1:$PORT", "secret_file": "$D/secret", "read_timeout_s": 3,
    "max_connections": 16, "max_runners": $1, "reap_after_s": $2,
    "flavors": [
      {"name": "gpu", "labels": ["ubuntu-latest", "gpu"],
       "request": {"gpus": 1, "vfs": 1, "network": {"pool": "grid", "ifname": "ib0"}},
       "runner": {"rootfs": "$D/rootfs", "args": ["sh", "-c", $(jq -Rn --arg c "$runner_cmd" '$c')],
                  "env": ["RUNNER_NAME={runner_name}", "JIT={jit_config}", "REPO={repo}"], "memory_mb": 256}},
      {"name": "gpu-only", "labels": ["gpu-only"], "request": {"gpus": 1},
       "runner": {"rootfs": "$D/rootfs", "args": ["sh", "-c", $(jq -Rn --arg c "$runner_cmd" '$c')],
                  "env": ["RUNNER_NAME={runner_name}", "JIT={jit_config}"]}}
    ]
  }
}
JSON
}

standins_create
before=$(host_snapshot)
write_config 1 6
berthd_start "$CONF" "$SOCK" || exit 1
LOG=${CONF%.json}.log

# --- ping, other events, labels no flavor takes ------------------------------------------------
check_eq "ping answers 200" "$(send ping - | cut -d' ' -f1)" 200
check_eq "a waiting job is 202" "$(send workflow_job waiting | cut -d' ' -f1)" 202
out=$(send workflow_job queued --example 1 --id 777)
check_eq "labels no flavor takes are 202" "${out%% *}" 202
check_contains "... with the reason" "$out" "no flavor takes labels"
check_eq "... and no runner" "$(containers)" ""

# --- refused before any berth exists ----------------------------------------------------------
node "$repo/tests/webhook/deliver.mjs" refusals "$URL" "$SECRET" >"$D/refusals" 2>&1
r() { awk -v c="$1" '$1 == c {sub($1 " ", ""); print}' "$D/refusals"; }
check_eq "bad signature: 401" "$(r bad_signature)" 401
check_eq "missing signature: 401" "$(r missing_signature)" 401
check_eq "wrong secret: 401" "$(r wrong_secret)" 401
check_eq "signature of another body: 401" "$(r other_body)" 401
check_eq "malformed signature: 401" "$(r malformed_signature)" 401
check_eq "truncated body: 400" "$(r truncated_body)" 400
check_eq "body over 25 MiB: 413" "$(r body_over_limit)" 413
check_eq "header over 16 KiB: 413" "$(r header_over_limit)" 413
check_match "slow sender dropped at the read deadline, unanswered" "$(r slow_sender)" '^0 after [3-6]s$'
check_match "connections over the cap closed at once" "$(r over_connection_cap)" '^(2[4-9]|3[0-9]|40) of 40 closed'
check_eq "after the cap, served again" "$(r after_cap)" 401
check_eq "no berth after the refusals" "$(ctl --json list | jq '.berths | length')" 0
check_eq "no runner after the refusals" "$(runners_json | jq '.runners | length')" 0

# --- queued -> a real runc runner with its berth; completed -> the host as before -------------
out=$(send workflow_job queued --id 1001 --delivery d-1001)
check_eq "queued with a matching flavor: 200" "${out%% *}" 200
for i in 1 2 3 4; do send workflow_job queued --id 1001 --delivery d-1001 >/dev/null; done
send workflow_job queued --id 1001 --delivery d-1001-again >/dev/null
check_wait "the runner runs" 15 '[ "$(runner_state 1001)" = running ]'
check_eq "five deliveries and a second delivery id: one runner" "$(containers)" "berth-runner-1001 "
check_eq "... and one berth" "$(ctl --json list | jq -r '[.berths[].owner] | join(",")')" "github/1001"
inside() { runc --root "$RUNC_ROOT" exec "berth-runner-$1" sh -c "$2" 2>&1; }
cpus=$(ctl --json show github/1001 | jq -r .berth.cpus)
check_eq "the runner's cpuset is its berth's NUMA CPUs" \
  "$(inside 1001 'grep Cpus_allowed_list /proc/1/status' | awk '{print $2}')" "$cpus"
gpu=$(ctl --json show github/1001 | jq -r '.berth.gpus[0].index')
check_eq "its GPU stand-in opens inside" "$(inside 1001 "(exec 3</dev/nvidia$gpu) && echo open")" open
check_contains "its VF carries the pool address" "$(inside 1001 'ip -o addr show ib0')" "10.77.0."
check_contains "the runner got its name" "$(cat "$D/run/runners/1001/output.log" 2>/dev/null)" "name=berth-1001"
check_eq "berthctl runners shows it" "$(ctl runners | awk '$1 == 1001 {print $2, $3, $4, $5}')" \
  "running gpu berth-1001 github/1001"
send workflow_job in_progress --id 1001 --runner berth-1001 >/dev/null
out=$(send workflow_job completed --id 1001 --runner berth-1001)
check_eq "completed: 200" "${out%% *}" 200
check_wait "completed tears the runner down" 20 '[ "$(runner_state 1001)" = finished ] && [ -z "$(containers)" ]'
check_eq "... and releases its berth" "$(ctl --json list | jq '[.berths[] | select(.state != "released")] | length')" 0
check_eq "the host is as before (the VF back under its host name)" "$(host_snapshot)" "$before"
out=$(send workflow_job completed --id 1001 --runner berth-1001 --delivery late)
check_eq "a second completed is harmless" "${out%% *}" 200

# --- out of order: completed before queued ------------------------------------------------------
send workflow_job completed --id 1002 >/dev/null
out=$(send workflow_job queued --id 1002)
check_contains "queued after completed starts nothing" "$out" "already completed"
check_eq "... no container" "$(containers)" ""

# --- more jobs than the limit wait in order; a restart loses nothing, starts nothing twice -----
# (GPU-only runners from here: a veth stand-in dies with a runner that exits by itself, where a
# real VF would come back to the host.)
for j in 2001 2002 2003; do send workflow_job queued --id $j --labels self-hosted,gpu-only >/dev/null; done
check_wait "the first runs" 15 '[ "$(runner_state 2001)" = running ]'
send workflow_job in_progress --id 2001 --runner berth-2001 --labels gpu-only >/dev/null
check_eq "the others wait, in order" "$(runners_json | jq -r '[.runners[] | select(.state == "queued") | .job_id] | join(",")')" "2002,2003"
pid_before=$(cat "$D/run/runners/2001/pid")
berthd_stop
berthd_start "$CONF" "$SOCK" || exit 1
sleep 1
check_eq "after a restart the runner is the same process" "$(cat "$D/run/runners/2001/pid")" "$pid_before"
check_eq "... still running, the queue intact" \
  "$(runners_json | jq -r '[.runners[] | select(.state != "finished") | "\(.job_id):\(.state)"] | join(",")')" \
  "2001:running,2002:queued,2003:queued"
check_eq "... one container" "$(containers)" "berth-runner-2001 "
send workflow_job completed --id 2001 --runner berth-2001 >/dev/null
check_wait "the next in line starts when capacity frees" 20 '[ "$(runner_state 2002)" = running ]'
send workflow_job in_progress --id 2002 --runner berth-2002 >/dev/null
check_eq "2003 still waits" "$(runner_state 2003)" queued

# --- the runner dies by itself: released; 2003 starts; a late completed is harmless -----------
inside 2002 'touch /tmp/exit' >/dev/null
check_wait "a runner that exits releases its berth" 20 '[ "$(runner_state 2002)" = finished ] && [ "$(ctl --json show github/2002 | jq -r .berth.state)" != reserved ]'
check_wait "... and the queue moves" 20 '[ "$(runner_state 2003)" = running ]'
out=$(send workflow_job completed --id 2002 --runner berth-2002)
check_eq "a completed after the runner's exit is harmless" "${out%% *}" 200
check_eq "... 2003 untouched" "$(runner_state 2003)" running

# --- a runner that never takes a job is reaped ---------------------------------------------------
check_wait "a runner that takes no job is reaped after reap_after_s" 20 '[ "$(runner_state 2003)" = finished ]'
check_contains "... with a log line" "$(cat "$LOG")" "BERTH_RUNNER_REAPED job 2003"
check_contains "... and a counter" "$(curl -s --unix-socket "$SOCK" http://x/metrics)" 'berth_github_runners_total{event="reaped"} 1'
check_wait "... and nothing left of it" 20 '[ -z "$(containers)" ]'

# --- a flood of the webhook listener from an unprivileged peer ------------------------------------
log_before=$(stat -c %s "$LOG")
cpu() { awk '{print $14 + $15}' "/proc/$BERTHD_PID/stat"; }
cpu_before=$(cpu)
setpriv --reuid=65534 --regid=65534 --clear-groups node "$repo/tests/webhook/deliver.mjs" flood 127.0.0.1 "$PORT" 6 &
flooder=$!
sleep 1
worst=0
answered=0
for i in $(seq 1 40); do
  t=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 2 --unix-socket "$SOCK" http://x/v1/health)
  [ "${t%% *}" = 200 ] && answered=$((answered + 1))
  ms=$(awk -v s="${t##* }" 'BEGIN {print int(s * 1000)}')
  [ "$ms" -gt "$worst" ] && worst=$ms
  sleep 0.1
done
wait $flooder
cpu_used=$(( $(cpu) - cpu_before ))
log_grew=$(( $(stat -c %s "$LOG") - log_before ))
echo "flood: root's slowest health check ${worst} ms, berthd CPU ${cpu_used} ticks, log +${log_grew} bytes"
check_eq "root's health checks all answered during the flood" "$answered" 40
check_match "... each within 1 s" "$worst" '^[0-9]{1,3}$'
check_match "berthd's CPU stayed bounded (< 4 s in 7 s)" "$cpu_used" '^([0-9]{1,2}|[1-3][0-9]{2})$'
check_match "the log stayed small (< 64 KiB)" "$log_grew" '^[0-9]{1,4}$|^[1-5][0-9]{4}$|^6[0-4][0-9]{3}$'
check_wait "the listener serves again when the flood stops" 10 \
  '[ "$(curl -s -o /dev/null -w %{http_code} http://127.0.0.1:$PORT/v1/health)" = 200 ]'

berthd_stop

# --- berthd killed (SIGKILL) in a burst of deliveries: each one it answered is in the book -----
# (no runner starts: max_runners 0; the book of the sections before is set aside and put back)
cp -a "$D/state/github" "$D/github.before"
write_config 0 6
berthd_start "$CONF" "$SOCK" || exit 1
node "$repo/tests/webhook/deliver.mjs" burst "$URL" "$SECRET" 3000 16 5000 self-hosted,gpu-only >"$D/acked" &
burster=$!
for ((i = 0; i < 200; i++)); do [ "$(wc -l <"$D/acked")" -ge 200 ] && break; sleep 0.02; done
kill -9 "$BERTHD_PID"
wait "$BERTHD_PID" 2>/dev/null
BERTHD_PID=
wait $burster
acked=$(wc -l <"$D/acked")
berthd_start "$CONF" "$SOCK" || exit 1
runners_json | jq -r '.runners[] | select(.job_id >= 5000 and .job_id < 8000) | .job_id' | sort -n >"$D/kept"
echo "kill during a burst: $acked deliveries answered 200 before the kill, $(wc -l <"$D/kept") in the book after"
check_match "the kill landed in the middle of the burst" "$acked" '^([2-9][0-9]{2}|[1-2][0-9]{3})$'
check_eq "every delivery answered 200 is in the book after the restart" \
  "$(sort -n "$D/acked" | comm -23 - "$D/kept" | head -5 | tr '\n' ' ')" ""
check_eq "... each job once" "$(uniq -d "$D/kept" | head -3 | tr '\n' ' ')" ""
check_eq "... all queued" "$(runners_json | jq -r '[.runners[] | select(.job_id >= 5000 and .job_id < 8000 and .state != "queued")] | length')" 0
out=$(send workflow_job queued --id 5000 --labels self-hosted,gpu-only)
check_contains "... and a redelivery of one of them starts nothing new" "$out" "already"
berthd_stop
rm -rf "$D/state/github"
mv "$D/github.before" "$D/state/github"
write_config 1 6

# --- registration as a GitHub App against a local HTTPS API; the listener itself on TLS ----------
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$D/tls.key" -out "$D/tls.crt" 2>/dev/null
openssl genrsa -out "$D/app.pem" 2048 2>/dev/null && chmod 600 "$D/app.pem"
openssl rsa -in "$D/app.pem" -pubout -out "$D/app.pub" 2>/dev/null
API_PORT=$((PORT + 1))
node "$repo/tests/webhook/github_api.mjs" "$API_PORT" "$D/tls.crt" "$D/tls.key" "$D/app.pub" "$D/api_mode" "$D/api.log" &
api_pid=$!
trap 'kill $api_pid 2>/dev/null; cleanup' EXIT
jq --arg crt "$D/tls.crt" --arg key "$D/tls.key" --arg pem "$D/app.pem" --arg api "https://127.0.0.1:$API_PORT" \
  '.github += {tls: {cert: $crt, key: $key}, registration: "app", app_id: 4242, private_key_file: $pem,
               api_url: $api, ca_file: $crt, api_timeout_s: 2, reap_after_s: 600}' "$CONF" >"$CONF.new" && mv "$CONF.new" "$CONF"
berthd_start "$CONF" "$SOCK" || exit 1
URL=https://127.0.0.1:$PORT/v1/webhooks/github
export NODE_EXTRA_CA_CERTS=$D/tls.crt
check_eq "the listener speaks TLS" "$(send ping - | cut -d' ' -f1)" 200
check_match "... and not plain HTTP" "$(curl -s -o /dev/null -w %{http_code} --max-time 3 http://127.0.0.1:$PORT/v1/health)" '^000$'
send workflow_job queued --id 3001 --labels self-hosted,gpu-only >/dev/null
check_wait "a registered runner runs" 20 '[ "$(runner_state 3001)" = running ]'
check_contains "... with its JIT config in its environment" "$(cat "$D/run/runners/3001/output.log")" "jit=JIT-berth-3001"
jwt=$(grep access_tokens "$D/api.log" | head -1)
check_eq "the JWT verified (RS256, iss, iat, exp <= 10 min)" "$(jq -r '.jwt.ok' <<<"$jwt")" true
check_eq "... for the delivery's installation" "$(jq -r '.path' <<<"$jwt")" /app/installations/3456996/access_tokens
check_match "... exp - iat at most 600 s" "$(jq -r '.jwt.claims.exp - .jwt.claims.iat' <<<"$jwt")" '^(540|600)$'
jit=$(grep generate-jitconfig "$D/api.log" | head -1)
check_eq "generate-jitconfig for the repository" "$(jq -r .path <<<"$jit")" \
  /repos/Codertocat/Hello-World/actions/runners/generate-jitconfig
check_eq "... with the runner's name and the job's labels" "$(jq -c '[.body.name, .body.labels]' <<<"$jit")" \
  '["berth-3001",["self-hosted","gpu-only"]]'
send workflow_job completed --id 3001 --runner berth-3001 >/dev/null
check_wait "... torn down on completed" 20 '[ "$(runner_state 3001)" = finished ] && [ -z "$(containers)" ]'
n=3100
for mode in 401 422 timeout; do
  n=$((n + 1))
  echo "$mode" >"$D/api_mode"
  send workflow_job queued --id $n --labels self-hosted,gpu-only >/dev/null
  check_wait "API $mode: the runner ends, not started" 20 '[ "$(runner_state $n)" = finished ]'
  outcome=$(runners_json | jq -r --arg j $n '.runners[] | select(.job_id == ($j | tonumber)) | .outcome')
  case $mode in
    401) want="401 Bad credentials" ;;
    422) want="422 Validation Failed" ;;
    timeout) want="timed out" ;;
  esac
  check_contains "API $mode: the outcome says why" "$outcome" "$want"
  check_contains "API $mode: ... in a log line" "$(grep "BERTH_RUNNER_START_FAILED job $n" "${CONF%.json}.log")" "$want"
  check_match "API $mode: its berth is released" "$(ctl --json show github/$n 2>/dev/null | jq -r .berth.state)" '^(released|)$'
  check_eq "API $mode: no container" "$(containers)" ""
done
berthd_stop

standins_restore
check_eq "in the end the host is as before" "$(host_snapshot)" "$before"
checks_done webhook_test
