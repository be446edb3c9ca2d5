#!/usr/bin/env bash
# The module and role checks on every ansible-core the collection must run
# on: the ones Zuul's executors use and the newest. Zuul 14 installs
# Ansible 9 (ansible-core 2.16) and Ansible 11 (ansible-core 2.18) with
# zuul-manage-ansible (zuul/lib/ansible-config.conf); the project's venv
# holds the newest ansible-core this Python takes.
#
# Each core gets a venv of its own (cached under $ANSIBLE_MATRIX_CACHE),
# the collection tarball `make collection` built installed into a private
# collections path, and then: ansible-doc of every module, the action
# plugin's playbook (tests/ansible/binary_module_test.yml), the test-only
# zuul_return's playbook and the roles' playbook (tests/ansible/roles_test.yml).
# Ends with "N passed, N failed"; exits non-zero when any check failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

CACHE=${ANSIBLE_MATRIX_CACHE:-/var/cache/speculative-images}
ZUUL_CORES=(2.16 2.18)
MODULES=$(scripts/modules.sh)

passed=0
failed=0
failures=()
check() {
  local name=$1; shift
  printf '\n\033[1m--> %s\033[0m\n' "$name"
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    failures+=("$name")
  fi
}

# A venv with ansible-core <core>.x, made once.
core_venv() {
  local core=$1 venv=$CACHE/ansible-core-$1
  if [[ ! -x $venv/bin/ansible-playbook ]]; then
    mkdir -p "$CACHE"
    rm -rf "$venv"
    python3 -m venv "$venv" &&
      "$venv/bin/pip" install -q --disable-pip-version-check "ansible-core~=$core.0" >&2 ||
      return 1
  fi
  echo "$venv"
}

# Run a command with a fresh empty HOME and ZUUL_JOBDIR, removed afterwards.
in_fresh_dirs() {
  local home jobdir rc
  home=$(mktemp -d) jobdir=$(mktemp -d)
  HOME=$home ZUUL_JOBDIR=$jobdir "$@"
  rc=$?
  rm -rf "$home" "$jobdir"
  return $rc
}

every_module_documented() {
  local bin=$1 module
  for module in $MODULES; do
    "$bin/ansible-doc" -t module "speculative.images.$module" >/dev/null ||
      { echo "ansible-doc speculative.images.$module failed"; return 1; }
  done
}

tarballs=(build/speculative-images-*.tar.gz)
tarball=${tarballs[-1]}
if [[ ! -f $tarball ]]; then
  echo "no collection tarball under build/: run 'make collection' first"
  echo "0 passed, 1 failed"
  exit 1
fi

venvs=()
for core in "${ZUUL_CORES[@]}"; do
  if venv=$(core_venv "$core"); then
    venvs+=("$venv")
  else
    failed=$((failed + 1))
    failures+=("ansible-core $core: venv")
  fi
done
venvs+=("$PWD/.venv")

for venv in "${venvs[@]}"; do
  bin=$venv/bin
  version=$("$bin/python" -c 'import ansible.release as r; print(r.__version__)')
  collections=$(mktemp -d)
  export ANSIBLE_COLLECTIONS_PATH=$collections
  check "ansible-core $version: install the collection" \
    "$bin/ansible-galaxy" collection install -p "$collections" "$tarball"
  check "ansible-core $version: ansible-doc of every module" every_module_documented "$bin"
  check "ansible-core $version: binary module playbook" \
    in_fresh_dirs "$bin/ansible-playbook" tests/ansible/binary_module_test.yml
  check "ansible-core $version: test-only zuul_return" \
    in_fresh_dirs env ANSIBLE_LIBRARY="$PWD/tests/ansible/library" \
    "$bin/ansible-playbook" tests/ansible/zuul_return_test.yml
  check "ansible-core $version: roles playbook" \
    in_fresh_dirs env ANSIBLE_LIBRARY="$PWD/tests/ansible/library" \
    "$bin/ansible-playbook" tests/ansible/roles_test.yml
  rm -rf "$collections"
done

echo
((failed)) && printf 'FAILED: %s\n' "${failures[@]}"
echo "$passed passed, $failed failed"
((failed == 0))
