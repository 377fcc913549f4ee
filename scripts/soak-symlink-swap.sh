#!/usr/bin/env bash
# The symlink-swap soak: a loop inside a real runc container swaps /dev/nvidia-caps,
# /dev/infiniband and /dev/nvidia0 for symlinks to a host directory and back, against CYCLES
# attach/detach cycles (default 2000) in both cgroup modes. Checks that nothing is created on the
# host through a planted link, host /dev, /etc, /tmp and mounts are unchanged, and every rule berth
# added is taken back. CI runs the same test with 150 cycles.
set -euo pipefail
. "$(dirname "$0")/as-root.sh"
repo=$(cd "$(dirname "$0")/.." && pwd)
cycles=${1:-2000}
"$repo/scripts/install-deps.sh"
build=${BERTH_BUILD_DIR:-$repo/build}
cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target berth_integration_tests
BERTH_SWAP_CYCLES=$cycles "$build/tests/berth_integration_tests" \
  --gtest_filter='*AttachTest.SymlinkSwapsDuringAttachNeverReachTheHost*'
