#!/usr/bin/env bash
# Build + push of an 8-layer image to a buildset registry:
# speculative.images.build_docker_image (the module binary, as Ansible runs
# it) against `docker build` + `docker tag` + `docker push` typed by hand,
# side by side in one run. Every run starts cold: the image is removed from
# the daemon (so its layers leave the build cache) and the registry is
# restarted empty. Prints the medians and their ratio.
#
#   bench/build.sh [RUNS]        LAYER_MIB=32 by default
#
# The registry is Debian's docker-registry on 127.0.0.1 over plain HTTP,
# which the docker daemon allows for loopback by default; both sides push
# to the same registry the same way, so TLS would add the same to both.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
LAYER_MIB=${LAYER_MIB:-32}
BIN=${BIN:-}
for candidate in target/x86_64-unknown-linux-gnu/release/speculative-images \
                 target/release/speculative-images target/debug/speculative-images; do
  [[ -z $BIN && -x $candidate ]] && BIN=$PWD/$candidate
done
[[ -n $BIN ]] || { echo "build the binary first (make static or cargo build)" >&2; exit 1; }

work=$(mktemp -d /tmp/bench-build.XXXXXX)
repo=bench-build-$$/app
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
registry_pid=
cleanup() {
  if [[ -n $registry_pid ]]; then kill "$registry_pid" 2>/dev/null; wait "$registry_pid" 2>/dev/null || true; fi
  docker rmi -f "$repo:latest" "$repo:change_1_latest" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# The project: 8 layers of random data and one small one.
mkdir -p "$work/home/src/project"
project=$work/home/src/project
{
  echo "FROM scratch"
  for i in 1 2 3 4 5 6 7 8; do
    head -c $((LAYER_MIB * 1024 * 1024)) /dev/urandom >"$project/layer$i.bin"
    echo "COPY layer$i.bin /data/layer$i.bin"
  done
  cp /bin/busybox "$project/busybox"
  echo "COPY busybox /bin/busybox"
} >"$project/Dockerfile"

start_registry() {
  [[ -n $registry_pid ]] && { kill "$registry_pid"; wait "$registry_pid" 2>/dev/null || true; }
  rm -rf "$work/registry"
  mkdir -p "$work/registry"
  cat >"$work/registry.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: "127.0.0.1:$port"}
YML
  docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
  registry_pid=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && return; sleep 0.05; done
  echo "registry did not start" >&2; exit 1
}

cold() {
  docker rmi -f "$repo:latest" "$repo:change_1_latest" >/dev/null 2>&1 || true
  start_registry
}

cat >"$work/args.json" <<JSON
{"_ansible_module_name": "speculative.images.build_docker_image",
 "docker_images": [{"repository": "$repo", "context": "."}],
 "zuul_work_dir": "$project", "build_log_dir": "$work/logs",
 "zuul": {"change": "1", "pipeline": "gate"},
 "buildset_registry": {"host": "127.0.0.1", "port": $port, "username": "zuul",
                       "password": "unused", "cert": "unused"}}
JSON

now() { date +%s.%N; }
elapsed() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.3f", a - b }'; }
module_run() {
  local t0; t0=$(now)
  HOME=$work/home "$BIN" "$work/args.json" >"$work/module.out"
  grep -q '"failed":false' "$work/module.out" || { cat "$work/module.out" >&2; exit 1; }
  elapsed "$t0"
}
hand_run() {
  local t0; t0=$(now)
  (cd "$project" && docker build -q -t "$repo:latest" -t "$repo:change_1_latest" \
      --label org.zuul-ci.change=1 . >/dev/null 2>&1 \
    && docker tag "$repo:latest" "127.0.0.1:$port/$repo:latest" \
    && docker push -q "127.0.0.1:$port/$repo:latest" >/dev/null \
    && docker rmi "127.0.0.1:$port/$repo:latest" >/dev/null)
  elapsed "$t0"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

ours=() theirs=()
for _ in $(seq "$RUNS"); do
  cold; ours+=("$(module_run)")
  cold; theirs+=("$(hand_run)")
done
m_ours=$(printf '%s\n' "${ours[@]}" | median)
m_theirs=$(printf '%s\n' "${theirs[@]}" | median)
printf 'build+push, 8 layers x %d MiB + busybox, cold, %d runs (median)\n' "$LAYER_MIB" "$RUNS"
printf '  build_docker_image module:        %6.2f s   (runs: %s)\n' "$m_ours" "${ours[*]}"
printf '  docker build + docker push:       %6.2f s   (runs: %s)\n' "$m_theirs" "${theirs[*]}"
printf '  ratio module / by hand:           %6.2f\n' "$(awk -v a="$m_ours" -v b="$m_theirs" 'BEGIN { print a / b }')"
