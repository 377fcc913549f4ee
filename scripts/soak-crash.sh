#!/usr/bin/env bash
# The crash-loop soak: berthd SIGKILLed at a random moment of an attach or a detach into a real
# runc container and restarted, CYCLES times (default 1000); after every restart the host and the
# container are checked against the ledger. Prints the counts of leaked netdevs, stray device
# rules and nodes, lost berths. CI runs the same test with 200 cycles.
set -euo pipefail
. "$(dirname "$0")/as-root.sh"
repo=$(cd "$(dirname "$0")/.." && pwd)
cycles=${1:-1000}
"$repo/scripts/install-deps.sh"
build=${BERTH_BUILD_DIR:-$repo/build}
cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target berth_integration_tests
BERTH_CRASH_CYCLES=$cycles "$build/tests/berth_integration_tests" \
  --gtest_filter='ApiTest.CrashLoop*'
