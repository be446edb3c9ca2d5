#!/usr/bin/env bash
# Checks on the built and installed collection, as a user meets it: every
# module is a small static binary with documentation ansible-doc can show.
# Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
MAX_BYTES=$((6 * 1024 * 1024))
passed=0 failed=0
check() {
  local what=$1; shift
  if "$@" >/tmp/collection-check.out 2>&1; then
    passed=$((passed + 1)); echo "ok   $what"
  else
    failed=$((failed + 1)); echo "FAIL $what"; sed 's/^/     /' /tmp/collection-check.out | tail -n 15
  fi
}
modules=$(scripts/modules.sh)
for m in $modules; do
  bin=plugins/modules/$m
  check "$m: binary is statically linked" bash -c "file '$bin' | grep -q 'statically linked'"
  check "$m: binary is at most 6 MB" bash -c "(( \$(stat -c %s '$bin') <= $MAX_BYTES ))"
  check "$m: ansible-doc shows it" bash -c "ansible-doc speculative.images.$m | grep -q 'EXAMPLES'"
done
echo "$passed passed, $failed failed"
((failed == 0))
