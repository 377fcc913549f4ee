#!/usr/bin/env bash
# Prolog and epilog wall time as slurmd sees it: one `berthctl slurm prolog` and one
# `berthctl slurm epilog` process per job, from process start to exit, against berthd on the
# two-socket fixture (a 4-GPU job with one VF and a pool address, as in the Slurm test).
# Beside them, in the same run: `berthctl --help` (process start-up, no I/O) as the floor.
# Usage: slurm_prolog_bench.sh BERTHD BERTHCTL [JOBS]   (root: berthd writes its state)
set -euo pipefail
BERTHD=$(realpath "$1")
BERTHCTL=$(realpath "$2")
jobs=${3:-300}
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/tests/harness/host.sh"
D=$(mktemp -d /tmp/berth-prolog-bench.XXXXXX)
trap 'berthd_stop; rm -rf "$D"' EXIT
fixture=$repo/tests/fixtures/two-socket
cat >"$D/berthd.json" <<JSON
{"sysfs_root": "$fixture/sys", "dev_root": "$fixture/dev", "proc_root": "$fixture/proc",
 "state_dir": "$D/state", "runtime_dir": "/run/berth-prolog-bench", "control_socket": "$D/berth.sock",
 "log_level": "warn", "udev_source": "off",
 "pools": [{"name": "grid", "subnet": "10.77.0.0/24", "ranges": ["10.77.0.10-10.77.0.200"], "gateway": "10.77.0.1"}],
 "slurm": {"default": {"vfs": 1, "network": {"pool": "grid"}}}}
JSON
berthd_start "$D/berthd.json" "$D/berth.sock"
ns() { date +%s%N; }
: >"$D/prolog" && : >"$D/epilog" && : >"$D/floor"
for ((i = 1; i <= jobs; i++)); do
  export SLURM_JOB_ID=$((100000 + i)) SLURM_JOB_UID=0 SLURM_JOB_GPUS=0,1,2,3
  t0=$(ns); "$BERTHCTL" --socket "$D/berth.sock" slurm prolog >/dev/null; t1=$(ns)
  "$BERTHCTL" --socket "$D/berth.sock" slurm epilog >/dev/null; t2=$(ns)
  "$BERTHCTL" --help >/dev/null; t3=$(ns)
  echo $(((t1 - t0) / 1000)) >>"$D/prolog"
  echo $(((t2 - t1) / 1000)) >>"$D/epilog"
  echo $(((t3 - t2) / 1000)) >>"$D/floor"
done
pct() { sort -n "$1" | awk -v p="$2" '{a[NR] = $1} END {i = int(NR * p / 100); if (i < 1) i = 1; printf "%.2f", a[i] / 1000}'; }
printf '%-28s %8s %8s\n' "($jobs jobs)" "p50 ms" "p99 ms"
for f in prolog epilog floor; do
  label=$f; [ $f = floor ] && label="floor (berthctl --help)"
  printf '%-28s %8s %8s\n' "$label" "$(pct "$D/$f" 50)" "$(pct "$D/$f" 99)"
done
p50=$(pct "$D/prolog" 50); f50=$(pct "$D/floor" 50)
echo "prolog p50 beyond process start-up: $(awk -v a="$p50" -v b="$f50" 'BEGIN {printf "%.2f", a - b}') ms"
