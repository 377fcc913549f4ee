#!/usr/bin/env bash
# The Debian package: built with `cpack -G DEB` from the build tree, installed with apt-get on this
# machine, checked (berthd --check-config, dpkg -L, lintian), then purged leaving nothing behind.
# Usage: deb_test.sh BUILD_DIR. Exit 77: cannot run here (not root, no dpkg/apt-get/lintian).
set -uo pipefail
build=$(realpath "$1")
[ "$(id -u)" = 0 ] || { echo "SKIP deb_test: needs root (it installs the package)"; exit 77; }
for b in dpkg apt-get cpack lintian dpkg-shlibdeps; do
  command -v $b >/dev/null || { echo "SKIP deb_test: $b is not installed"; exit 77; }
done
out=$(mktemp -d /tmp/berth-deb.XXXXXX)
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }
cleanup() {
  dpkg -s berth >/dev/null 2>&1 && apt-get purge -y -qq berth >/dev/null 2>&1
  rm -rf "$out"
}
trap cleanup EXIT
if dpkg -s berth >/dev/null 2>&1; then
  echo "SKIP deb_test: a berth package is already installed here; not touching it"
  trap - EXIT
  rm -rf "$out"
  exit 77
fi

(cd "$build" && cpack -G DEB -B "$out" >"$out/cpack.log" 2>&1) || { cat "$out/cpack.log"; exit 1; }
deb=$(ls "$out"/berth_*.deb)
pass "built $(basename "$deb")"
lint=$(lintian "$deb" 2>&1 | grep -v 'running with root privileges')
if grep -q '^E:' <<<"$lint"; then fail "lintian errors:"; echo "$lint"; else pass "lintian: no errors${lint:+ ($(grep -c . <<<"$lint") warnings)}"; fi

DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >"$out/install.log" 2>&1 || { fail "apt-get install: $(tail -5 "$out/install.log")"; exit 1; }
pass "apt-get install ./$(basename "$deb")"
msg=$(/usr/sbin/berthd --check-config /etc/berth/berthd.json 2>&1) && pass "berthd --check-config /etc/berth/berthd.json" || fail "check-config: $msg"
/usr/bin/berthctl --help >/dev/null && pass "berthctl --help" || fail "berthctl --help"
listed=$(dpkg -L berth)
for f in /usr/sbin/berthd /usr/bin/berthctl /etc/berth/berthd.json /lib/systemd/system/berthd.service \
  /lib/udev/rules.d/70-berth.rules /usr/lib/berth/slurm/prolog.sh /usr/lib/berth/slurm/epilog.sh \
  /usr/share/containers/oci/hooks.d/berth-hook.json /usr/share/man/man8/berthd.8.gz \
  /usr/share/man/man8/berthctl.8.gz /usr/share/man/man5/berthd.json.5.gz \
  /usr/share/bash-completion/completions/berthctl /usr/share/doc/berth/copyright; do
  grep -qx "$f" <<<"$listed" && [ -e "$f" ] || fail "dpkg -L lacks $f (or it is not on disk)"
done
pass "dpkg -L lists every file"
grep -qx /etc/berth/berthd.json /var/lib/dpkg/info/berth.conffiles && pass "berthd.json is a conffile" || fail "berthd.json is not a conffile"
deps=$(dpkg -s berth | sed -n 's/^Depends: //p')
grep -q libnl-route-3-200 <<<"$deps" && pass "shared-library dependencies computed: $deps" || fail "Depends: $deps"
if command -v systemd-analyze >/dev/null; then
  v=$(systemd-analyze verify /lib/systemd/system/berthd.service 2>&1) && pass "systemd-analyze verify on the installed unit" || fail "systemd-analyze verify: $v"
fi
mkdir -p /var/lib/berth && echo x >/var/lib/berth/state-marker  # state berthd would have written

DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq berth >"$out/purge.log" 2>&1 || fail "apt-get purge: $(tail -5 "$out/purge.log")"
left=
while read -r f; do
  [ -z "$f" ] || [ -d "$f" ] && continue
  [ -e "$f" ] && left+=" $f"
done <<<"$listed"
for d in /etc/berth /var/lib/berth /run/berth /usr/lib/berth /usr/share/doc/berth; do [ -e "$d" ] && left+=" $d"; done
[ -z "$left" ] && pass "apt-get purge berth leaves no file of berth's" || fail "left after purge:$left"
dpkg -s berth >/dev/null 2>&1 && fail "berth still known to dpkg" || true
echo "deb_test: $failures failures"
[ "$failures" = 0 ]
