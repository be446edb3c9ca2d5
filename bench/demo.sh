#!/usr/bin/env bash
# The whole gating demo (demo/gate.py, as `make demo` runs it after its
# registry part), timed: its wall time, and per simulated Zuul job the wall
# time of its ansible-playbook runs split into
#   - "our modules": tasks whose module is speculative.images.* (from the
#     task's start to its result: this includes what Ansible does for such a
#     task, templating its arguments and, the first time on a node, copying
#     the module binary there, not only the module's own run),
#   - other tasks (command, set_fact, zuul_return, ...),
#   - Ansible's overhead: the rest (process start, parsing, fact gathering,
#     connection, work between tasks).
# Task times come from bench/callback_plugins/bench_task_times.py, enabled
# for this run only through ANSIBLE_CALLBACK_PLUGINS/ANSIBLE_CALLBACKS_ENABLED;
# demo/zuul_sim.py times each ansible-playbook run when DEMO_TIMINGS is set.
# Prints the table at the end (bench/lib/demo_times.py). Exits non-zero when
# the demo fails or leaves a registry process or port behind.
# Needs the ports the demo uses (443, 5050, 5000) free, root (it is the demo
# that changes /etc/docker), and `make collection` first (make bench does).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export PATH="$PWD/.venv/bin:$PATH"

# The publication, intermediate and buildset registries of demo/gate.py.
ports=(443 5050 5000)
listening() { ss -Hltn "sport = :$1" | grep -q .; }
for port in "${ports[@]}"; do
  if listening "$port"; then
    echo "port $port is in use; the demo needs it: not running" >&2
    ss -Hltnp "sport = :$port" >&2
    exit 1
  fi
done

# What the demo's jobs change on this host (a Zuul node is thrown away;
# this machine is not): compared after the run and reported.
host_files=(/etc/docker/daemon.json /etc/hosts /etc/containers/registries.conf
  /etc/buildkit/buildkitd.toml "$HOME/.docker/config.json")
host_state() {
  local f
  for f in "${host_files[@]}"; do
    if [[ -f $f ]]; then
      printf '%s sha256:%s\n' "$f" "$(sha256sum "$f" | cut -c1-16)"
    else
      printf '%s absent\n' "$f"
    fi
  done
  find /etc/docker/certs.d /usr/local/share/ca-certificates -mindepth 1 2>/dev/null | sort
}

work=$(mktemp -d /tmp/bench-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
host_state >"$work/host.before"

export DEMO_DIR=$work/demo DEMO_TIMINGS=$work/timings.jsonl
export ANSIBLE_CALLBACK_PLUGINS=$PWD/bench/callback_plugins
export ANSIBLE_CALLBACKS_ENABLED=bench_task_times

start=$(date +%s.%N)
python3 demo/gate.py
demo_rc=$?
end=$(date +%s.%N)

failed=0
if ((demo_rc != 0)); then
  echo "the demo failed (exit $demo_rc)" >&2
  failed=1
fi

printf '\n\033[1m==> after the demo: nothing left running\033[0m\n'
for port in "${ports[@]}"; do
  if listening "$port"; then
    echo "port $port is still listening:" >&2
    ss -Hltnp "sport = :$port" >&2
    failed=1
  fi
done
# Processes started with a path under this run's directory (registries'
# configs live there) or the buildset registry's default root.
if left=$(pgrep -af -- "$work|$HOME/buildset_registry/"); then
  echo "processes left behind:" >&2
  echo "$left" >&2
  failed=1
fi
((failed)) || echo "no registry process left, ports ${ports[*]} free"
host_state >"$work/host.after"
if ! diff -q "$work/host.before" "$work/host.after" >/dev/null; then
  echo "changed on this host during the run (by the demo's jobs, which configure the node" \
    "for the buildset registry, or by other sessions working concurrently):"
  diff "$work/host.before" "$work/host.after" | sed -n 's/^< /    before: /p; s/^> /    after:  /p'
fi

printf '\n\033[1m==> the demo on this machine: wall time per job, our modules vs Ansible\033[0m\n'
if [[ -s $DEMO_TIMINGS ]]; then
  python3 bench/lib/demo_times.py "$DEMO_TIMINGS" "$(python3 -c "print($end - $start)")" || failed=1
else
  echo "no timings were recorded" >&2
  failed=1
fi
exit "$failed"
