#!/usr/bin/env bash
# Runs every benchmark and writes bench-results/{core.json,agent.json} plus a short table.
# Needs root (the agent benchmarks move links, write cgroups and start runc containers).
# BENCH_IDLE_SECONDS (default 60) sets how long berthd is watched idle.
set -euo pipefail
. "$(dirname "$0")/as-root.sh"
repo=$(cd "$(dirname "$0")/.." && pwd)
"$repo/scripts/install-deps.sh"
for p in containernetworking-plugins; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p"; }
done
build=${BERTH_BUILD_DIR:-$repo/build-bench}
cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBERTH_BUILD_TESTS=ON >/dev/null
cmake --build "$build" --target berth_bench_core berth_bench_agent berth_bench_events berth_bench_api_floor \
  berth_bench_webhook_load
out=$repo/bench-results
mkdir -p "$out"
echo "== core (Google Benchmark)"
"$build/bench/berth_bench_core" --benchmark_out="$out/core.json" --benchmark_out_format=json
echo "== agent, side by side with the peers"
"$build/bench/berth_bench_agent" --idle-seconds "${BENCH_IDLE_SECONDS:-60}" --out "$out/agent.json"
echo "== event-driven agent: link events beside the kernel floor, overrun convergence, idle, footprint"
"$build/bench/berth_bench_events" 200 "${BENCH_IDLE_SECONDS:-60}" | tee "$out/events.txt"
echo "== control API beside a minimal responder on the same transport"
"$build/bench/berth_bench_api_floor" 3 2 | tee "$out/api_floor.txt"
echo "== Slurm prolog/epilog as slurmd sees them (process start to exit)"
"$repo/bench/slurm_prolog_bench.sh" "$build/agent/berthd" "$build/agent/berthctl" 300 | tee "$out/slurm_prolog.txt"
echo "== webhook verify + enqueue beside octokit verify(); queued to runner started"
"$repo/bench/webhook_bench.sh" "$build/agent/berthd" "$build/agent/berthctl" 3000 10 | tee "$out/webhook.txt"
