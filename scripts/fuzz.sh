#!/usr/bin/env bash
# `make fuzz`: build the fuzz targets (fuzz/, cargo fuzz and libFuzzer) and
# run each for FUZZ_SECONDS (default 30) seconds, or only the targets named
# as arguments. Exits non-zero when a target crashes (a panic, a failed
# assertion, a timeout, a sanitizer report) and says where the input is.
#
# Each target starts from fuzz/regressions/<target>/ (the inputs the
# ordinary tests replay, tests/fuzz_regressions.rs) and keeps what it
# learns in fuzz/corpus/<target>/ (not committed); a crash is written to
# fuzz/artifacts/<target>/. Once fixed, the crash input belongs in
# fuzz/regressions/<target>/ under a name that says what it is.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

seconds=${FUZZ_SECONDS:-30}
# cargo-fuzz hands rustc nightly-only flags (-Zsanitizer=address and the
# like). The project builds with the stable toolchain only (CI and this
# machine have no other, and cannot fetch one): RUSTC_BOOTSTRAP=1 lets
# stable rustc and cargo accept them.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked
fi

if (($#)); then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

# Release, with debug assertions and overflow checks on (-a): an overflow
# is a finding too. The same flags for build and run, so run does not
# build again.
build_flags=(--debug-assertions)
echo "==> building ${#targets[@]} fuzz targets"
cargo fuzz build "${build_flags[@]}"

failed=()
summary=()
for target in "${targets[@]}"; do
  corpus=fuzz/corpus/$target
  mkdir -p "$corpus" "fuzz/artifacts/$target"
  dict=()
  [[ -f fuzz/dicts/$target.dict ]] && dict=("-dict=fuzz/dicts/$target.dict")
  log=fuzz/artifacts/$target.log
  echo "==> fuzzing $target for ${seconds}s (log: $log)"
  status=0
  cargo fuzz run "${build_flags[@]}" "$target" "$corpus" "fuzz/regressions/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    "${dict[@]}" >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if ((status)); then
    failed+=("$target")
    summary+=("$(printf '%-12s %6ss %12s runs  CRASH (exit %s)' "$target" "$seconds" "${runs:-?}" "$status")")
    grep -E '^(==[0-9]+==|thread .* panicked|SUMMARY|artifact_prefix|Test unit written)' "$log" | head -20 || true
  else
    summary+=("$(printf '%-12s %6ss %12s runs  ok' "$target" "$seconds" "${runs:-?}")")
  fi
done

echo
printf '%s\n' "fuzz summary:" "${summary[@]}"
if ((${#failed[@]})); then
  echo "crashed: ${failed[*]}; the inputs are in fuzz/artifacts/<target>/" >&2
  exit 1
fi
