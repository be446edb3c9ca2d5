#!/usr/bin/env bash
# ansible-test sanity on the collection as users get it. ansible-test needs
# the tree at ansible_collections/<namespace>/<name>, so it runs on a copy
# of the committed files plus the built module binaries (run
# `make collection` first). Exceptions live in tests/sanity/ignore-*.txt,
# each with its reason.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tree=$work/ansible_collections/speculative/images
mkdir -p "$tree"
# What the collection ships (galaxy.yml's build_ignore left out), plus
# tests/ for the sanity ignore files: demo drivers, scripts and benchmarks
# are not collection content.
python - <<'PY' | xargs -0 cp --parents -t "$tree"
import fnmatch, subprocess, sys, yaml
ignored = [p for p in yaml.safe_load(open("galaxy.yml")).get("build_ignore", []) if p != "tests"]
files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                       check=True, capture_output=True).stdout.decode().split("\0")
keep = [f for f in files if f and not any(
    fnmatch.fnmatch(f, p) or fnmatch.fnmatch(f.split("/")[0], p) for p in ignored)]
sys.stdout.write("\0".join(keep))
PY
for m in $(scripts/modules.sh); do
  cp "plugins/modules/$m" "$tree/plugins/modules/$m"
done

# ansible-test bootstraps pip in its per-test venvs with a get-pip script it
# downloads from ci-files.testing.ansible.com. Where that host is out of
# reach, seed its cache with a script that installs the requested pip with
# this project's own pip (which already reaches the package index).
for version in $(python - <<'PY'
import re, pathlib, ansible_test
root = pathlib.Path(ansible_test.__file__).parent
text = (root / "_internal" / "python_requirements.py").read_text()
print(" ".join(sorted(set(re.findall(r"\bpip='([0-9.]+)'", text)))))
PY
); do
  cache=$HOME/.ansible/test/cache/get_pip_${version//./_}.py
  if [[ ! -s $cache ]] && ! curl -fsS -m 10 -o "$cache" "https://ci-files.testing.ansible.com/ansible-test/get-pip-$version.py" 2>/dev/null; then
    mkdir -p "$(dirname "$cache")"
    cat >"$cache" <<PY
# Written by speculative.images scripts/sanity.sh: installs pip with the
# project's pip instead of downloading get-pip.py.
import subprocess, sys
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call(["$PWD/.venv/bin/pip", "--python", sys.executable, "install", "-q", *args]))
PY
  fi
done

cd "$tree"
ansible-test sanity --python "$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" "$@"
