#!/usr/bin/env python3
"""The table bench/demo.sh prints: per job of the gating demo, its wall time
and how it splits between tasks running our modules, other tasks and
Ansible's own overhead.

Input: the JSON lines demo/zuul_sim.py (one per ansible-playbook run, "kind":
"playbook") and bench/callback_plugins/bench_task_times.py (one per task,
"kind": "task") appended to $DEMO_TIMINGS, and the whole demo's wall time.
Usage: demo_times.py TIMINGS.jsonl DEMO_WALL_SECONDS
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

OURS = "speculative.images."
FACTS = {"ansible.builtin.gather_facts", "ansible.builtin.setup", "gather_facts", "setup"}


def main() -> int:
    path, demo_wall = sys.argv[1], float(sys.argv[2])
    runs, tasks = {}, defaultdict(list)
    with open(path, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if record["kind"] == "playbook":
                runs[record["run"]] = record
            elif record["kind"] == "task":
                tasks[record["run"]].append(record)

    jobs: dict[tuple, dict] = {}
    per_module: dict[str, list] = defaultdict(lambda: [0, 0.0])
    for run_id, run in sorted(runs.items(), key=lambda kv: kv[1]["start"]):
        key = (run["change"], run["job"], run["build"])
        job = jobs.setdefault(key, {"runs": 0, "wall": 0.0, "ours": 0.0, "other": 0.0, "facts": 0.0})
        job["runs"] += 1
        job["wall"] += run["end"] - run["start"]
        for task in tasks.get(run_id, []):
            if task["end"] is None:
                continue  # an include or meta task: no result, no time of its own
            secs = task["end"] - task["start"]
            action = task["action"] or ""
            if action.startswith(OURS):
                job["ours"] += secs
                per_module[action[len(OURS):]][0] += 1
                per_module[action[len(OURS):]][1] += secs
            elif action in FACTS:
                job["facts"] += secs
            else:
                job["other"] += secs
    if not jobs:
        print("no job timings were recorded", file=sys.stderr)
        return 1

    head = f"{'change':<7}{'job':<31}{'runs':>5}{'wall s':>9}{'our modules s':>15}" \
           f"{'other tasks s':>15}{'overhead s':>12}{'(facts)':>9}{'ours':>7}"
    print(head)
    print("-" * len(head))
    total = {"runs": 0, "wall": 0.0, "ours": 0.0, "other": 0.0, "facts": 0.0}

    def row(change: str, name: str, j: dict) -> None:
        overhead = j["wall"] - j["ours"] - j["other"]
        share = 100 * j["ours"] / j["wall"] if j["wall"] else 0.0
        print(f"{change:<7}{name:<31}{j['runs']:>5}{j['wall']:>9.1f}{j['ours']:>15.1f}"
              f"{j['other']:>15.1f}{overhead:>12.1f}{j['facts']:>9.1f}{share:>6.0f}%")

    for (change, name, _build), j in jobs.items():
        row(change, name, j)
        for k in total:
            total[k] += j[k]
    print("-" * len(head))
    row("", "all jobs", total)
    overhead = total["wall"] - total["ours"] - total["other"]
    outside = demo_wall - total["wall"]
    print(f"{'':<7}{'outside the jobs':<31}{'':>5}{outside:>9.1f}   "
          "(services, published image, skopeo digest checks, node resets, cleanup)")
    print(f"{'':<7}{'whole demo':<31}{'':>5}{demo_wall:>9.1f}")
    print()
    w = total["wall"] or 1.0
    print(f"Share of the jobs' {total['wall']:.1f} s: our modules {100 * total['ours'] / w:.0f}%, "
          f"other tasks {100 * total['other'] / w:.0f}%, Ansible overhead {100 * overhead / w:.0f}% "
          f"(fact gathering alone: {100 * total['facts'] / w:.0f}%)")
    print("Our modules:", ", ".join(
        f"{name} {n}x {secs:.1f} s" for name, (n, secs) in
        sorted(per_module.items(), key=lambda kv: -kv[1][1])))
    print()
    print("""\
Measured once on this machine, which other sessions share: approximate.
"wall s" of a job: the sum of its ansible-playbook runs (pre-run, run,
  post-run) as demo/zuul_sim.py times them; a paused job's waiting is not in it.
"our modules s": tasks whose module is speculative.images.*, from the task's
  start to its result, so it includes Ansible's work for that task (templating
  the arguments, copying the module binary to the node's cache the first
  time, running it), not only
  the module's own work; the tasks a role's include adds count, the include
  itself does not.
"other tasks s": every other task (command, set_fact, zuul_return, ...).
"overhead s": the rest of the job's wall time: Python and ansible-playbook
  start, playbook and inventory parsing, fact gathering ("(facts)"), the
  local connection, and the strategy's work between tasks.""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
