# Used by bench/demo.sh only (enabled there through ANSIBLE_CALLBACK_PLUGINS
# and ANSIBLE_CALLBACKS_ENABLED): appends one JSON line per task that ran to
# the file named by $DEMO_TIMINGS, with the task's play, name, module (the
# resolved FQCN when Ansible resolved it) and wall-clock start and end.
# "end" is when the task's last host result arrived; tasks without a result
# (include_role, include_tasks, meta) have "end": null.
# $DEMO_PLAYBOOK_RUN (set by demo/zuul_sim.py per ansible-playbook run) and
# $ZUUL_JOBDIR tie the records to one job's playbook run.
from __future__ import annotations

DOCUMENTATION = """
name: bench_task_times
type: aggregate
short_description: per-task wall-clock times as JSON lines, for bench/demo.sh
description:
  - Appends one JSON object per task to the file named by C(DEMO_TIMINGS).
requirements:
  - the DEMO_TIMINGS environment variable
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_task_times"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._out = os.environ.get("DEMO_TIMINGS")
        self._playbook = ""
        self._play = ""
        self._tasks: dict[str, dict] = {}

    def v2_playbook_on_start(self, playbook):
        self._playbook = getattr(playbook, "_file_name", "")

    def v2_playbook_on_play_start(self, play):
        self._play = play.get_name()

    def _start(self, task):
        self._tasks[task._uuid] = {
            "play": self._play,
            "task": task.get_name(),
            "action": task.action,
            "start": time.time(),
            "end": None,
        }

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._start(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._start(task)

    def _end(self, result):
        record = self._tasks.get(result._task._uuid)
        if record is None:
            return
        record["end"] = time.time()
        # Set once Ansible resolved the task's module; read the attribute
        # directly (the public property warns when sampled too late).
        resolved = getattr(result._task, "_resolved_action", None)
        if resolved:
            record["action"] = resolved

    def v2_runner_on_ok(self, result):
        self._end(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._end(result)

    def v2_runner_on_skipped(self, result):
        self._end(result)

    def v2_runner_on_unreachable(self, result):
        self._end(result)

    def v2_runner_item_on_ok(self, result):
        self._end(result)

    def v2_runner_item_on_failed(self, result):
        self._end(result)

    def v2_playbook_on_stats(self, stats):
        if not self._out:
            return
        common = {
            "kind": "task",
            "run": os.environ.get("DEMO_PLAYBOOK_RUN", ""),
            "jobdir": os.environ.get("ZUUL_JOBDIR", ""),
            "playbook": self._playbook,
        }
        with open(self._out, "a", encoding="utf-8") as out:
            for record in self._tasks.values():
                out.write(json.dumps({**common, **record}) + "\n")
