"""A stand-in for Zuul's executor, just enough to run the seed's jobs.

Zuul itself is the one part the project may simulate. This module runs a
job's real playbooks (pre-run, run, post-run) with ansible-playbook on
localhost, giving them what Zuul gives them:

- the ``zuul`` variable: tenant, change, patchset, build, buildset,
  pipeline, job, project, the queue's items (the changes ahead, then this
  one), artifacts of changes ahead when the caller gives them (real Zuul
  gives none to a change that builds images itself), and executor paths;
- the job's secrets and variables;
- the data a paused parent job returned (``data`` and ``secret_data``),
  as variables of its child jobs;
- ``zuul_success`` in post-run playbooks;
- a result data file that the test-only ``zuul_return`` writes.

With ``DEMO_TIMINGS`` set (bench/demo.sh sets it), every ansible-playbook
run appends a JSON line to that file (job, change, build, phase, playbook,
wall-clock start and end) and gets ``DEMO_PLAYBOOK_RUN``, an id that
bench/demo.sh's callback plugin writes next to each of that run's tasks.

Pre-run failures and run failures end the job the way Zuul does: post-run
playbooks still run, with ``zuul_success: false``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TENANT = "example"
HOSTNAME = "review.example.org"


def item(project: str, change: str, patchset: str = "1") -> dict:
    """One of ``zuul.items`` as Zuul 14 gives it: a change of ``project``."""
    return {
        "project": {
            "name": project,
            "short_name": project.rsplit("/", 1)[-1],
            "canonical_hostname": HOSTNAME,
            "canonical_name": f"{HOSTNAME}/{project}",
            "src_dir": f"src/{HOSTNAME}/{project}",
        },
        "change": change,
        "patchset": patchset,
        "branch": "main",
        "change_url": f"https://{HOSTNAME}/{change}",
        "commit_id": (change * 40)[:40],
        "topic": None,
    }


@dataclass
class Result:
    """What a job left behind (so far, for a paused job)."""

    name: str
    change: str
    success: bool
    data: dict
    secret_data: dict
    seconds: float
    playbook_seconds: dict = field(default_factory=dict)
    # Kept so a paused job can be resumed.
    job: "Job | None" = None
    variables: dict = field(default_factory=dict)
    jobdir: "Path | None" = None
    paused: bool = False

    @property
    def artifacts(self) -> list:
        return self.data.get("zuul", {}).get("artifacts", [])

    def data_without_zuul(self) -> dict:
        """Returned data minus Zuul's own keys, as children receive it."""
        return {k: v for k, v in self.data.items() if k != "zuul"}


@dataclass
class Job:
    """A job as the seed defines it: playbooks, variables, secrets."""

    name: str
    run: list
    pre_run: list = field(default_factory=list)
    post_run: list = field(default_factory=list)
    variables: dict = field(default_factory=dict)
    secrets: dict = field(default_factory=dict)


class Executor:
    """Runs jobs for changes, keeping each build's work dir under ``root``."""

    def __init__(self, root: Path, env: dict, log=print):
        self.root = root
        self.env = env
        self.log = log
        self.root.mkdir(parents=True, exist_ok=True)
        # One buildset per change and pipeline, as Zuul has.
        self.buildsets: dict = {}

    def run_job(
        self,
        job: Job,
        change: str,
        pipeline: str,
        project_dir: Path,
        artifacts: list | None = None,
        parent: Result | None = None,
        pause: bool = False,
        project: str | None = None,
        ahead: list | None = None,
    ) -> Result:
        """Run ``job``; with ``pause``, stop after its run playbooks (the
        job's ``zuul_return`` asked to pause) until ``resume``.

        ``project`` is the project's name (default ``example/<dir name>``);
        ``ahead`` the items queued ahead of this change (see ``item``),
        oldest first, which become ``zuul.items`` with this change last.
        As in Zuul, ``zuul.artifacts`` is left out when there are none."""
        build = uuid.uuid4().hex
        jobdir = self.root / f"{change}-{job.name}-{build[:8]}"
        work = jobdir / "work"
        work.mkdir(parents=True)
        results = work / "results.json"
        this = item(project or f"example/{project_dir.name}", change)
        this["project"]["src_dir"] = str(project_dir)
        buildset = self.buildsets.setdefault((change, pipeline), uuid.uuid4().hex)
        zuul = {
            "tenant": TENANT,
            "change": change,
            "patchset": this["patchset"],
            "build": build,
            "buildset": buildset,
            "pipeline": pipeline,
            "job": job.name,
            "project": this["project"],
            "items": [*(ahead or []), this],
            "executor": {
                "work_root": str(work),
                "result_data_file": str(results),
            },
        }
        if artifacts:
            zuul["artifacts"] = artifacts
        variables = {"zuul": zuul, **job.variables, **job.secrets}
        if parent is not None:
            # Zuul hands a paused parent's returned data to its children.
            variables.update(parent.data_without_zuul())
            variables.update(parent.secret_data)
        timings = {}
        started = time.monotonic()
        success = True
        for phase, playbooks in (("pre-run", job.pre_run), ("run", job.run)):
            for playbook in playbooks:
                if not success:
                    break
                ok, secs = self._play(playbook, variables, jobdir, phase)
                timings[f"{phase} {playbook}"] = secs
                success = ok
        result = Result(
            name=job.name,
            change=change,
            success=success,
            data={},
            secret_data={},
            seconds=time.monotonic() - started,
            playbook_seconds=timings,
            job=job,
            variables=variables,
            jobdir=jobdir,
            paused=pause and success,
        )
        if not result.paused:
            self.resume(result)
        self._read_results(result)
        return result

    def resume(self, result: Result) -> Result:
        """Run the post-run playbooks of a (paused) job."""
        started = time.monotonic()
        for playbook in result.job.post_run:
            variables = {**result.variables, "zuul_success": result.success}
            ok, secs = self._play(playbook, variables, result.jobdir, "post-run")
            result.playbook_seconds[f"post-run {playbook}"] = secs
            result.success = result.success and ok
        result.seconds += time.monotonic() - started
        result.paused = False
        self._read_results(result)
        return result

    @staticmethod
    def _read_results(result: Result) -> None:
        results = result.jobdir / "work" / "results.json"
        doc = json.loads(results.read_text()) if results.exists() else {}
        result.data = doc.get("data", {})
        result.secret_data = doc.get("secret_data", {})

    def _play(self, playbook: str, variables: dict, jobdir: Path, phase: str):
        vars_file = jobdir / "vars.json"
        vars_file.write_text(json.dumps(variables))
        vars_file.chmod(0o600)
        cmd = [
            "ansible-playbook",
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"@{vars_file}",
            "-e",
            "ansible_python_interpreter=" + self.env.get("DEMO_PYTHON", "python3"),
            str(REPO / playbook),
        ]
        run_id = uuid.uuid4().hex
        env = {
            **os.environ,
            **self.env,
            "ZUUL_JOBDIR": str(jobdir),
            "DEMO_PLAYBOOK_RUN": run_id,
        }
        log_path = jobdir / (Path(playbook).stem + ".log")
        started = time.monotonic()
        wall_start = time.time()
        with open(log_path, "a") as log:
            proc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        secs = time.monotonic() - started
        timings_file = os.environ.get("DEMO_TIMINGS")
        if timings_file:
            zuul = variables["zuul"]
            record = {
                "kind": "playbook", "run": run_id, "jobdir": str(jobdir),
                "job": zuul["job"], "change": zuul["change"], "build": zuul["build"],
                "pipeline": zuul["pipeline"], "phase": phase, "playbook": playbook,
                "start": wall_start, "end": time.time(), "ok": proc.returncode == 0,
            }
            with open(timings_file, "a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")
        if proc.returncode != 0:
            self.log(f"      {playbook} FAILED (log: {log_path})")
            tail = log_path.read_text().splitlines()[-25:]
            for line in tail:
                self.log(f"        | {line}")
        return proc.returncode == 0, secs


def artifacts_for_followers(result: Result, project: str) -> list:
    """The artifacts Zuul gives jobs of changes behind ``result``'s change
    when it gives any: what the build returned, with the keys Zuul adds."""
    out = []
    for artifact in result.artifacts:
        out.append(
            {
                **artifact,
                "project": project,
                "change": result.change,
                "patchset": "1",
                "job": result.name,
            }
        )
    return out
