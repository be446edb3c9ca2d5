#!/usr/bin/env bash
# Make this Debian machine ready: system packages, the Python venv with
# Ansible and molecule, and a Docker daemon that answers. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

APT_PACKAGES=(docker.io docker-registry skopeo podman buildah busybox-static
              apache2-utils jq curl make iproute2 python3-venv file shellcheck
              qemu-user-static)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=900 update -q
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q "${missing[@]}"
fi
# Debian's docker-registry package starts a service on :5000 we do not use;
# tests start their own instances with their own configuration.
if systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi

PY_PACKAGES=(ansible-core molecule ansible-lint)
if [[ ! -x .venv/bin/ansible-playbook || ! -x .venv/bin/molecule ]]; then
  log "creating .venv with ${PY_PACKAGES[*]}"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q "${PY_PACKAGES[@]}"
fi

scripts/ensure-dockerd.sh
# RUN steps of foreign-architecture stages in multi-arch builds.
scripts/ensure-binfmt.sh
