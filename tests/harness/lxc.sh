# LXC busybox containers for tests (sourced): lxc_make NAME, lxc_up NAME, lxc_down NAME,
# lxc_run NAME CMD, lxc_rm NAME. Every container lives under LXC_PATH (set by the caller, a
# directory of the test's own). Config as this machine can run it: no network device (the
# container gets its own empty network namespace), no console or ttys, unconfined.
# shellcheck shell=bash

lxc_skip_reason() {
  [ "$(id -u)" = 0 ] || { echo "needs root"; return; }
  for b in lxc-create lxc-start lxc-stop lxc-info lxc-attach lxc-destroy; do
    command -v $b >/dev/null || { echo "$b is not installed (apt-get install lxc)"; return; }
  done
  [ -e /usr/share/lxc/templates/lxc-busybox ] || { echo "LXC's busybox template is missing"; return; }
  command -v busybox >/dev/null || echo "busybox is not installed"
}

lxc_make() {
  lxc-create -P "$LXC_PATH" -n "$1" -t busybox >"$LXC_PATH/$1.create.log" 2>&1 || { cat "$LXC_PATH/$1.create.log"; return 1; }
  # The template's veth on lxcbr0 does not exist here: replace the network section.
  # The container has a user space of its own (as a lab user's does), not the host's libraries:
  # the template's read-only binds of the host's lib directories go too.
  sed -i '/^lxc.net.0/d; /^lxc.apparmor/d; /^lxc.mount.entry = \/[a-z0-9\/]*lib[0-9]* /d' "$LXC_PATH/$1/config"
  cat >>"$LXC_PATH/$1/config" <<CONF
lxc.net.0.type = empty
lxc.console.path = none
lxc.tty.max = 0
lxc.pty.max = 0
lxc.apparmor.profile = unconfined
CONF
}
lxc_up() { lxc-start -P "$LXC_PATH" -n "$1" -d -o "$LXC_PATH/$1.log" && lxc-wait -P "$LXC_PATH" -n "$1" -s RUNNING -t 10; }
lxc_down() { lxc-stop -P "$LXC_PATH" -n "$1" -k >/dev/null 2>&1; lxc-wait -P "$LXC_PATH" -n "$1" -s STOPPED -t 10 >/dev/null 2>&1; }
lxc_run() { lxc-attach -P "$LXC_PATH" -n "$1" -- /bin/sh -c "$2"; }
lxc_pid() { lxc-info -P "$LXC_PATH" -n "$1" -H -p; }
lxc_rm() { lxc_down "$1"; lxc-destroy -P "$LXC_PATH" -n "$1" -f >/dev/null 2>&1; }
