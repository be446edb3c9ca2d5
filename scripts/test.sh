#!/usr/bin/env bash
# Every test. Each runner prints its own summary; the collection checks end
# with "N passed, N failed". Exits non-zero when anything fails.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$HOME/.cargo/bin:$PATH"

failures=()
step() {
  local name=$1; shift
  printf '\n\033[1m==> %s\033[0m\n' "$name"
  "$@" || failures+=("$name")
}

step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --all-targets --locked -- -D warnings
step "cargo doc (missing docs denied)" env RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked --quiet
step "cargo nextest" cargo nextest run --locked --no-fail-fast
step "collection build and install" make --no-print-directory collection
step "collection checks" scripts/collection-checks.sh

echo
if ((${#failures[@]})); then
  echo "FAILED steps: ${failures[*]}"
  exit 1
fi
echo "all test steps passed"
