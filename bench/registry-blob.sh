#!/usr/bin/env bash
# A 1 GiB blob pushed and pulled with curl (TLS, HTTP/1.1 and HTTP/2)
# against ours, Debian's docker-registry, zuul-registry and plain nginx, peak
# RSS of each, then a load run (wrk, ab) of manifest GET and blob HEAD against ours
# and docker-registry: see bench/lib/registry_blob.py for what is timed.
#
#   bench/registry-blob.sh                 # 3 rounds, medians and spread
#   BENCH_RUNS=5 BLOB_MIB=256 bench/registry-blob.sh
#
# Installs what it compares against when missing: nginx and wrk (Debian),
# zuul-registry (PyPI, into a venv cached under /var/cache/speculative-bench).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pkg in nginx wrk docker-registry apache2-utils curl openssl; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "installing ${missing[*]}" >&2
  apt-get -o DPkg::Lock::Timeout=900 update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q "${missing[@]}" >&2
fi
# Debian starts the services it installs; the bench starts its own.
for service in nginx docker-registry; do
  if pgrep -x "$service" >/dev/null && command -v service >/dev/null; then
    service "$service" stop >/dev/null 2>&1 || true
  fi
done

ZUUL_REGISTRY_VENV=${ZUUL_REGISTRY_VENV:-/var/cache/speculative-bench/zuul-registry}
if [[ ! -x $ZUUL_REGISTRY_VENV/bin/zuul-registry ]]; then
  echo "installing zuul-registry into $ZUUL_REGISTRY_VENV" >&2
  python3 -m venv "$ZUUL_REGISTRY_VENV"
  "$ZUUL_REGISTRY_VENV/bin/pip" install -q zuul-registry >&2
fi
export ZUUL_REGISTRY_VENV

BIN=${SPECULATIVE_IMAGES_BIN:-}
if [[ -z $BIN ]]; then
  make -s static >&2
  BIN=target/x86_64-unknown-linux-gnu/release/speculative-images
fi
exec python3 bench/lib/registry_blob.py "$BIN"
