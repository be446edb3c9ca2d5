#!/usr/bin/env bash
# Checks on the built and installed collection, as a user meets it: every
# module is a static binary (its size is a figure: bench/module-cost.sh
# reports it against the target) whose documentation ansible-doc shows
# whole (every option, required ones marked, every return value, examples)
# and which, run as Ansible runs it, refuses an unknown argument by name.
# Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export PATH="$PWD/.venv/bin:$PATH"
passed=0 failed=0
check() {
  local what=$1; shift
  if "$@" >/tmp/collection-check.out 2>&1; then
    passed=$((passed + 1)); echo "ok   $what"
  else
    failed=$((failed + 1)); echo "FAIL $what"; sed 's/^/     /' /tmp/collection-check.out | tail -n 15
  fi
}
# ansible-doc's text for module $1 has an OPTIONS section listing every
# option of the sidecar plugins/modules/$1.yml ("=" for required, "-" for
# the others), a RETURN VALUES section listing every return value, and
# EXAMPLES calling the module.
doc_shows_all() {
  local m=$1
  ANSIBLE_NOCOLOR=1 ansible-doc "speculative.images.$m" >/tmp/collection-check.doc || return 1
  python3 - "$m" /tmp/collection-check.doc <<'PY'
import re, sys, yaml
module, rendered = sys.argv[1], open(sys.argv[2]).read()
sidecar = yaml.safe_load(open(f"plugins/modules/{module}.yml"))
sections, current = {}, None
for line in rendered.splitlines():
    heading = re.match(r"([A-Z][A-Z ]*[A-Z])(:| \()", line)
    if heading:
        current = heading.group(1)
        sections[current] = []
    elif current:
        sections[current].append(line)
problems = []
def listed(section, name, marks):
    lines = sections.get(section)
    if lines is None:
        problems.append(f"no {section} section")
        return
    if not any(re.match(rf"[{marks}] {re.escape(name)}(\s|$)", l) for l in lines):
        problems.append(f"{section}: {name!r} not shown (as {marks!r})")
for name, spec in (sidecar["DOCUMENTATION"].get("options") or {}).items():
    listed("OPTIONS", name, "=" if spec.get("required") else "-")
for name in sidecar.get("RETURN") or {}:
    listed("RETURN VALUES", name, "-")
if not any(f"speculative.images.{module}:" in l for l in sections.get("EXAMPLES", [])):
    problems.append(f"EXAMPLES: no task calling speculative.images.{module}")
for p in problems:
    print(p)
sys.exit(1 if problems else 0)
PY
}

modules=$(scripts/modules.sh)
for m in $modules; do
  bin=plugins/modules/$m
  # `file` says "statically linked", or "static-pie linked" for a static PIE.
  check "$m: binary is statically linked" bash -c "file -L '$bin' | grep -Eq 'statically linked|static-pie linked'"
  check "$m: ansible-doc shows its options, return values and examples" doc_shows_all "$m"
  check "$m: runs as a module and refuses an unknown argument by name" bash -c \
    "echo '{\"_ansible_module_name\": \"speculative.images.$m\", \"no_such_argument\": 1}' >/tmp/collection-check.args &&
     '$bin' /tmp/collection-check.args | jq -e '.failed == true and (.msg | startswith(\"argument no_such_argument: unknown field\"))'"
done
echo "$passed passed, $failed failed"
((failed == 0))
