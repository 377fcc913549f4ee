# Host helpers for shell tests (sourced): veth stand-ins for the two-socket fixture's VF netdevs,
# a busybox rootfs and runc bundle template, berthd on the fixture, and a snapshot of the host.
# The C++ twin for gtest suites is tests/host/host.cpp; both name the stand-ins alike.
# shellcheck shell=bash

# veth pairs bvf<node>x<vf> whose peer "<name>p" stays on the host; the first pair of each node
# holds the gateway address of the test pools (10.77.0.1/24, 10.78.0.1/24).
standins_create() {
  standins_remove
  standins_restore
}
# Recreates the pairs that are gone: a veth stand-in dies with the container's network namespace
# where a physical VF would come back to the host.
standins_restore() {
  local n v name
  for n in 0 1; do
    for v in 0 1 2 3 4 5 6 7; do
      name=bvf${n}x$v
      ip link show "${name}p" >/dev/null 2>&1 && continue
      ip link add "$name" type veth peer name "${name}p"
      sysctl -qw "net.ipv6.conf.${name}p.disable_ipv6=1"
      ip link set "${name}p" up
      [ "$v" = 0 ] && ip addr add "10.7$((7 + n)).0.1/24" dev "${name}p"
    done
  done
  return 0
}
standins_remove() {
  local n v
  for n in 0 1; do for v in 0 1 2 3 4 5 6 7; do ip link del "bvf${n}x${v}p" 2>/dev/null; done; done
  return 0
}

# DIR/rootfs (busybox) and DIR/config.template.json: a runc spec like tests/host/host.cpp's, in
# its own namespaces, with CAP_MKNOD and CAP_NET_RAW so that only the devices cgroup stops it.
bundle_template() {
  local dir=$1 tool
  mkdir -p "$dir/rootfs/bin" "$dir/rootfs"/{dev,proc,sys,tmp,etc}
  cp /bin/busybox "$dir/rootfs/bin/busybox"
  for tool in sh ls cat ip ping sleep mknod test echo stat grep; do
    ln -sf busybox "$dir/rootfs/bin/$tool"
  done
  (cd "$dir" && rm -f config.json && runc spec)
  jq '.process.terminal = false | .process.args = ["sleep", "1000000"] | .root.readonly = false
      | .process.capabilities |= with_entries(if .key == "ambient" then . else .value += ["CAP_MKNOD", "CAP_NET_RAW"] end)' \
    "$dir/config.json" >"$dir/config.template.json"
  rm "$dir/config.json"
}

# berthd in the background on the two-socket fixture; BERTHD_PID is its pid.
BERTHD_PID=
berthd_start() {  # CONFIG SOCKET
  "$BERTHD" --config "$1" >>"${1%.json}.log" 2>&1 &
  BERTHD_PID=$!
  local i
  for ((i = 0; i < 200; i++)); do
    "$BERTHCTL" --socket "$2" list >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "berthd did not start; its log:" >&2
  tail -20 "${1%.json}.log" >&2
  return 1
}
berthd_stop() {
  [ -n "$BERTHD_PID" ] || return 0
  kill "$BERTHD_PID" 2>/dev/null
  wait "$BERTHD_PID" 2>/dev/null
  BERTHD_PID=
}

# What an attach may change on the host: links (the peers' carrier aside), addresses, routes.
# Interface indexes and the stand-ins' random MACs aside, so that a restored stand-in compares equal.
host_snapshot() {
  {
    ip -o link show | grep -v 'bvf[0-9]x[0-9]p@' | sed 's/^[0-9]*: //; s|link/ether [0-9a-f:]*|link/ether|'
    ip -o addr show | sed 's/^[0-9]*: //'
    ip route show table all
  } | sort
}
