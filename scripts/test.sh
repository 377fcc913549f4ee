#!/usr/bin/env bash
# Installs what is missing, builds berth twice (plain, and with ASan+UBSan) and runs every test
# in both builds: unit tests, then the integration tests that need root, runc and the kernel.
set -euo pipefail
. "$(dirname "$0")/as-root.sh"
repo=$(cd "$(dirname "$0")/.." && pwd)
"$repo/scripts/install-deps.sh"
jobs=$(nproc)
for variant in plain sanitize; do
  build=$repo/build-test-$variant
  flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
  [ "$variant" = sanitize ] && flags=(-DCMAKE_BUILD_TYPE=Debug -DBERTH_SANITIZE=ON -DBERTH_BUILD_BENCH=OFF)
  echo "== $variant build"
  cmake -S "$repo" -B "$build" -G Ninja "${flags[@]}" >/dev/null
  cmake --build "$build" -j "$jobs"
  echo "== $variant tests"
  # Sanitizer reports fail the run; leaks included.
  if ! ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$build" --output-on-failure -j "$jobs"; then
    # The failing cases last, so the end of the log names them.
    echo "== $variant tests failed:"
    grep -h -E '^\[  FAILED  \]|^FAIL|: Failure$' "$build/Testing/Temporary/LastTest.log" | sort -u | head -40 || true
    exit 1
  fi
done
echo "== all tests passed in both builds"
