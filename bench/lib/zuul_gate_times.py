#!/usr/bin/env python3
"""The table bench/zuul-gate.sh prints: per job of the gate scenario run in a
real Zuul, its wall time and the share spent in tasks running our modules,
next to the simulated-Zuul demo's figures for the job of the same name.

Real Zuul: each build directory the harness kept (BUILDS/<uuid>/) holds
the job's name (ansible/zuul_vars.yaml) and Zuul's own record of every task
(work/logs/job-output.json: task start and end, the action each host ran).
The wall time is from the first line of job-output.txt ("Job console
starting", when the executor took the build) to its last (the last
post-run's end): repository preparation, Ansible's setup, every playbook.
"Our modules" are tasks whose action is speculative.images.*, from the
task's start to its end.

Demo (optional): the JSON lines bench/demo.sh's run leaves (DEMO_TIMINGS),
read the way bench/lib/demo_times.py reads them, summed per job name over
its builds.

Several runs: each RUN directory holds the builds a harness run kept
(RUN/builds/) and, when the demo ran beside it, RUN/timings.jsonl. The
table gives each figure's median over the runs and its spread (max - min,
as a share of the median); a job is matched across runs by its name and
its place among the builds of that name.

Usage: zuul_gate_times.py RUN [RUN...]
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import defaultdict
from datetime import datetime
from statistics import median

OURS = "speculative.images."
# The test projects' jobs and the site job each inherits from (the demo
# runs the site jobs under their own names).
SITE_JOB = {
    "app-build-image": "yoursite-build-docker-image",
    "app-upload-image": "yoursite-upload-docker-image",
    "consumer-upload-image": "yoursite-upload-docker-image",
    "consumer-test-image": "yoursite-buildset-registry",
    "consumer-promote-image": "yoursite-promote-docker-image",
}


def iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def stamp(line: str) -> float:
    return datetime.strptime(line[:26], "%Y-%m-%d %H:%M:%S.%f").timestamp()


def real_jobs(builds: str) -> list[dict]:
    jobs = []
    for uuid in sorted(os.listdir(builds)):
        root = os.path.join(builds, uuid)
        try:
            with open(os.path.join(root, "ansible", "zuul_vars.yaml"), encoding="utf-8") as f:
                job = re.search(r"^  job: (\S+)$", f.read(), re.M).group(1)
            with open(os.path.join(root, "work", "logs", "job-output.txt"), encoding="utf-8") as f:
                lines = [line for line in f if re.match(r"\d{4}-\d\d-\d\d ", line)]
            with open(os.path.join(root, "work", "logs", "job-output.json"), encoding="utf-8") as f:
                playbooks = json.load(f)
        except (OSError, AttributeError, ValueError):
            continue
        ours = 0.0
        for playbook in playbooks:
            for play in playbook["plays"]:
                for task in play["tasks"]:
                    actions = {r.get("action", "") for r in task["hosts"].values()}
                    duration = task["task"].get("duration", {})
                    if "end" in duration and any(a.startswith(OURS) for a in actions):
                        ours += iso(duration["end"]) - iso(duration["start"])
        wall = stamp(lines[-1]) - stamp(lines[0])
        jobs.append({"job": job, "start": stamp(lines[0]), "wall": wall, "ours": ours})
    return sorted(jobs, key=lambda j: j["start"])


def demo_jobs(path: str) -> dict[str, dict]:
    runs, tasks = {}, defaultdict(list)
    with open(path, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if record["kind"] == "playbook":
                runs[record["run"]] = record
            elif record["kind"] == "task":
                tasks[record["run"]].append(record)
    builds: dict[tuple, dict] = {}
    for run_id, run in runs.items():
        build = builds.setdefault((run["job"], run["build"]), {"wall": 0.0, "ours": 0.0})
        build["wall"] += run["end"] - run["start"]
        for task in tasks.get(run_id, []):
            if str(task.get("action", "")).startswith(OURS):
                build["ours"] += task["end"] - task["start"]
    per_job: dict[str, dict] = {}
    for (job, _), build in builds.items():
        entry = per_job.setdefault(job, {"builds": 0, "wall": 0.0, "ours": 0.0})
        entry["builds"] += 1
        entry["wall"] += build["wall"]
        entry["ours"] += build["ours"]
    return per_job


def share(part: float, whole: float) -> str:
    return f"{100 * part / whole:3.0f}%" if whole else "  -"


def spread(values: list[float]) -> str:
    """max - min over the median, the noise between runs."""
    mid = median(values)
    return f"±{100 * (max(values) - min(values)) / mid / 2:2.0f}%" if mid and len(values) > 1 else "  -"


def figure(values: list[float]) -> str:
    return f"{median(values):6.1f}s {spread(values):>5}"


def main() -> int:
    runs = sys.argv[1:]
    if not runs:
        print(__doc__, file=sys.stderr)
        return 2
    real: dict[tuple[str, int], dict] = {}
    demo: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    totals: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        jobs = real_jobs(os.path.join(run, "builds"))
        if not jobs:
            print(f"no kept builds under {run}/builds", file=sys.stderr)
            return 1
        seen: dict[str, int] = defaultdict(int)
        for job in jobs:
            key = (job["job"], seen[job["job"]])
            seen[job["job"]] += 1
            entry = real.setdefault(key, {"start": [], "wall": [], "ours": []})
            for field in entry:
                entry[field].append(job[field] - (jobs[0]["start"] if field == "start" else 0))
        totals["wall"].append(sum(j["wall"] for j in jobs))
        totals["ours"].append(sum(j["ours"] for j in jobs))
        timings = os.path.join(run, "timings.jsonl")
        if os.path.exists(timings):
            for name, sim in demo_jobs(timings).items():
                demo[name]["wall"].append(sim["wall"] / sim["builds"])
                demo[name]["ours"].append(sim["ours"] / sim["builds"])
    print(f"{'job (real Zuul, in start order)':34} {'wall':>6} {'spread':>6} {'ours':>6}"
          f" {'spread':>6} {'share':>5}   {'demo: wall/build':>16} {'ours':>6} {'share':>5}")
    for (name, _), job in sorted(real.items(), key=lambda kv: median(kv[1]["start"])):
        wall, ours = median(job["wall"]), median(job["ours"])
        line = f"{name:34} {figure(job['wall'])} {figure(job['ours'])} {share(ours, wall):>5}"
        sim = demo.get(SITE_JOB.get(name, name))
        if sim:
            sim_wall, sim_ours = median(sim["wall"]), median(sim["ours"])
            line += f"   {sim_wall:15.1f}s {sim_ours:5.1f}s {share(sim_ours, sim_wall):>5}"
        print(line)
    wall, ours = median(totals["wall"]), median(totals["ours"])
    print(f"{'all jobs':34} {figure(totals['wall'])} {figure(totals['ours'])} {share(ours, wall):>5}")
    print(f"runs: {len(runs)} real-Zuul, {len(next(iter(demo.values()), {}).get('wall', []))} demo;"
          " figures are medians, spread is ±(max - min)/2 of the median")
    if demo:
        print("demo: the site job each one is (or inherits from) in demo/gate.py's"
              " simulated Zuul, median over runs of the mean per build")
    return 0


if __name__ == "__main__":
    sys.exit(main())
