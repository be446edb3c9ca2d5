#!/usr/bin/env bash
# Every test. Each runner prints its own summary; the collection checks end
# with "N passed, N failed". Exits non-zero when anything fails.
#
# The collection is built and installed (with --force, replacing any copy
# installed before) into the user's collections path: molecule searches that
# path before any other, so a copy anywhere else could be shadowed by a stale
# one. Every Ansible run here thus uses this tree's modules.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export PATH="$PWD/.venv/bin:$HOME/.cargo/bin:$PATH"
export COLLECTIONS_PATH="$HOME/.ansible/collections"
export ANSIBLE_COLLECTIONS_PATH="$COLLECTIONS_PATH"

failures=()
timings=()
step() {
  local name=$1 start=$SECONDS; shift
  printf '\n\033[1m==> %s\033[0m\n' "$name"
  "$@" || failures+=("$name")
  timings+=("$(printf '%5ds  %s' $((SECONDS - start)) "$name")")
}

# Run a command with environment variable $1 naming a fresh empty
# directory, removed afterwards; returns the command's status.
with_empty_dir() {
  local var=$1 dir rc
  shift
  dir=$(mktemp -d)
  env "$var=$dir" "$@"
  rc=$?
  rm -rf "$dir"
  return $rc
}

step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --all-targets --locked -- -D warnings
step "cargo doc (missing docs denied)" env RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked --quiet
step "cargo deny (licenses, duplicate crates, sources, advisories)" scripts/deny.sh
# Built before the Rust tests: some of them drive the installed collection.
step "collection build and install" make --no-print-directory collection
step "cargo nextest" cargo nextest run --locked --no-fail-fast
step "collection checks" scripts/collection-checks.sh
step "Zuul jobs, playbooks and roles" python scripts/repo-checks.py
# validate-modules reads every module as Python source and cannot read our
# binary modules (UnicodeDecodeError); their docs are checked by the
# ansible-doc sanity test and by scripts/collection-checks.sh instead.
step "ansible-test sanity" scripts/sanity.sh --skip-test validate-modules
# The module and role playbooks (tests/ansible/) on the ansible-core of
# each Ansible Zuul's executors install (9 and 11) and on the venv's, the
# newest: the action plugin's node cache, the test-only zuul_return, the
# roles as a job runs them.
step "ansible-core matrix" scripts/ansible-matrix.sh
# ansible-lint (production profile, see .ansible-lint) over the roles,
# playbooks, molecule scenarios and demo playbooks, against the collection
# installed above. Offline, it keeps its module mocks under $ANSIBLE_HOME
# without a lock, so it gets a private one: another run ending meanwhile
# would remove them. It warns that it cannot read our modules' source (they
# are binaries); that is expected.
step "ansible-lint" with_empty_dir ANSIBLE_HOME ansible-lint
# The README's main command, as a person runs it (after `make setup
# collection`, done above): the buildset registry round trip, then the
# whole gate, which exits non-zero if any hop's digest differs.
step "the demo (make demo)" scripts/demo.sh
# The same gate with our server as the site's intermediate registry, from
# the shipped site configuration (examples/intermediate-registry/).
step "the gating demo, our server as the intermediate registry" env DEMO_INTERMEDIATE=ours python3 demo/gate.py
# The gate in a real Zuul (Zuul 14.3.0's harness: scheduler, executor with
# ansible-playbook in bubblewrap, merger, fake Gerrit), the collection
# installed into the executor's Ansible environments as docs/zuul-setup.md
# says. Installs what it needs once (cached under /var/cache/speculative-zuul).
step "Zuul, real scheduler and executor" scripts/zuul-test.sh
for scenario in molecule/*/; do
  name=$(basename "$scenario")
  [[ -f $scenario/molecule.yml ]] || continue
  step "molecule $name" molecule test -s "$name"
done

# Where the time went: the test command must stay well inside CI's limit.
echo
printf '%s\n' "time per step (total ${SECONDS}s):" "${timings[@]}"
echo
if ((${#failures[@]})); then
  echo "FAILED steps: ${failures[*]}"
  exit 1
fi
echo "all test steps passed"
