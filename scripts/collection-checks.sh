#!/usr/bin/env bash
# Checks on the built and installed collection, as a user meets it: every
# module is a static binary with documentation ansible-doc can show (its
# size is a figure: bench/module-cost.sh reports it against the target).
# Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export PATH="$PWD/.venv/bin:$PATH"
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
  # `file` says "statically linked", or "static-pie linked" for a static PIE.
  check "$m: binary is statically linked" bash -c "file -L '$bin' | grep -Eq 'statically linked|static-pie linked'"
  check "$m: ansible-doc shows it" bash -c "ansible-doc speculative.images.$m | grep -q 'EXAMPLES'"
  check "$m: runs as a module and refuses an unknown argument by name" bash -c \
    "echo '{\"_ansible_module_name\": \"speculative.images.$m\", \"no_such_argument\": 1}' >/tmp/collection-check.args &&
     '$bin' /tmp/collection-check.args | jq -e '.failed == true and (.msg | test(\"no_such_argument|not implemented\"))'"
done
echo "$passed passed, $failed failed"
((failed == 0))
