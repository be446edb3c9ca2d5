#!/usr/bin/env bash
# The gate in a real Zuul, timed: scripts/zuul-test.sh's gate scenario (two
# projects sharing a queue, then promote) in Zuul 14.3.0's harness, and per
# job the wall time (from the executor taking the build to its last
# post-run's end) and the time in tasks running our modules, from Zuul's own
# job-output files; next to the figures of the simulated-Zuul demo
# (demo/gate.py, run here as bench/demo.sh runs it) for the same site jobs.
# The demo part is skipped when its ports (443, 5050, 5000) are taken.
# Table: bench/lib/zuul_gate_times.py. Exits non-zero when the scenario fails.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=${ZUUL_TEST_ROOT:-/tmp/zt}
work=$(mktemp -d /tmp/bench-zuul-gate.XXXXXX)
trap 'rm -rf "$work"' EXIT

printf '\033[1m==> the gate scenario in a real Zuul\033[0m\n'
start=$(date +%s.%N)
if ! scripts/zuul-test.sh -k gate_two >"$work/zuul-test.log" 2>&1; then
  tail -n 30 "$work/zuul-test.log" >&2
  echo "the gate scenario failed (whole log above, last lines)" >&2
  failed=1
else
  failed=0
fi
end=$(date +%s.%N)
echo "scripts/zuul-test.sh -k gate_two: $(python3 -c "print(f'{$end - $start:.0f}')") s" \
  "(installs checked, services started, one harness test)"

timings=()
ports=(443 5050 5000)
free=1
for port in "${ports[@]}"; do
  ss -Hltn "sport = :$port" | grep -q . && free=0
done
if ((free)); then
  printf '\n\033[1m==> the simulated-Zuul demo (demo/gate.py)\033[0m\n'
  export PATH="$PWD/.venv/bin:$PATH"
  if DEMO_DIR=$work/demo DEMO_TIMINGS=$work/timings.jsonl \
    ANSIBLE_CALLBACK_PLUGINS=$PWD/bench/callback_plugins \
    ANSIBLE_CALLBACKS_ENABLED=bench_task_times \
    python3 demo/gate.py >"$work/demo.log" 2>&1; then
    timings=("$work/timings.jsonl")
  else
    tail -n 20 "$work/demo.log" >&2
    echo "the demo failed; its figures are left out" >&2
  fi
else
  echo "ports ${ports[*]} are not all free: the demo's figures are left out"
fi

printf '\n\033[1m==> per job: wall time, and the share in our modules\033[0m\n'
python3 bench/lib/zuul_gate_times.py "$root/zuul-test/builds" "${timings[@]}" || failed=1
exit "$failed"
