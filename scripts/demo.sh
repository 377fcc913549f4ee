#!/usr/bin/env bash
# berth's main job, end to end on this machine: berthd on the bundled two-socket fixture, a real
# runc container, a berth with 1 GPU and 1 VF on one NUMA node (address from a pool, default
# gateway), attached, checked from inside, detached, and the host shown to be as it was.
# Stand-ins for what this machine lacks: a veth pair for the VF netdev (its peer holds the
# gateway address), /dev/fuse (10:229, which runc does not allow) for the GPU's device node.
# Run as root. Cleans up after itself, also when interrupted.
set -euo pipefail
. "$(dirname "$0")/as-root.sh"
repo=$(cd "$(dirname "$0")/.." && pwd)

"$repo/scripts/install-deps.sh"
build=${BERTH_BUILD_DIR:-$repo/build}
cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target berthd berthctl

work=$(mktemp -d /tmp/berth-demo.XXXXXX)
id=berth-demo-$$
vf=bvf0x0
berthd_pid=
cleanup() {
  set +e
  runc delete -f "$id" >/dev/null 2>&1
  [ -n "$berthd_pid" ] && kill "$berthd_pid" 2>/dev/null && wait "$berthd_pid" 2>/dev/null
  ip link del "${vf}p" >/dev/null 2>&1
  for c in /sys/fs/cgroup/*/berth-demo; do [ -d "$c" ] && rmdir "$c"/* "$c" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fixture=$repo/tests/fixtures/two-socket
cat >"$work/berthd.json" <<JSON
{
  "sysfs_root": "$fixture/sys", "dev_root": "$fixture/dev", "proc_root": "$fixture/proc",
  "state_dir": "$work/state", "runtime_dir": "$work/run", "control_socket": "$work/berth.sock",
  "passthrough_iommu_groups": [70],
  "pools": [{"name": "grid", "subnet": "10.77.0.0/24", "ranges": ["10.77.0.10-10.77.0.99"], "gateway": "10.77.0.1"}]
}
JSON

step "VF stand-in: veth $vf, its peer ${vf}p holds the gateway 10.77.0.1"
ip link add "$vf" type veth peer name "${vf}p"
sysctl -qw "net.ipv6.conf.${vf}p.disable_ipv6=1"
ip addr add 10.77.0.1/24 dev "${vf}p"
ip link set "${vf}p" up

step "berthd on the two-socket fixture"
"$build/agent/berthd" --check-config "$work/berthd.json"
"$build/agent/berthd" --config "$work/berthd.json" >"$work/berthd.log" 2>&1 &
berthd_pid=$!
export BERTH_SOCKET=$work/berth.sock
for _ in $(seq 100); do [ -S "$BERTH_SOCKET" ] && break; sleep 0.05; done
ctl() { echo "\$ berthctl $*"; "$build/agent/berthctl" "$@"; }

step "a runc container with a busybox rootfs"
mkdir -p "$work/bundle/rootfs/"{bin,dev,proc,sys,tmp}
cp /bin/busybox "$work/bundle/rootfs/bin/"
for t in sh ls ip ping cat sleep; do ln -s busybox "$work/bundle/rootfs/bin/$t"; done
(cd "$work/bundle" && runc spec)
sed -i -e 's/"terminal": true/"terminal": false/' -e 's/"sh"$/"sleep", "1000000"/' \
  -e 's/"CAP_KILL",/"CAP_KILL", "CAP_NET_RAW",/g' \
  -e "s|\"namespaces\": \[|\"cgroupsPath\": \"/berth-demo/$id\", \"namespaces\": [|" "$work/bundle/config.json"
(cd "$work/bundle" && runc run -d "$id" </dev/null >/dev/null)
runc list | grep "$id"
cg=berth-demo/$id

# Where the container's device access and cpuset live: the cgroup v1 controllers (a hybrid host
# such as this one), or the cgroup v2 tree (a stock Debian 12), where device access is the device
# program runc attached (berth wraps it on attach and puts the same program back on detach).
if [ -d "/sys/fs/cgroup/devices/$cg" ]; then
  echo "cgroup v1: devices list and cpuset in /sys/fs/cgroup/{devices,cpuset}/$cg"
  devices() { tr '\n' ' ' <"/sys/fs/cgroup/devices/$cg/devices.list"; }
  cpuset_dir=/sys/fs/cgroup/cpuset/$cg
else
  echo "cgroup v2: device program and cpuset of /sys/fs/cgroup/$cg"
  devices() { bpftool cgroup show "/sys/fs/cgroup/$cg" | awk 'NR > 1 { printf "program %s (%s) ", $1, $2 }'; }
  cpuset_dir=/sys/fs/cgroup/$cg
fi
cpuset() {
  if [ -e "$cpuset_dir/cpuset.cpus" ]; then
    echo "cpus=$(cat "$cpuset_dir/cpuset.cpus") mems=$(cat "$cpuset_dir/cpuset.mems")"
  else
    echo "no cpuset controller in $cpuset_dir"
  fi
}

snapshot() {
  echo "host link:  $(ip -o link show "$vf" | sed 's/.*: <\([^>]*\)>.*state \([A-Z]*\).*/<\1> state \2/')"
  echo "host addrs: $(ip -o addr show dev "$vf" | wc -l) on $vf"
  echo "devices:    $(devices)"
  echo "cpuset:     $(cpuset)"
  echo "container:  $(runc exec "$id" ls /dev | tr '\n' ' ')"
  echo "links in:   $(runc exec "$id" ip -o link | cut -d: -f2 | tr '\n' ' ')"
}

step "before: the container cannot open the GPU"
runc exec "$id" sh -c 'exec 3</dev/nvidia0' 2>&1 || true
snapshot | tee "$work/before"

step "inventory, then a berth: 1 GPU, 1 VF, one NUMA node, address from pool 'grid'"
ctl inventory
ctl create manual/demo --gpus 1 --vfs 1 --numa single --cpus numa --pool grid

step "attach into the container"
ctl attach manual/demo --runc "$id"

step "inside the container"
runc exec "$id" sh -c 'exec 3</dev/nvidia0 && echo "opened /dev/nvidia0: $(ls -l /dev/nvidia0)"'
runc exec "$id" ip -o addr show dev ib0
runc exec "$id" ip route
runc exec "$id" ping -c 2 -W 2 10.77.0.1
echo "cpuset of the container: $(cpuset)"

step "detach and release"
ctl detach manual/demo
ctl release manual/demo

step "after: the host is as it was"
runc exec "$id" sh -c 'exec 3</dev/nvidia0' 2>&1 || true
snapshot | tee "$work/after"
if diff -u "$work/before" "$work/after"; then
  echo "host state after detach == host state before attach"
else
  echo "demo: the host changed" >&2
  exit 1
fi
