#!/usr/bin/env bash
# Lab servers on real LXC (tests/harness/lxc.sh): a GPU stand-in and a VF stand-in attached into a
# running LXC container by name, shared GPUs across containers, shared control nodes within one,
# a stopped container refused. Usage: lxc_test.sh BERTHD BERTHCTL. Exit 77: cannot run here.
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
BERTHD=$(realpath "$1")
BERTHCTL=$(realpath "$2")
. "$repo/tests/harness/lxc.sh"
. "$repo/tests/harness/host.sh"
why=$(lxc_skip_reason)
[ -n "$why" ] && { echo "SKIP lxc_test: $why"; exit 77; }

D=$(mktemp -d /tmp/berth-lxc.XXXXXX)
chmod 755 "$D"
export LXC_PATH=$D/lxc
mkdir -p "$LXC_PATH"
SOCK=$D/berth.sock
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }
ctl() { "$BERTHCTL" --socket "$SOCK" "$@"; }
cleanup() {
  for c in alice bob carol; do lxc_rm $c; done
  [ -d /sys/fs/cgroup/cpuset/berth-lxc-carol ] && rmdir /sys/fs/cgroup/cpuset/berth-lxc-carol
  berthd_stop
  standins_remove
  if [ "$failures" = 0 ]; then rm -rf "$D"; else echo "kept $D"; fi
}
trap cleanup EXIT

fixture=$repo/tests/fixtures/two-socket
cat >"$D/berthd.json" <<JSON
{"sysfs_root": "$fixture/sys", "dev_root": "$fixture/dev", "proc_root": "$fixture/proc",
 "state_dir": "$D/state", "runtime_dir": "$D/run", "control_socket": "$SOCK", "log_level": "warn",
 "udev_source": "off", "passthrough_iommu_groups": [70],
 "pools": [{"name": "grid", "subnet": "10.77.0.0/24", "ranges": ["10.77.0.10-10.77.0.20"], "gateway": "10.77.0.1"}]}
JSON
standins_create
lxc_make alice && lxc_make bob || exit 1
lxc_up alice && lxc_up bob || { fail "LXC containers did not start: $(tail -5 "$LXC_PATH"/alice.log)"; exit 1; }
berthd_start "$D/berthd.json" "$SOCK" || exit 1
opens() { lxc_run "$1" "exec 3</dev/$2" >/dev/null 2>&1; }
before=$(host_snapshot)

# ---- a GPU and a VF into a running LXC container, by name ---------------------------------------
opens alice nvidia0 && fail "alice opens nvidia0 before attach" || pass "before attach alice cannot open nvidia0"
ctl create manual/alice --gpu-ids 0 --vfs 1 --pool grid --cpus 1 >/dev/null || fail "create manual/alice"
out=$(ctl attach manual/alice --lxc alice --lxcpath "$LXC_PATH" 2>&1) && pass "attach --lxc alice" || fail "attach --lxc: $out"
opens alice nvidia0 && pass "alice opens nvidia0 after attach" || fail "alice cannot open nvidia0 after attach"
addr=$(lxc_run alice "ip -o addr show dev ib0" 2>&1)
grep -q "inet 10.77.0.10/24" <<<"$addr" && pass "alice's ib0 holds 10.77.0.10/24" || fail "alice's ib0: $addr"
[ "$(ctl --json show manual/alice | jq -r .berth.target.lxc)" = alice ] && pass "the berth names its LXC target" || fail "target: $(ctl --json show manual/alice | jq -c .berth.target)"
ctl detach manual/alice >/dev/null || fail "detach manual/alice"
opens alice nvidia0 && fail "alice still opens nvidia0 after detach" || pass "after detach alice cannot open nvidia0"
ctl release manual/alice >/dev/null
sleep 0.3
standins_restore
[ "$(host_snapshot)" = "$before" ] && pass "host links, addresses and routes as before" || { fail "host changed"; diff <(echo "$before") <(host_snapshot) | head; }

# ---- one GPU shared by two containers -----------------------------------------------------------
ctl create manual/share-a --gpu-ids 1 --shared --cpus 1 >/dev/null && ctl create manual/share-b --gpu-ids 1 --shared --cpus 1 >/dev/null || fail "shared creates"
ctl attach manual/share-a --lxc alice --lxcpath "$LXC_PATH" >/dev/null && ctl attach manual/share-b --lxc bob --lxcpath "$LXC_PATH" >/dev/null || fail "shared attaches"
opens alice nvidia1 && opens bob nvidia1 && pass "alice and bob both open the shared nvidia1" || fail "shared nvidia1 not open in both"
holders=$(ctl --json inventory | jq -r '.gpus[] | select(.index == 1) | .held_by | join(",")')
[ "$holders" = "manual/share-a,manual/share-b" ] && pass "inventory shows both holders" || fail "holders: '$holders'"
msg=$(ctl create manual/exclusive --gpu-ids 1 --cpus 1 2>&1)
grep -q "manual/share-a" <<<"$msg" && grep -q "manual/share-b" <<<"$msg" && pass "an exclusive request is refused naming the holders: $msg" || fail "exclusive: $msg"

# ---- two GPUs in one container: detaching one keeps the control node ----------------------------
ctl create manual/second --gpu-ids 2 --cpus 1 >/dev/null || fail "create manual/second"
ctl attach manual/second --lxc alice --lxcpath "$LXC_PATH" >/dev/null || fail "attach manual/second"
ctl detach manual/share-a >/dev/null || fail "detach share-a"
opens alice nvidiactl && opens alice nvidia2 && pass "alice keeps nvidiactl and nvidia2 after nvidia1 left" || fail "alice lost its control node"
opens alice nvidia1 && fail "alice still opens nvidia1" || pass "and nvidia1 is gone from alice"
ctl detach manual/second >/dev/null
opens alice nvidiactl && fail "nvidiactl stayed after the last GPU left alice" || pass "the last GPU out takes nvidiactl"
for o in share-a share-b second; do ctl release manual/$o >/dev/null || fail "release $o"; done
opens bob nvidia1 && fail "bob still opens nvidia1 after release" || pass "bob's shared GPU is gone after release"

# ---- the driver check (fixture host driver 535.104.05) -------------------------------------------
lib=$LXC_PATH/alice/rootfs/usr/lib/x86_64-linux-gnu
mkdir -p "$lib"
check() {  # LINK_TARGET -> the driver line of a fresh attach
  ln -sfn "$1" "$lib/libcuda.so.1"
  ctl create manual/drv --gpu-ids 4 --cpus 1 ${2:+--driver-check $2} >/dev/null
  ctl attach manual/drv --lxc alice --lxcpath "$LXC_PATH" >"$D/drv.out" 2>&1
  echo "rc=$? $(ctl --json show manual/drv | jq -r '.berth.target.driver // "-"') $(cat "$D/drv.out" | grep -o 'driver_mismatch.*' | head -1)"
  ctl release manual/drv >/dev/null
}
r=$(check libcuda.so.535.104.05)
grep -q "rc=0 match" <<<"$r" && pass "equal versions pass: $r" || fail "equal: $r"
r=$(check libcuda.so.550.54.14)
grep -q "rc=0 mismatch" <<<"$r" && pass "different versions warn and attach: $r" || fail "warn: $r"
ctl events --since 0 >"$D/events.txt"; grep -q "550.54.14" "$D/events.txt" && pass "the mismatch is on the event stream" || fail "no warning event"
r=$(check libcuda.so.550.54.14 refuse)
grep -q "rc=1 - driver_mismatch" <<<"$r" && grep -q 535.104.05 <<<"$r" && grep -q 550.54.14 <<<"$r" &&
  pass "refuse: attach fails with both versions: $r" || fail "refuse: $r"
touch /tmp/berth-host-canary
r=$(check /tmp/berth-host-canary)
grep -q "rc=0 unknown" <<<"$r" && pass "a link to a host path is read, not followed: $r" || fail "host path: $r"
r=$(check libcuda.so.1)
grep -q "rc=0 unknown" <<<"$r" && pass "a link that loops is handled: $r" || fail "loop: $r"
rm -f /tmp/berth-host-canary
ln -sfn libcuda.so.535.104.05 "$lib/libcuda.so.1"
out=$(ctl check-driver --lxc alice --lxcpath "$LXC_PATH") && pass "berthctl check-driver: $out" || fail "check-driver: $out"
ln -sfn libcuda.so.550.54.14 "$lib/libcuda.so.1"
out=$(ctl check-driver --lxc alice --lxcpath "$LXC_PATH") && fail "check-driver on a mismatch exits 0" || pass "check-driver on a mismatch exits 1: $out"

# ---- a stopped container is refused --------------------------------------------------------------
lxc_down bob
ctl create manual/bob --gpu-ids 3 --cpus 1 >/dev/null
msg=$(ctl attach manual/bob --lxc bob --lxcpath "$LXC_PATH" 2>&1)
grep -q "not running" <<<"$msg" && pass "a stopped container is refused: $msg" || fail "stopped bob: $msg"
msg=$(ctl attach manual/bob --lxc nosuch --lxcpath "$LXC_PATH" 2>&1)
grep -q "target_not_found" <<<"$msg" && pass "an unknown container is refused" || fail "unknown: $msg"
[ "$(ctl --json show manual/bob | jq -r .berth.state)" = reserved ] && pass "refusals leave the berth reserved" || fail "bob's berth: $(ctl --json show manual/bob)"
ctl release manual/bob >/dev/null

# ---- a standing berth follows its container ------------------------------------------------------
state_of() { ctl --json show "$1" 2>/dev/null | jq -r .berth.state; }
wait_state() {  # OWNER STATE SECS
  local i
  for ((i = 0; i < $3 * 10; i++)); do [ "$(state_of "$1")" = "$2" ] && return 0; sleep 0.1; done
  return 1
}
cat >"$D/start-host.sh" <<SH
#!/bin/sh
BERTHCTL="$BERTHCTL --socket $SOCK" exec "$repo/packaging/lxc/berth-start-host"
SH
chmod +x "$D/start-host.sh"
echo "lxc.hook.start-host = $D/start-host.sh" >>"$LXC_PATH/alice/config"
ln -sfn libcuda.so.535.104.05 "$lib/libcuda.so.1"
ctl create lab/alice --gpu-ids 5 --cpus 1 --standing --lxc alice --lxcpath "$LXC_PATH" >/dev/null || fail "create lab/alice"
wait_state lab/alice attached 5 && pass "a standing berth is attached to its running container at once" || fail "lab/alice: $(state_of lab/alice)"
opens alice nvidia5 && pass "alice opens nvidia5" || fail "alice cannot open nvidia5"
lxc_down alice
wait_state lab/alice reserved 3 && pass "container stopped: detached, reservation kept" || fail "after stop: $(state_of lab/alice)"
lxc_up alice
wait_state lab/alice attached 10 && pass "container started again: attached again, no call made" || fail "after start: $(state_of lab/alice)"
opens alice nvidia5 && pass "alice opens nvidia5 again" || fail "alice cannot open nvidia5 after its restart"
kill -9 "$BERTHD_PID" && wait "$BERTHD_PID" 2>/dev/null
BERTHD_PID=
lxc_down alice
berthd_start "$D/berthd.json" "$SOCK" || fail "berthd did not restart"
wait_state lab/alice reserved 3 && pass "berthd killed (-9) and restarted while the container was stopped: reserved" || fail "after berthd restart: $(state_of lab/alice)"
lxc_up alice
wait_state lab/alice attached 10 && pass "...and the container's start attaches it" || fail "after start: $(state_of lab/alice)"
ctl release lab/alice >/dev/null || fail "release lab/alice"
opens alice nvidia5 && fail "alice still opens nvidia5 after release" || pass "released: nvidia5 is gone from alice"
# From the config: created and attached at berthd's start.
lxc_up bob
berthd_stop
jq --arg p "$LXC_PATH" '.standing = [{"owner": "lab/bob", "target": {"lxc": "bob", "lxcpath": $p}, "request": {"gpu_ids": ["6", "7"], "cpus": 1}}]' \
  "$D/berthd.json" >"$D/standing.json"
berthd_start "$D/standing.json" "$SOCK" || fail "berthd with a standing entry did not start"
wait_state lab/bob attached 5 && pass "a standing entry of the config is attached at start" || fail "lab/bob: $(state_of lab/bob)"
opens bob nvidia6 && pass "bob opens nvidia6" || fail "bob cannot open nvidia6"
# SIGHUP: only what changed is detached and attached again.
bob_before=$(ctl --json show lab/bob | jq -c '.berth | {target, steps_applied}')
jq --arg p "$LXC_PATH" '.standing += [{"owner": "lab/alice-cfg", "target": {"lxc": "alice", "lxcpath": $p}, "request": {"gpu_ids": ["3"], "cpus": 1}}]' \
  "$D/standing.json" >"$D/standing2.json" && mv "$D/standing2.json" "$D/standing.json"
kill -HUP "$BERTHD_PID"
wait_state lab/alice-cfg attached 5 && pass "SIGHUP: a new standing entry is attached" || fail "lab/alice-cfg: $(state_of lab/alice-cfg)"
[ "$(ctl --json show lab/bob | jq -c '.berth | {target, steps_applied}')" = "$bob_before" ] &&
  pass "SIGHUP: the unchanged entry was not touched" || fail "lab/bob changed: $(ctl --json show lab/bob | jq -c .berth.target)"
jq --arg p "$LXC_PATH" '.standing = [{"owner": "lab/bob", "target": {"lxc": "bob", "lxcpath": $p}, "request": {"gpu_ids": ["4"], "cpus": 1}}]' \
  "$D/standing.json" >"$D/standing2.json" && mv "$D/standing2.json" "$D/standing.json"
kill -HUP "$BERTHD_PID"
wait_state lab/alice-cfg released 5 && pass "SIGHUP: a removed entry is released" || fail "removed: $(state_of lab/alice-cfg)"
for ((i = 0; i < 50; i++)); do opens bob nvidia4 && break; sleep 0.1; done
opens bob nvidia4 && ! opens bob nvidia6 && [ "$(state_of lab/bob)" = attached ] &&
  pass "SIGHUP: a changed entry is attached again with its new GPU" || fail "changed lab/bob: $(state_of lab/bob)"
opens alice nvidia3 && fail "alice still opens nvidia3" || pass "and what the removed entry held is gone"
ctl release lab/bob >/dev/null

# ---- the container changes between resolve and attach ---------------------------------------------
# An lxc-info that names alice's init first and bob's the second time, as if alice had been
# restarted (or renamed) in between: the attach is refused, nothing is given to either.
lxc_up alice
cat >"$D/racy-lxc-info" <<SH
#!/bin/sh
n=\$(cat "$D/racy.count" 2>/dev/null || echo 0); echo \$((n + 1)) >"$D/racy.count"
if [ "\$n" = 0 ]; then lxc-info "\$@"; else lxc-info -P "$LXC_PATH" -n bob -H -p; fi
SH
chmod +x "$D/racy-lxc-info"
berthd_stop
jq --arg l "$D/racy-lxc-info" '.lxc_info = $l | del(.standing)' "$D/standing.json" >"$D/racy.json"
berthd_start "$D/racy.json" "$SOCK" || fail "berthd with the racy lxc-info did not start"
ctl create manual/race --gpu-ids 2 --cpus 1 >/dev/null
msg=$(ctl attach manual/race --lxc alice --lxcpath "$LXC_PATH" 2>&1)
grep -q "changed while it was being attached" <<<"$msg" && pass "a container that changes between resolve and attach is refused: $msg" || fail "race: $msg"
opens alice nvidia2 || opens bob nvidia2 && fail "the raced attach gave nvidia2 to a container" || pass "neither container got the GPU"
[ "$(state_of manual/race)" = reserved ] && pass "the berth stays reserved" || fail "race berth: $(state_of manual/race)"

# ---- LXC on cgroup v2: its own rules, changed through lxc-cgroup ----------------------------------
# LXC on cgroup v2 rebuilds its device program whenever a rule changes, so berth asks LXC instead
# of standing in for LXC's program. On a hybrid host carol runs where /sys/fs/cgroup is the
# cgroup2 mount (a mount namespace of her own, as on a pure v2 host), in a v1 cpuset cgroup of her
# own; lxc-cgroup runs with the same view.
ctl release manual/race >/dev/null
berthd_stop
v2view() { "$@"; }
if [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]; then
  unified=$(awk '$3 == "cgroup2" {print $2; exit}' /proc/mounts)
  v2view() { unshare -m --propagation private sh -c "mount --bind $unified /sys/fs/cgroup && exec \"\$@\"" sh "$@"; }
fi
if [ -n "${unified:-}" ]; then
  cat >"$D/lxc-cgroup-v2" <<SH
#!/bin/sh
exec unshare -m --propagation private sh -c 'mount --bind $unified /sys/fs/cgroup && exec lxc-cgroup "\$@"' sh "\$@"
SH
else
  printf '#!/bin/sh\nexec lxc-cgroup "$@"\n' >"$D/lxc-cgroup-v2"
fi
chmod +x "$D/lxc-cgroup-v2"
lxc_make carol
cat >>"$LXC_PATH/carol/config" <<CONF
lxc.cgroup2.devices.deny = a
lxc.cgroup2.devices.allow = c 1:3 rwm
lxc.cgroup2.devices.allow = c 1:5 rwm
lxc.cgroup2.devices.allow = c 1:8 rwm
lxc.cgroup2.devices.allow = c 1:9 rwm
lxc.cgroup2.devices.allow = c 5:0 rwm
CONF
carol_cpuset=
if [ -d /sys/fs/cgroup/cpuset ] && [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]; then
  carol_cpuset=/sys/fs/cgroup/cpuset/berth-lxc-carol
  mkdir -p "$carol_cpuset"
  cat /sys/fs/cgroup/cpuset/cpuset.cpus >"$carol_cpuset/cpuset.cpus"
  cat /sys/fs/cgroup/cpuset/cpuset.mems >"$carol_cpuset/cpuset.mems"
fi
carol_up() {
  (
    [ -n "$carol_cpuset" ] && echo $BASHPID >"$carol_cpuset/tasks"
    v2view lxc-start -P "$LXC_PATH" -n carol -d -o "$LXC_PATH/carol.log"
  ) && lxc-wait -P "$LXC_PATH" -n carol -s RUNNING -t 10
}
jq --arg c "$D/lxc-cgroup-v2" '.lxc_cgroup = $c | del(.standing) | del(.lxc_info)' "$D/standing.json" >"$D/v2.json"
if ! carol_up; then
  fail "carol did not start on cgroup v2: $(tail -5 "$LXC_PATH/carol.log")"
else
  berthd_start "$D/v2.json" "$SOCK" || fail "berthd for the v2 section did not start"
  grep -q "^0::/." "/proc/$(lxc_pid carol)/cgroup" && ! grep -q ":devices:/." "/proc/$(lxc_pid carol)/cgroup" &&
    pass "carol's devices are decided by cgroup v2 alone" || fail "carol's cgroups: $(cat "/proc/$(lxc_pid carol)/cgroup")"
  opens carol null && pass "carol opens what her config allows" || fail "carol cannot open /dev/null"
  lxc_run carol "mknod /dev/nvidia0 c 10 229" >/dev/null 2>&1 && fail "carol could make nvidia0's node before attach" ||
    pass "before attach LXC's program refuses carol nvidia0's node"
  ctl create manual/carol --gpu-ids 0 --cpus 1 >/dev/null || fail "create manual/carol"
  out=$(ctl attach manual/carol --lxc carol --lxcpath "$LXC_PATH" 2>&1) && pass "attach --lxc carol on cgroup v2" || fail "attach carol: $out"
  opens carol nvidia0 && opens carol nvidiactl && pass "carol opens nvidia0 and nvidiactl after attach" || fail "carol cannot open her GPU"
  grep -rqs '"undo":"lxc"' "$D/run" "$D/state" && pass "the device rules went through LXC (undo \"lxc\" recorded)" ||
    fail "no allow through LXC in the records: $(grep -rhos '"op":"allow_device"[^}]*}[^}]*' "$D/run" "$D/state" | head -3)"
  # LXC changes its own rules (an admin's lxc-cgroup): berth's grant is in LXC's list, so it stays.
  "$D/lxc-cgroup-v2" -P "$LXC_PATH" -n carol devices.allow "c 1:7 rwm" || fail "the admin's lxc-cgroup failed"
  lxc_run carol "mknod /dev/full c 1 7" >/dev/null 2>&1
  opens carol full && opens carol nvidia0 && pass "after LXC rebuilt its program carol still opens nvidia0 and the admin's /dev/full" ||
    fail "LXC's own change cut carol off"
  ctl detach manual/carol >/dev/null || fail "detach manual/carol"
  opens carol nvidia0 && fail "carol still opens nvidia0 after detach" || pass "after detach carol cannot open nvidia0"
  opens carol null && opens carol full && pass "and what LXC allowed her is still allowed" || fail "detach took LXC's own rules"
  lxc_run carol "mknod /dev/nvidia9 c 10 229" >/dev/null 2>&1 && fail "carol can make the GPU's node after detach" ||
    pass "LXC's program refuses the GPU's node again"
  ctl release manual/carol >/dev/null || fail "release manual/carol"
  # LXC refusing the rule fails the attach and leaves the berth reserved.
  berthd_stop
  jq '.lxc_cgroup = "/bin/false"' "$D/v2.json" >"$D/v2-refuse.json"
  berthd_start "$D/v2-refuse.json" "$SOCK" || fail "berthd with a refusing lxc-cgroup did not start"
  ctl create manual/carol2 --gpu-ids 1 --cpus 1 >/dev/null
  msg=$(ctl attach manual/carol2 --lxc carol --lxcpath "$LXC_PATH" 2>&1)
  grep -q "LXC did not allow" <<<"$msg" && pass "LXC refusing the rule fails the attach: $msg" || fail "refusal: $msg"
  [ "$(state_of manual/carol2)" = failed ] && ! opens carol nvidia1 && ! lxc_run carol "test -e /dev/nvidia1" &&
    pass "the berth is failed (rolled back) and nothing of it is left in carol" || fail "carol2: $(state_of manual/carol2)"
  ctl release manual/carol2 >/dev/null
fi
lxc_rm carol
[ -n "$carol_cpuset" ] && rmdir "$carol_cpuset" 2>/dev/null

echo "lxc_test: $failures failures"
[ "$failures" = 0 ]
