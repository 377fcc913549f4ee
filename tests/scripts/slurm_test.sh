#!/usr/bin/env bash
# Slurm prolog/epilog and the OCI hook, end to end: a real single-node Slurm (tests/harness/
# slurm.sh), berthd on the two-socket fixture, jobs whose scripts run runc containers with
# berth's createRuntime hook. Usage: slurm_test.sh BERTHD BERTHCTL [v1|v2]. Exit 77: cannot run
# here. v2: the jobs run runc in pure cgroup v2 mode (on a hybrid host in a mount namespace of
# their own with cgroup2 at /sys/fs/cgroup, and a v1 cpuset cgroup of their own), so the hook's
# attach wraps runc's device program; only the first section (two jobs, a restart, their
# epilogs) runs then, the rest does not depend on the cgroup mode.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
BERTHD=$(realpath "$1")
BERTHCTL=$(realpath "$2")
MODE=${3:-v1}
. "$repo/tests/harness/slurm.sh"
. "$repo/tests/harness/host.sh"

why=$(slurm_skip_reason)
for b in runc jq setpriv; do command -v $b >/dev/null || why=${why:-"$b is not installed"}; done
hybrid=
if [ "$MODE" = v2 ]; then
  if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then :
  elif [ "$(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then hybrid=1
  else why=${why:-"no cgroup2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified"}; fi
elif [ ! -e /sys/fs/cgroup/devices/devices.allow ]; then
  why=${why:-"no cgroup v1 devices controller (a pure cgroup v2 host: the v2 case runs the jobs)"}
fi
if [ -n "$why" ]; then
  echo "SKIP slurm_test ($MODE): $why"
  exit 77
fi

D=$(mktemp -d /tmp/berth-slurm.XXXXXX)
chmod 755 "$D"
SOCK=$D/berth.sock
CONF=$D/berthd.json
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }
ctl() { "$BERTHCTL" --socket "$SOCK" "$@"; }
# runc as the jobs run it: in v2 mode on a hybrid host, with cgroup2 at /sys/fs/cgroup in a mount
# namespace of its own (runc then attaches its own device program, visible from the host under
# /sys/fs/cgroup/unified).
RUNC=runc
if [ -n "$hybrid" ]; then
  RUNC=$D/runc-v2
  cat >"$RUNC" <<'SH'
#!/bin/sh
exec unshare -m --propagation private sh -c 'mount -t cgroup2 none /sys/fs/cgroup && exec runc "$@"' runc "$@"
SH
  chmod +x "$RUNC"
fi
# A job's own v1 cpuset cgroup in v2 mode on a hybrid host (runc leaves the v1 controllers alone).
job_cpuset() {
  if [ "$MODE" = v2 ] && [ -n "$hybrid" ]; then echo "/sys/fs/cgroup/cpuset/berth-slurm-v2-job$1"
  elif [ "$MODE" = v2 ]; then echo "/sys/fs/cgroup/berth-slurm/job$1"
  else echo "/sys/fs/cgroup/cpuset/berth-slurm/job$1"; fi
}

cleanup() {
  local c
  for c in $(runc list -q 2>/dev/null | grep '^berth-job' || true); do $RUNC delete -f "$c" >/dev/null 2>&1; done
  scancel --quiet --full $(squeue -h -o %i 2>/dev/null) 2>/dev/null
  slurm_stop
  berthd_stop
  pkill -f "$D/" 2>/dev/null
  standins_remove
  rmdir /sys/fs/cgroup/*/berth-slurm/* /sys/fs/cgroup/*/berth-slurm /sys/fs/cgroup/cpuset/berth-slurm-v2-* 2>/dev/null
  if [ "$failures" = 0 ]; then rm -rf "$D"; else echo "kept $D for inspection"; fi
}
trap cleanup EXIT

fixture=$repo/tests/fixtures/two-socket
cat >"$CONF" <<JSON
{
  "sysfs_root": "$fixture/sys", "dev_root": "$fixture/dev", "proc_root": "$fixture/proc",
  "state_dir": "$D/state", "runtime_dir": "$D/run", "control_socket": "$SOCK",
  "control_socket_mode": "0666", "log_level": "info", "udev_source": "off",
  "passthrough_iommu_groups": [70],
  "pools": [{"name": "grid", "subnet": "10.77.0.0/24", "ranges": ["10.77.0.10-10.77.0.20"], "gateway": "10.77.0.1"}],
  "slurm": {"default": {"vfs": 1, "network": {"pool": "grid", "ifname": "ib0"}}, "prolog_timeout_s": 3}
}
JSON
# slurmd runs these with the job's variables; they are packaging/slurm's wrappers, pointed at
# this build and this berthd.
for which in prolog epilog; do
  cat >"$D/$which.sh" <<SH
#!/bin/sh
exec "$BERTHCTL" --socket "$SOCK" slurm $which --config "$CONF" >>"$D/$which.log" 2>&1
SH
  chmod +x "$D/$which.sh"
done
bundle_template "$D"
# The job: a runc container with berth's hook; what it sees inside goes to job<ID>.inside; it
# runs until job<ID>.stop appears (job<ID>.kill kills the container first, the job goes on).
cat >"$D/job.sh" <<SH
#!/bin/bash
id=berth-job\$SLURM_JOB_ID
runc() { command "$RUNC" "\$@"; }  # the v2 wrapper, or runc itself
if [ "$MODE" = v2 ] && [ -n "$hybrid" ]; then
  # A v1 cpuset cgroup of the job's own, which the container (and runc exec) stays in.
  cs=/sys/fs/cgroup/cpuset/berth-slurm-v2-job\$SLURM_JOB_ID
  mkdir -p "\$cs" && cat /sys/fs/cgroup/cpuset/cpuset.cpus >"\$cs/cpuset.cpus" &&
    cat /sys/fs/cgroup/cpuset/cpuset.mems >"\$cs/cpuset.mems" && echo \$\$ >"\$cs/tasks"
fi
env | grep '^BERTH_' >"$D/job\$SLURM_JOB_ID.env"
b=$D/bundle-\$SLURM_JOB_ID
rm -rf "\$b" && mkdir -p "\$b" && cp -a "$D/rootfs" "\$b/rootfs"
jq --arg job "\$SLURM_JOB_ID" --arg ctl "$BERTHCTL" --arg sock "$SOCK" \
  '.process.env += ["SLURM_JOB_ID=" + \$job] | .linux.cgroupsPath = "/berth-slurm/job" + \$job
   | .hooks.createRuntime = [{"path": \$ctl, "args": ["berthctl", "--socket", \$sock, "oci-hook"]}]' \
  "$D/config.template.json" >"\$b/config.json"
cd "\$b" && runc run -d "\$id" </dev/null >"\$b/run.log" 2>&1 || { echo "runc run: \$(cat \$b/run.log)"; exit 1; }
runc exec "\$id" sh -c 'for n in 0 1 2 3 4 5 6 7; do if (exec 3</dev/nvidia\$n) 2>/dev/null; then echo "open nvidia\$n"; fi; done
  mknod /tmp/kmsg c 1 11 && echo "made kmsg" && if (exec 3</tmp/kmsg) 2>/dev/null; then echo "open kmsg"; fi
  ip -o addr show dev ib0; ip route; ip -o link show | grep -v " lo:" | cut -d" " -f2' >"$D/job\$SLURM_JOB_ID.inside" 2>&1
touch "$D/job\$SLURM_JOB_ID.started"
while [ ! -e "$D/job\$SLURM_JOB_ID.stop" ]; do
  [ -e "$D/job\$SLURM_JOB_ID.kill" ] && runc kill "\$id" KILL 2>/dev/null && rm "$D/job\$SLURM_JOB_ID.kill"
  sleep 0.2
done
runc delete -f "\$id"
if [ -n "\${cs:-}" ]; then echo \$\$ >/sys/fs/cgroup/cpuset/tasks && rmdir "\$cs"; fi
exit 0
SH
chmod +x "$D/job.sh"

standins_create
before=$(host_snapshot)
berthd_start "$CONF" "$SOCK" || exit 1
slurm_start "$D/slurm" "$D/prolog.sh" "$D/epilog.sh" 8 || exit 1
export SLURM_CONF=$D/slurm/slurm.conf

submit() { sbatch --parsable -o "$D/out-%j.log" "$@" "$D/job.sh"; }
wait_file() { local i; for ((i = 0; i < ${2:-150}; i++)); do [ -e "$1" ] && return 0; sleep 0.2; done; return 1; }
berth_json() { ctl --json show "slurm/$1" | jq -c .berth; }
state_of() { ctl --json show "slurm/$1" 2>/dev/null | jq -r .berth.state; }
wait_berth() {  # JOB STATE SECS
  local i
  for ((i = 0; i < ${3:-10} * 5; i++)); do [ "$(state_of "$1")" = "$2" ] && return 0; sleep 0.2; done
  return 1
}
host_is_clean() {  # WHAT
  local now
  sleep 0.5  # the last link events reach berthd before the stand-ins come back
  standins_restore
  now=$(host_snapshot)
  if [ "$now" = "$before" ]; then pass "$1: host links, addresses and routes as before"; else
    fail "$1: host changed:"; diff <(echo "$before") <(echo "$now") | head -20
  fi
  local held
  held=$(ctl --json list | jq -r '[.berths[] | select(.state != "released")] | length')
  [ "$held" = 0 ] && pass "$1: no berth holds anything" || fail "$1: $held berths still hold devices"
  ls /sys/fs/cgroup/devices/berth-slurm /sys/fs/cgroup/unified/berth-slurm 2>/dev/null | grep -q job && fail "$1: a job cgroup is left" || true
  ls /sys/fs/cgroup/cpuset 2>/dev/null | grep -q berth-slurm-v2 && fail "$1: a job's cpuset cgroup is left" || true
}

# ---- two jobs at once, one per NUMA node ------------------------------------------------------
j1=$(submit --gres=gpu:4)
j2=$(submit --gres=gpu:4)
wait_file "$D/job$j1.started" && wait_file "$D/job$j2.started" || fail "jobs $j1 $j2 did not start: $(cat "$D"/out-*.log "$D"/prolog.log 2>/dev/null)"
declare -A numa
for j in "$j1" "$j2"; do
  b=$(berth_json "$j")
  st=$(jq -r .state <<<"$b")
  [ "$st" = attached ] && pass "job $j: berth attached by the OCI hook" || fail "job $j: berth is '$st': $b"
  n=$(jq -c .numa <<<"$b")
  numa[$j]=$n
  gpus=$(jq -r '[.gpus[].index] | map(tostring) | join(" ")' <<<"$b")
  want_gpus=$([ "$n" = "[0]" ] && echo "0 1 2 3" || echo "4 5 6 7")
  [ "$gpus" = "$want_gpus" ] && pass "job $j: NUMA $n's four GPUs ($gpus)" || fail "job $j: GPUs '$gpus' on NUMA $n"
  vf=$(jq -r '.vfs[0].pci' <<<"$b")
  case "$n:$vf" in "[0]:0000:1a:"* | "[1]:0000:9a:"*) pass "job $j: the VF of its node's HCA ($vf)" ;; *) fail "job $j: VF $vf on NUMA $n" ;; esac
  addr=$(jq -r '.vfs[0].addresses[0]' <<<"$b")
  inside=$(cat "$D/job$j.inside")
  opened=$(grep '^open' <<<"$inside" | sed 's/open nvidia//' | tr '\n' ' ' | sed 's/ $//')
  [ "$opened" = "$want_gpus" ] && pass "job $j: inside opens exactly its GPUs" || fail "job $j: inside opens '$opened', wants '$want_gpus'"
  if ! grep -q "made kmsg" <<<"$inside"; then fail "job $j: no kmsg node made inside: $inside"
  elif grep -q "open kmsg" <<<"$inside"; then fail "job $j: a device the runtime denies (kmsg) opens inside"
  else pass "job $j: what the runtime's device rules deny stays denied ($MODE)"; fi
  grep -q "inet $addr" <<<"$inside" && pass "job $j: ib0 holds $addr" || fail "job $j: no $addr inside: $inside"
  grep -q "default via 10.77.0.1 dev ib0" <<<"$inside" && pass "job $j: default route" || fail "job $j: no default route: $inside"
  links=$(grep -c ':$' <<<"$inside")
  [ "$links" = 1 ] && pass "job $j: one link besides lo" || fail "job $j: links inside: $inside"
  cpus=$(cat "$(job_cpuset "$j")/cpuset.cpus" 2>/dev/null)
  [ "$cpus" = "$(jq -r .cpus <<<"$b")" ] && pass "job $j: cpuset $cpus" || fail "job $j: cpuset '$cpus' vs berth $(jq -r .cpus <<<"$b")"
  ip -o addr show | grep -q "$addr/" && fail "the host holds $addr" || pass "job $j: the host never holds $addr"
done
[ "${numa[$j1]}" != "${numa[$j2]}" ] && pass "the two jobs are on different NUMA nodes" || fail "both jobs on NUMA ${numa[$j1]}"

# ---- berthd restarted while both run ----------------------------------------------------------
berthd_stop
berthd_start "$CONF" "$SOCK" || fail "berthd did not restart"
for j in "$j1" "$j2"; do
  [ "$(state_of "$j")" = attached ] && pass "job $j: re-adopted after a restart" || fail "job $j: '$(state_of "$j")' after a restart"
done
touch "$D/job$j1.stop" "$D/job$j2.stop"
slurm_wait_state "$j1" 30 COMPLETED && slurm_wait_state "$j2" 30 COMPLETED || fail "jobs did not complete"
for j in "$j1" "$j2"; do wait_berth "$j" released 10 || fail "job $j: '$(state_of "$j")' after its epilog"; done
host_is_clean "two jobs, a restart, their epilogs"
if [ "$MODE" = v2 ]; then
  echo "slurm_test ($MODE): $failures failures"
  [ "$failures" = 0 ]
  exit
fi

# ---- scancel, time limit, a container that exits early ----------------------------------------
standins_restore
j3=$(submit --gres=gpu:4)
j4=$(submit --gres=gpu:4 --time=1)
wait_file "$D/job$j3.started" && wait_file "$D/job$j4.started" || fail "jobs $j3 $j4 did not start"
scancel "$j3"
slurm_wait_state "$j3" 30 CANCELLED || fail "job $j3 was not cancelled"
wait_berth "$j3" released 15 && pass "scancel: the epilog released job $j3's berth" || fail "scancel: job $j3 is '$(state_of "$j3")'"
runc delete -f "berth-job$j3" >/dev/null 2>&1  # the cancelled job script could not
j5=$(submit --gres=gpu:4)
wait_file "$D/job$j5.started" || fail "job $j5 did not start"
touch "$D/job$j5.kill"
wait_berth "$j5" reserved 10 && pass "early exit: job $j5's berth detached, kept for its epilog" || fail "early exit: job $j5 is '$(state_of "$j5")'"
touch "$D/job$j5.stop"
slurm_wait_state "$j5" 30 COMPLETED || fail "job $j5 did not complete"
wait_berth "$j5" released 10 && pass "early exit: the epilog released job $j5's berth" || fail "early exit: job $j5 is '$(state_of "$j5")'"
slurm_wait_state "$j4" 150 TIMEOUT || fail "job $j4 did not time out"
wait_berth "$j4" released 15 && pass "time limit: the epilog released job $j4's berth" || fail "time limit: job $j4 is '$(state_of "$j4")'"
runc delete -f "berth-job$j4" >/dev/null 2>&1
host_is_clean "scancel, time limit, early exit"

# ---- prolog and epilog three times each --------------------------------------------------------
export SLURM_JOB_ID=9001 SLURM_JOB_UID=0 SLURM_JOB_USER=root SLURM_JOB_GPUS=2
first=
for i in 1 2 3; do
  out=$("$BERTHCTL" --socket "$SOCK" --json slurm prolog --config "$CONF") || fail "prolog run $i: exit $?"
  now=$(jq -c '.berth | del(.request)' <<<"$out")
  [ -z "$first" ] && first=$now
  [ "$now" = "$first" ] || fail "prolog run $i: a different berth: $now"
done
pass "prolog x3: one berth, $(jq -c '[.gpus[].pci, .vfs[0].addresses[0]]' <<<"$first")"
for i in 1 2 3; do "$BERTHCTL" --socket "$SOCK" slurm epilog --config "$CONF" >/dev/null || fail "epilog run $i: exit $?"; done
[ "$(state_of 9001)" = released ] && pass "epilog x3: released once, then harmless" || fail "epilog x3: '$(state_of 9001)'"
SLURM_JOB_ID=9003 "$BERTHCTL" --socket "$SOCK" --json slurm prolog --config "$CONF" >"$D/9003.json"
[ "$(jq -r '.berth.vfs[0].addresses[0]' "$D/9003.json")" = "$(jq -r '.vfs[0].addresses[0]' <<<"$first")" ] &&
  pass "the address freed by the epilog is handed out again, once" || fail "pool address not freed: $(cat "$D/9003.json")"
SLURM_JOB_ID=9003 "$BERTHCTL" --socket "$SOCK" slurm epilog --config "$CONF" >/dev/null
unset SLURM_JOB_ID SLURM_JOB_UID SLURM_JOB_USER SLURM_JOB_GPUS

# ---- another user's container claiming a job ---------------------------------------------------
SLURM_JOB_ID=9002 SLURM_JOB_UID=1000 SLURM_JOB_GPUS=5 "$BERTHCTL" --socket "$SOCK" slurm prolog --config "$CONF" >/dev/null || fail "prolog 9002"
setpriv --reuid=65534 --regid=65534 --clear-groups sleep 300 &
intruder=$!
mkdir -p "$D/intruder"
jq '.process.env += ["SLURM_JOB_ID=9002"]' "$D/config.template.json" >"$D/intruder/config.json"
for how in annotation env; do
  if [ $how = annotation ]; then state="{\"ociVersion\":\"1.0.2\",\"id\":\"x\",\"pid\":$intruder,\"bundle\":\"/nonexistent\",\"annotations\":{\"org.berth.owner\":\"slurm/9002\"}}"
  else state="{\"ociVersion\":\"1.0.2\",\"id\":\"x\",\"pid\":$intruder,\"bundle\":\"$D/intruder\"}"; fi
  msg=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$BERTHCTL" --socket "$SOCK" oci-hook <<<"$state" 2>&1)
  rc=$?
  if [ $rc != 0 ] && grep -q forbidden <<<"$msg"; then pass "user 65534 claiming job 9002 by $how: refused ($msg)"; else fail "claim by $how: rc $rc: $msg"; fi
done
kill $intruder
[ "$(state_of 9002)" = reserved ] && [ "$(ctl --json show slurm/9002 | jq -r .berth.target)" = null ] &&
  pass "job 9002's berth gave nothing to the intruder" || fail "job 9002: $(berth_json 9002)"
SLURM_JOB_ID=9002 "$BERTHCTL" --socket "$SOCK" slurm epilog --config "$CONF" >/dev/null
# The job's own user may attach its berth into a container process of its own, and only that.
SLURM_JOB_ID=9004 SLURM_JOB_UID=65534 SLURM_JOB_GPUS=1 "$BERTHCTL" --socket "$SOCK" slurm prolog --config "$CONF" >/dev/null || fail "prolog 9004"
mkdir -p "$D/own" && cp -a "$D/rootfs" "$D/own/rootfs"
jq '.process.user = {"uid": 65534, "gid": 65534} | .linux.cgroupsPath = "/berth-slurm/own"' "$D/config.template.json" >"$D/own/config.json"
(cd "$D/own" && runc run -d berth-job-own </dev/null >/dev/null 2>&1)
own=$(runc state berth-job-own | jq .pid)
msg=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$BERTHCTL" --socket "$SOCK" attach slurm/9004 --pid "$own" 2>&1) &&
  pass "the job's user attaches its berth into its own container" || fail "own attach: $msg"
msg=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$BERTHCTL" --socket "$SOCK" attach slurm/9004 --pid $$ 2>&1)
grep -q forbidden <<<"$msg" && pass "...but not into a process of another user" || fail "attach into root's process: $msg"
SLURM_JOB_ID=9004 "$BERTHCTL" --socket "$SOCK" slurm epilog --config "$CONF" >/dev/null || fail "epilog 9004"
runc delete -f berth-job-own >/dev/null 2>&1
echo '{"ociVersion":"1.0.2","id":"plain","pid":1,"bundle":"/nonexistent"}' | "$BERTHCTL" --socket "$SOCK" oci-hook &&
  pass "a container without an owner: the hook does nothing" || fail "the hook failed a container without an owner"

# ---- a CI runner sent through Slurm (github flavor with backend slurm) ---------------------------
if command -v node >/dev/null && { [ -d "$repo/tests/webhook/node_modules/@octokit" ] ||
    (cd "$repo/tests/webhook" && npm ci --no-audit --no-fund >"$D/npm.log" 2>&1); }; then
  berthd_stop
  cp "$CONF" "$CONF.plain"
  printf 'slurm-secret' >"$D/secret" && chmod 600 "$D/secret"
  wport=$((20000 + RANDOM % 20000))
  jq --arg port "127.0.0.1:$wport" --arg secret "$D/secret" --arg script "$D/job.sh" --arg out "$D/out-%j.log" \
    '. + {github: {listen: $port, secret_file: $secret, max_runners: 2,
                   flavors: [{name: "slurm-gpu", labels: ["gpu-slurm"], backend: "slurm",
                              slurm: {gpus: 2, script: $script, sbatch_args: ["-o", $out]}}]}}' \
    "$CONF.plain" >"$CONF"
  berthd_start "$CONF" "$SOCK" || fail "berthd with a github section did not start"
  deliver() { node "$repo/tests/webhook/deliver.mjs" send "http://127.0.0.1:$wport/v1/webhooks/github" slurm-secret "$@"; }
  deliver workflow_job queued --id 5001 --labels self-hosted,gpu-slurm >/dev/null
  sj=
  for ((i = 0; i < 100; i++)); do
    sj=$(ctl --json runners | jq -r '.runners[] | select(.job_id == 5001 and .state == "running") | .backend_id')
    [ -n "$sj" ] && break
    sleep 0.2
  done
  if [ -n "$sj" ]; then pass "queued -> Slurm job $sj"; else fail "no Slurm job for the runner: $(ctl --json runners)"; fi
  job_info=$(scontrol show job "$sj" 2>&1)
  grep -qE 'gres[/:]gpu[:=]2' <<<"$job_info" && pass "... with --gres=gpu:2" || fail "Slurm job $sj lacks gres gpu:2: $job_info"
  grep -q "JobName=berth-runner-5001" <<<"$job_info" && pass "... named berth-runner-5001" || fail "job name: $job_info"
  wait_file "$D/job$sj.started" || fail "the runner's Slurm job $sj did not start"
  grep -q "BERTH_RUNNER_NAME=berth-5001" "$D/job$sj.env" 2>/dev/null && pass "... its script got the runner's name" || fail "runner env: $(cat "$D/job$sj.env" 2>&1)"
  [ "$(state_of "$sj")" = attached ] && pass "the prolog and the OCI hook attached the runner's berth slurm/$sj" || fail "berth slurm/$sj is '$(state_of "$sj")'"
  opened=$(grep -c '^open' "$D/job$sj.inside")
  [ "$opened" = 2 ] && pass "... its container opens its 2 GPUs" || fail "the runner's container opens $opened GPUs: $(cat "$D/job$sj.inside")"
  deliver workflow_job completed --id 5001 --runner berth-5001 >/dev/null
  slurm_wait_state "$sj" 30 CANCELLED && pass "completed -> scancel" || fail "Slurm job $sj not cancelled"
  wait_berth "$sj" released 15 && pass "... and the epilog released its berth" || fail "slurm/$sj is '$(state_of "$sj")'"
  for ((i = 0; i < 50; i++)); do [ "$(ctl --json runners | jq -r '.runners[0].state')" = finished ] && break; sleep 0.2; done
  [ "$(ctl --json runners | jq -r '.runners[0].state')" = finished ] && pass "... the runner finished" || fail "runner: $(ctl --json runners)"
  runc delete -f "berth-job$sj" >/dev/null 2>&1  # the cancelled job script could not
  host_is_clean "a CI runner through Slurm"
  berthd_stop
  mv "$CONF.plain" "$CONF"
  berthd_start "$CONF" "$SOCK" || fail "berthd did not start again"
else
  echo "SKIP (one case): a CI runner through Slurm: node/npm or the npm registry is missing"
fi

# ---- berthd not running ------------------------------------------------------------------------
berthd_stop
t0=$(date +%s)
j6=$(submit --gres=gpu:1)
node=$(hostname -s)
drained=
for ((i = 0; i < 100; i++)); do
  scontrol show node "$node" | grep -qE 'State=[A-Z+]*DRAIN' && { drained=1; break; }
  sleep 0.2
done
t1=$(date +%s)
[ -n "$drained" ] && pass "berthd down: the prolog failed in $((t1 - t0)) s and Slurm drained the node" || fail "berthd down: the node was not drained"
grep -q "berthd unreachable" "$D/prolog.log" && pass "berthd down: the prolog said why: $(grep unreachable "$D/prolog.log" | tail -1)" || fail "berthd down: no reason in the prolog's output"
[ ! -e "$D/job$j6.started" ] && pass "berthd down: job $j6 did not start" || fail "berthd down: job $j6 started without its devices"
scancel "$j6"
scontrol update nodename="$node" state=resume >/dev/null 2>&1
berthd_start "$CONF" "$SOCK" || fail "berthd did not start again"
host_is_clean "the end"

echo "slurm_test: $failures failures"
[ "$failures" = 0 ]
