#!/usr/bin/env bash
# The gate in a real Zuul, timed: scripts/zuul-test.sh's gate scenario (two
# projects sharing a queue, then promote) in Zuul 14.3.0's harness, and per
# job the wall time (from the executor taking the build to its last
# post-run's end) and the time in tasks running our modules, from Zuul's own
# job-output files; next to the figures of the simulated-Zuul demo
# (demo/gate.py, run here as bench/demo.sh runs it) for the same site jobs.
# The demo part is skipped when its ports (443, 5050, 5000) are taken.
# Table: bench/lib/zuul_gate_times.py. Exits non-zero when the scenario fails.
# BENCH_RUNS=N: how many runs of each side (default 3).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=${ZUUL_TEST_ROOT:-/tmp/zt}
work=$(mktemp -d /tmp/bench-zuul-gate.XXXXXX)
trap 'rm -rf "$work"' EXIT

# The machine is shared and noisy: each side runs BENCH_RUNS times (3 by
# default), alternating, and the table gives the median and the spread.
runs=${BENCH_RUNS:-3}
case $runs in '' | *[!0-9]* | 0) echo "BENCH_RUNS must be a positive number, not '$runs'" >&2; exit 2 ;; esac
ports=(443 5050 5000)
failed=0
run_dirs=()
for ((i = 1; i <= runs; i++)); do
  run=$work/run-$i
  mkdir -p "$run"
  printf '\033[1m==> run %d of %d: the gate scenario in a real Zuul\033[0m\n' "$i" "$runs"
  start=$(date +%s.%N)
  if ! scripts/zuul-test.sh -k gate_two >"$run/zuul-test.log" 2>&1; then
    tail -n 30 "$run/zuul-test.log" >&2
    echo "the gate scenario failed (whole log above, last lines)" >&2
    failed=1
    continue
  fi
  end=$(date +%s.%N)
  echo "scripts/zuul-test.sh -k gate_two: $(python3 -c "print(f'{$end - $start:.0f}')") s" \
    "(installs checked, services started, one harness test)"
  # The harness empties its builds directory at each run: keep this one's.
  cp -a "$root/zuul-test/builds" "$run/builds"
  run_dirs+=("$run")

  free=1
  for port in "${ports[@]}"; do
    ss -Hltn "sport = :$port" | grep -q . && free=0
  done
  if ((free)); then
    printf '\033[1m==> run %d of %d: the simulated-Zuul demo (demo/gate.py)\033[0m\n' "$i" "$runs"
    if ! PATH="$PWD/.venv/bin:$PATH" DEMO_DIR=$run/demo DEMO_TIMINGS=$run/timings.jsonl \
      ANSIBLE_CALLBACK_PLUGINS=$PWD/bench/callback_plugins \
      ANSIBLE_CALLBACKS_ENABLED=bench_task_times \
      python3 demo/gate.py >"$run/demo.log" 2>&1; then
      tail -n 20 "$run/demo.log" >&2
      rm -f "$run/timings.jsonl"
      echo "the demo failed; its figures of this run are left out" >&2
    fi
  else
    echo "ports ${ports[*]} are not all free: the demo's figures are left out"
  fi
done

if ((${#run_dirs[@]})); then
  printf '\n\033[1m==> per job: wall time, and the share in our modules (median of %d runs)\033[0m\n' \
    "${#run_dirs[@]}"
  python3 bench/lib/zuul_gate_times.py "${run_dirs[@]}" || failed=1
fi
exit "$failed"
