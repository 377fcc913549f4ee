#!/usr/bin/env bash
# packaging/systemd/berthd.service passes systemd-analyze verify (with berthd where the unit
# expects it, in a scratch root).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
command -v systemd-analyze >/dev/null || { echo "SKIP: systemd-analyze is not installed"; exit 77; }
unit=$repo/packaging/systemd/berthd.service
grep -q '^Type=notify$' "$unit"
out=$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no "$unit" 2>&1 || true)
# The only complaint allowed: /usr/sbin/berthd is not installed on the build machine.
if grep -v -e "Command /usr/sbin/berthd is not executable" -e "^$" <<<"$out" | grep -q .; then
  echo "FAIL: systemd-analyze verify:"; echo "$out"; exit 1
fi
echo "ok: systemd-analyze verify ${out:+(only: berthd not installed here)}"
