#!/usr/bin/env bash
# The cost of a module as Ansible runs it, in one ansible-playbook run:
# 20 no-change run_buildset_registry tasks against a running registry (our
# static binary), 20 `stat` tasks (ansible-core's Python module, the
# anchor) and 20 `set_fact` tasks (no module at all: the floor).
# Prints ms per task for each, the ratio, and the module binary's size.
# Targets: at most 40 ms per task, at most 6 MB per module binary.
# Run after `make collection` (make bench does).
set -euo pipefail
cd "$(dirname "$0")/.." || exit 1
export PATH="$PWD/.venv/bin:$PATH"
N=${N:-20}

work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
playbook=$work/module-cost.yml
module_args="root: $work/registry
        port: $port
        host: 127.0.0.1"

{
  cat <<YAML
- name: Module cost
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Start the registry (not timed)
      speculative.images.run_buildset_registry:
        $module_args
      no_log: true
    - name: t0
      ansible.builtin.set_fact: {t0: "{{ now().timestamp() }}"}
YAML
  for i in $(seq "$N"); do cat <<YAML
    - name: run_buildset_registry $i
      speculative.images.run_buildset_registry:
        $module_args
      register: ours
      failed_when: ours is changed or ours is failed
      no_log: true
YAML
  done
  echo '    - {name: t1, ansible.builtin.set_fact: {t1: "{{ now().timestamp() }}"}}'
  for i in $(seq "$N"); do
    echo "    - {name: stat $i, ansible.builtin.stat: {path: /etc/hostname}}"
  done
  echo '    - {name: t2, ansible.builtin.set_fact: {t2: "{{ now().timestamp() }}"}}'
  for i in $(seq "$N"); do
    echo "    - {name: set_fact $i, ansible.builtin.set_fact: {fact_$i: $i}}"
  done
  cat <<YAML
    - {name: t3, ansible.builtin.set_fact: {t3: "{{ now().timestamp() }}"}}
    - name: Keep the timings
      ansible.builtin.copy:
        dest: $work/timings.json
        mode: "0644"
        content: "{{ {'ours': t1 | float - t0 | float, 'stat': t2 | float - t1 | float, 'set_fact': t3 | float - t2 | float} | to_json }}"
    - name: Stop the registry (not timed)
      speculative.images.run_buildset_registry:
        root: $work/registry
        state: absent
YAML
} >"$playbook"

trap 'rm -rf "$work"' EXIT
ansible-playbook "$playbook" >"$work/playbook.log" 2>&1 || { tail -n 40 "$work/playbook.log"; exit 1; }

# What `make collection` placed (and installed): the binary Ansible copies.
module=plugins/modules/run_buildset_registry
python3 - "$work/timings.json" "$N" "$module" <<'PY'
import json, os, sys
t = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
ms = {k: v * 1000 / n for k, v in t.items()}
size = os.path.getsize(sys.argv[3])
print(f"run_buildset_registry, no change (Rust binary): {ms['ours']:7.1f} ms/task  (target <= 40)")
print(f"stat (Python module, the anchor):               {ms['stat']:7.1f} ms/task")
print(f"set_fact (no module, the floor):                {ms['set_fact']:7.1f} ms/task")
print(f"ratio stat / run_buildset_registry:             {ms['stat'] / ms['ours']:7.2f}x")
print(f"module binary: {size / 1e6:.2f} MB ({size / 2**20:.2f} MiB) {sys.argv[3]}  (target <= 6 MB)")
PY
