#!/usr/bin/env bash
# The README's commands as a user who is not root: through sudo when there is one, and a clear
# message (not a failure halfway through) when there is none.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
command -v setpriv >/dev/null || { echo "SKIP: setpriv (util-linux) missing"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root to become another user"; exit 77; }
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
chmod 755 "$bin"
for t in id basename dirname bash; do ln -s "$(command -v $t)" "$bin/$t"; done
# No sudo on PATH: the script stops at once and says why.
out=$(setpriv --reuid=65534 --regid=65534 --clear-groups env PATH="$bin" bash "$repo/scripts/install-deps.sh" 2>&1) && {
  echo "FAIL: install-deps.sh succeeded as an unprivileged user"; exit 1; }
grep -q "run as root" <<<"$out" || { echo "FAIL: no clear message: $out"; exit 1; }
grep -q "sudo is not installed" <<<"$out" || { echo "FAIL: message does not mention sudo: $out"; exit 1; }
# A sudo on PATH: the script re-executes itself through it with its own arguments.
cat >"$bin/sudo" <<'SH'
#!/bin/bash
echo "sudo called with: $*"
SH
chmod 755 "$bin/sudo"
out=$(setpriv --reuid=65534 --regid=65534 --clear-groups env PATH="$bin" bash "$repo/scripts/demo.sh" 2>&1)
grep -q "sudo called with: .*scripts/demo.sh" <<<"$out" || { echo "FAIL: not re-executed through sudo: $out"; exit 1; }
echo "ok: as-root.sh refuses without sudo and re-executes through sudo"
