# Test-only stand-in for Zuul's zuul_return action (Zuul itself is the one
# part of the system tests simulate). Like Zuul's, it runs on the controller
# (the executor) and merges its `data` and `secret_data` arguments into the
# JSON file {"data": {...}, "secret_data": {...}} at `path`, by default
# zuul.executor.result_data_file, else $ZUUL_JOBDIR/work/results.json (the
# same file: Zuul's executor sets both).
# Nested dicts merge; the lists zuul.artifacts and zuul.warnings are appended
# to; any other value is replaced. The file is replaced atomically under a
# lock, so parallel tasks do not lose each other's data. A return that adds
# nothing reports `changed: false` (so role idempotence checks can pass).
#
# Use: ANSIBLE_ACTION_PLUGINS=<repo>/tests/ansible/action_plugins

import fcntl
import json
import os
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

APPENDED_LISTS = {("zuul", "artifacts"), ("zuul", "warnings")}


def merge(into, new, path=()):
    for key, value in new.items():
        where = path + (key,)
        old = into.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            merge(old, value, where)
        elif where in APPENDED_LISTS and isinstance(old, list) and isinstance(value, list):
            old.extend(value)
        else:
            into[key] = value


def default_path(task_vars, templar):
    named = ((task_vars.get("zuul") or {}).get("executor") or {}).get("result_data_file")
    if named:
        # Variables reach an action plugin untemplated.
        return templar.template(named)
    jobdir = os.environ.get("ZUUL_JOBDIR")
    if not jobdir:
        raise AnsibleActionFail(
            "zuul_return: no `path`, no zuul.executor.result_data_file and no ZUUL_JOBDIR"
        )
    return os.path.join(jobdir, "work", "results.json")


def plain(value):
    # Ansible may hand over its own str/dict subclasses; JSON round-trip
    # turns them into plain values.
    return json.loads(json.dumps(value))


class ActionModule(ActionBase):
    _requires_connection = False
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        unknown = set(args) - {"data", "secret_data", "path"}
        if unknown:
            raise AnsibleActionFail("zuul_return: unknown arguments: %s" % ", ".join(sorted(unknown)))
        path = args.get("path") or default_path(task_vars or {}, self._templar)
        updates = {
            section: plain(args[section])
            for section in ("data", "secret_data")
            if args.get(section) is not None
        }
        for section, value in updates.items():
            if not isinstance(value, dict):
                raise AnsibleActionFail("zuul_return: %s must be a dict" % section)

        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        with open(path + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with open(path) as f:
                    doc = json.load(f)
            except FileNotFoundError:
                doc = {}
            before = json.dumps(doc, sort_keys=True)
            for section, value in updates.items():
                merge(doc.setdefault(section, {}), value)
            if json.dumps(doc, sort_keys=True) == before:
                result["changed"] = False
                return result
            fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=".results.")
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, indent=2, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp_path, 0o600)
            os.rename(tmp_path, path)

        result["changed"] = True
        return result
