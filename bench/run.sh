#!/usr/bin/env bash
# Every benchmark under bench/ (each prints ours and its anchor side by
# side). Run by `make bench` after the collection is built and installed.
set -uo pipefail
cd "$(dirname "$0")" || exit 1
failed=()
# The whole demo last: its per-job table closes the run.
benches=()
for bench in *.sh; do
  [[ $bench == run.sh || $bench == demo.sh ]] || benches+=("$bench")
done
for bench in "${benches[@]}" demo.sh; do
  printf '\n\033[1m==> bench/%s\033[0m\n' "$bench"
  ./"$bench" || failed+=("$bench")
done
if ((${#failed[@]})); then
  echo "FAILED benchmarks: ${failed[*]}"
  exit 1
fi
