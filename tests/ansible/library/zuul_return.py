# Test-only stand-in for Zuul's zuul_return (Zuul itself is the one part of
# the system the tests simulate). Tests run every play on localhost, so as a
# module it writes where Zuul's action writes on the executor.
#
# Use: ANSIBLE_LIBRARY=<repo>/tests/ansible/library, and ZUUL_JOBDIR set in
# the environment as Zuul's executor sets it.

DOCUMENTATION = r"""
module: zuul_return
short_description: Test-only stand-in for Zuul's zuul_return
description:
  - Merges O(data) and O(secret_data) into the JSON file
    C({"data": {...}, "secret_data": {...}}) at O(path), by default
    C($ZUUL_JOBDIR/work/results.json), the file C(zuul.executor.result_data_file)
    names.
  - Nested dicts merge; the lists C(zuul.artifacts) and C(zuul.warnings) are
    appended to; any other value is replaced.
  - The file is replaced atomically under a lock, so parallel tasks do not
    lose each other's data. A return that adds nothing reports C(changed=false).
options:
  data:
    description: Data for Zuul (and child jobs).
    type: dict
  secret_data:
    description: Secret data for child jobs (never shown).
    type: dict
  path:
    description: The result data file.
    type: path
author:
  - speculative.images developers
"""

import fcntl
import json
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

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


def write(path, updates):
    """Merge `updates` into the file at `path`; return whether it changed."""
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
            return False
        fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=".results.")
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o600)
        os.rename(tmp_path, path)
        return True


def main():
    module = AnsibleModule(
        argument_spec=dict(
            data=dict(type="dict"),
            secret_data=dict(type="dict", no_log=True),
            path=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    path = module.params["path"]
    if not path:
        jobdir = os.environ.get("ZUUL_JOBDIR")
        if not jobdir:
            module.fail_json(msg="zuul_return: no `path` given and ZUUL_JOBDIR is not set")
        path = os.path.join(jobdir, "work", "results.json")
    updates = {
        section: module.params[section]
        for section in ("data", "secret_data")
        if module.params[section] is not None
    }
    if module.check_mode:
        module.exit_json(changed=bool(updates), path=path)
    module.exit_json(changed=write(path, updates), path=path)


if __name__ == "__main__":
    main()
