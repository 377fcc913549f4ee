# Checks for shell tests (sourced): each prints "ok: NAME" or "FAIL: NAME" with what it got;
# checks_done exits 1 when any failed. checks_cleanup keeps the test's directory when one did.
# shellcheck shell=bash
CHECK_FAILURES=0
check_fail() { echo "FAIL: $*"; CHECK_FAILURES=$((CHECK_FAILURES + 1)); }
check_pass() { echo "ok: $*"; }
check_eq() {  # NAME GOT WANT
  if [ "$2" = "$3" ]; then check_pass "$1"; else check_fail "$1: got '$2', want '$3'"; fi
}
check_contains() {  # NAME HAYSTACK NEEDLE
  case $2 in *"$3"*) check_pass "$1" ;; *) check_fail "$1: '$3' not in: $(printf '%s' "$2" | tail -c 600)" ;; esac
}
check_match() {  # NAME VALUE EXTENDED-REGEX
  if printf '%s' "$2" | grep -Eq -- "$3"; then check_pass "$1"; else check_fail "$1: '$2' does not match /$3/"; fi
}
check_wait() {  # NAME SECONDS COMMAND: until COMMAND succeeds, polled every 0.2 s
  local i
  for ((i = 0; i < $2 * 5; i++)); do
    if eval "$3" >/dev/null 2>&1; then check_pass "$1"; return 0; fi
    sleep 0.2
  done
  check_fail "$1: not within $2 s ($3)"
}
checks_cleanup() {  # DIR
  if [ "$CHECK_FAILURES" = 0 ]; then rm -rf "$1"; else echo "kept $1 for inspection"; fi
}
checks_done() {  # NAME
  if [ "$CHECK_FAILURES" = 0 ]; then echo "PASS $1"; exit 0; fi
  echo "FAIL $1: $CHECK_FAILURES checks failed"
  exit 1
}
