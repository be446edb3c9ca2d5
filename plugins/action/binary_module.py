# Copyright: speculative.images contributors
# Apache License 2.0 (see galaxy.yml)
"""Run the collection's binary modules from a copy cached on the node.

For a binary module, ansible-core makes a temporary directory on the node,
copies the whole binary (about 6 MB) and an args file into it, makes them
executable, runs the binary and removes the directory: five shell commands
and a 6 MB transfer for every task. This action plugin keeps one copy of the
binary per content hash under ``~/.cache/speculative.images/`` on the node
and sends the arguments on stdin (the binary reads them there when its one
argument is ``-``), so a task costs one shell command once the copy is
there. Tasks it cannot serve that way (``become``, ``async``) take
ansible-core's ordinary path, as does any node where the cache cannot be
written.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shlex

from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash
from ansible.vars.clean import remove_internal_keys

try:  # ansible-core 2.19 encodes arguments through a serialization profile
    from ansible.module_utils.common.json import Direction, get_module_encoder
except ImportError:  # ansible-core 2.15 to 2.18: plain JSON
    Direction = get_module_encoder = None

# Whether this ansible-core passes binary modules' arguments and results
# through a serialization profile (2.19: `_parse_returned_data(res,
# profile)`; 2.15 to 2.18 take `(res)` alone and plain JSON). Read from the
# API itself, not from the version number.
_USES_PROFILES = (
    get_module_encoder is not None
    and "profile" in inspect.signature(ActionBase._parse_returned_data).parameters
)

CACHE = "$HOME/.cache/speculative.images"
# The serialization profile ansible-core gives binary modules' arguments.
PROFILE = "legacy"
# Printed instead of running when the node has no copy of this binary yet.
MISSING = "speculative.images: module binary not cached"


class ActionModule(ActionBase):
    """The ordinary module action, with the binary cached on the node."""

    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # no effect, as in every action plugin since ansible-core 2.5
        if self._task.async_val or self._play_context.become:
            return merge_hash(result, self._ordinary(task_vars))
        return merge_hash(result, self._cached(task_vars or {}))

    def _ordinary(self, task_vars):
        """ansible-core's own way (what the `normal` action does)."""
        wrap_async = self._task.async_val and not self._connection.has_native_async
        data = self._execute_module(task_vars=task_vars, wrap_async=wrap_async)
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return data

    def _cached(self, task_vars):
        module_name = self._task.action
        module_path = self._module_file(module_name)
        if module_path is None:
            return self._ordinary(task_vars)
        module_args = self._task.args.copy()
        self._update_module_args(module_name, module_args, task_vars)
        if _USES_PROFILES:
            # ansible-core's profile for binary modules' arguments
            encoder = get_module_encoder(PROFILE, Direction.CONTROLLER_TO_MODULE)
            in_data = json.dumps(module_args, cls=encoder).encode()
        else:
            in_data = json.dumps(module_args).encode()
        digest = _digest(module_path)
        binary = '"%s/%s"' % (CACHE, digest)
        # `exec`: the shell becomes the module, one process fewer per task.
        command = "if [ -x %s ]; then %sexec %s -; else echo %s; fi" % (
            binary,
            self._compute_environment_string(),
            binary,
            shlex.quote(MISSING),
        )
        res = self._low_level_execute_command(command, in_data=in_data)
        if res.get("stdout", "").strip() == MISSING:
            if not self._install(module_path, digest):
                return self._ordinary(task_vars)
            res = self._low_level_execute_command(command, in_data=in_data)
        if _USES_PROFILES:
            data = self._parse_returned_data(res, PROFILE)
        else:
            data = self._parse_returned_data(res)
        data.pop("_ansible_suppress_tmpdir_delete", None)
        remove_internal_keys(data)
        return data

    def _module_file(self, module_name):
        """The module's binary on the controller, or None."""
        found = self._shared_loader_obj.module_loader.find_plugin_with_context(
            module_name, collection_list=self._task.collections
        )
        return found.plugin_resolved_path if found.resolved else None

    def _install(self, module_path, digest):
        """Copy the binary into the node's cache, atomically; False if that
        cannot be done (then the task runs the ordinary way)."""
        self._make_tmp_path()
        tmpdir = self._connection._shell.tmpdir
        staged = self._connection._shell.join_path(tmpdir, "AnsiballZ_binary")
        try:
            self._transfer_file(module_path, staged)
            # Beside the final name first, then renamed: a concurrent task
            # never runs a half-written binary.
            script = (
                'mkdir -p "{cache}" && chmod 0700 "{cache}" && '
                'cp {staged} "{cache}/{digest}.$$" && chmod 0755 "{cache}/{digest}.$$" && '
                'mv -f "{cache}/{digest}.$$" "{cache}/{digest}" && '
                # Copies of other builds installed over a day ago: stale.
                'find "{cache}" -maxdepth 1 -type f ! -name "{digest}" -mtime +1 -exec rm -f {{}} +'
            ).format(cache=CACHE, staged=shlex.quote(staged), digest=digest)
            res = self._low_level_execute_command(script)
        finally:
            self._remove_tmp_path(tmpdir)
        return res.get("rc") == 0


def _digest(module_path):
    """The binary's sha256: the one the installed collection declares in its
    FILES.json (what ``ansible-galaxy collection verify`` checks), which
    spares reading and hashing 6 MB on every task; else hashed here."""
    modules_dir = os.path.dirname(module_path)
    root = os.path.dirname(os.path.dirname(modules_dir))
    name = "plugins/modules/" + os.path.basename(module_path)
    try:
        with open(os.path.join(root, "FILES.json"), encoding="utf-8") as files:
            for entry in json.load(files)["files"]:
                if entry.get("name") == name and entry.get("chksum_sha256"):
                    return entry["chksum_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    with open(module_path, "rb") as binary:
        return hashlib.sha256(binary.read()).hexdigest()
