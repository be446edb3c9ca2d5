#!/usr/bin/env bash
# Push and pull times of an 8-layer 512 MiB image (8 x 64 MiB random
# layers) with docker, against our buildset registry and against Debian's
# docker-registry (distribution 2.8, the seed's registry:2), both with TLS
# and a bcrypt user, side by side in one run. Prints the times and the
# ratio ours/distribution (below 1 means ours is faster).
#
#   bench/registry-push-pull.sh            # one round
#   ROUNDS=3 bench/registry-push-pull.sh   # best of three
#
# docker gzips every layer as it pushes, so push times include that CPU
# work on the client side for both registries alike.
#
# Uses the release binary (built if missing). Everything it creates
# (registries, images, certs.d entries, temp dirs) is removed on exit.
set -euo pipefail
source "$(dirname "$0")/lib/distribution.sh"
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-1}
LAYERS=8
LAYER_MIB=64

for tool in docker docker-registry openssl htpasswd curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool (run scripts/setup.sh)" >&2; exit 1; }
done

# The static release binary `make collection` ships (rebuilt when stale).
BIN=${SPECULATIVE_IMAGES_BIN:-}
if [[ -z $BIN ]]; then
  make -s static >&2
  BIN=target/x86_64-unknown-linux-gnu/release/speculative-images
fi

WORK=$(mktemp -d /tmp/registry-bench.XXXXXX)
NAME=bench-registry-$(basename "$WORK" | tr 'A-Z.' 'a-z-')
export DOCKER_CONFIG=$WORK/docker-config
mkdir -p "$DOCKER_CONFIG"
PIDS=()
IMAGES=()
CERTS_DIRS=()

cleanup() {
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  for image in "${IMAGES[@]}"; do docker rmi -f "$image" >/dev/null 2>&1; done
  for dir in "${CERTS_DIRS[@]}"; do rm -rf "$dir"; done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b < a) ? b : a }'; }

# --- TLS: a CA and a server certificate for 127.0.0.1 -----------------------
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=bench CA" \
  -keyout "$WORK/ca.key" -out "$WORK/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$WORK/domain.key" -out "$WORK/domain.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$WORK/ext.cnf"
openssl x509 -req -in "$WORK/domain.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" \
  -CAcreateserial -days 1 -extfile "$WORK/ext.cnf" 2>/dev/null >"$WORK/leaf.crt"
cat "$WORK/leaf.crt" "$WORK/ca.crt" >"$WORK/domain.crt"

BENCH_USER=bench
PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
htpasswd -nbB "$BENCH_USER" "$PASSWORD" >"$WORK/htpasswd"
HASH=$(cut -d: -f2 "$WORK/htpasswd")

trust() {
  local dir=/etc/docker/certs.d/$1
  mkdir -p "$dir"
  cp "$WORK/ca.crt" "$dir/ca.crt"
  CERTS_DIRS+=("$dir")
}

wait_for() {
  for _ in $(seq 100); do
    curl -s --cacert "$WORK/ca.crt" -o /dev/null "https://$1/v2/" && return 0
    sleep 0.1
  done
  echo "registry on $1 did not start" >&2
  exit 1
}

# --- the two registries, fresh for each round (docker remembers which
# registry holds which layer and would mount instead of pushing) ---------
start_registries() {
  local round=$1
  OURS=127.0.0.1:$(free_port)
  cat >"$WORK/ours$round.json" <<EOF
{"listen": ["$OURS"], "tls": {"cert": "$WORK/domain.crt", "key": "$WORK/domain.key"},
 "storage": "$WORK/ours-data$round", "users": [{"username": "$BENCH_USER", "password_bcrypt": "$HASH"}],
 "token_secret": "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')", "anonymous_pull": true}
EOF
  "$BIN" serve --config "$WORK/ours$round.json" >"$WORK/ours$round.log" 2>&1 &
  PIDS+=($!)

  # Debian's docker-registry, configured as the seed does.
  DIST=127.0.0.1:$(free_port)
  distribution_config "$WORK/distribution$round.yml" "$WORK/distribution-data$round" "$DIST" \
    "$WORK/domain.crt" "$WORK/domain.key" "$WORK/htpasswd"
  docker-registry serve "$WORK/distribution$round.yml" >"$WORK/distribution$round.log" 2>&1 &
  PIDS+=($!)

  for registry in "$OURS" "$DIST"; do
    trust "$registry"
    wait_for "$registry"
    echo "$PASSWORD" | docker login --username "$BENCH_USER" --password-stdin "$registry" >/dev/null 2>&1
  done
}

# --- the image: FROM scratch, 8 random layers -----------------------------------
echo "building a ${LAYERS}-layer $((LAYERS * LAYER_MIB)) MiB image" >&2
mkdir -p "$WORK/context"
{
  echo "FROM scratch"
  for i in $(seq "$LAYERS"); do
    head -c $((LAYER_MIB << 20)) /dev/urandom >"$WORK/context/layer$i"
    echo "COPY layer$i /layer$i"
  done
} >"$WORK/context/Dockerfile"
IMAGES+=("$NAME:latest")
docker build -q -t "$NAME:latest" "$WORK/context" >/dev/null 2>&1
rm -f "$WORK/context"/layer*
IMAGE_ID=$(docker image inspect --format '{{.Id}}' "$NAME:latest")
IMAGES+=("$IMAGE_ID")

best_push_ours=""; best_push_dist=""; best_pull_ours=""; best_pull_dist=""
declare -A push_time pull_time
for round in $(seq "$ROUNDS"); do
  start_registries "$round"
  repo=bench/img
  for registry in "$OURS" "$DIST"; do
    docker tag "$NAME:latest" "$registry/$repo:latest"
    IMAGES+=("$registry/$repo:latest")
  done
  # Alternate who goes first, so neither always meets a cold cache.
  if ((round % 2)); then order=("$OURS" "$DIST"); else order=("$DIST" "$OURS"); fi
  for registry in "${order[@]}"; do
    t0=$(now); docker push -q "$registry/$repo:latest" >/dev/null; t1=$(now)
    push_time[$registry]=$(elapsed "$t0" "$t1")
  done
  # Pull with none of the layers present: remove the image, all its tags.
  for registry in "${order[@]}"; do
    docker rmi -f "$IMAGE_ID" >/dev/null 2>&1 || true
    t0=$(now); docker pull -q "$registry/$repo:latest" >/dev/null; t1=$(now)
    pull_time[$registry]=$(elapsed "$t0" "$t1")
  done
  # Keep the image under its own name for the next round.
  docker tag "${order[1]}/$repo:latest" "$NAME:latest"
  docker rmi "${order[1]}/$repo:latest" >/dev/null

  echo "round $round: push ours ${push_time[$OURS]}s distribution ${push_time[$DIST]}s;" \
    "pull ours ${pull_time[$OURS]}s distribution ${pull_time[$DIST]}s" >&2
  best_push_ours=$(min "$best_push_ours" "${push_time[$OURS]}")
  best_push_dist=$(min "$best_push_dist" "${push_time[$DIST]}")
  best_pull_ours=$(min "$best_pull_ours" "${pull_time[$OURS]}")
  best_pull_dist=$(min "$best_pull_dist" "${pull_time[$DIST]}")
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  PIDS=()
done

echo "docker push/pull of a ${LAYERS}-layer $((LAYERS * LAYER_MIB)) MiB image, TLS + auth, best of $ROUNDS"
printf '%-6s %12s %14s %8s\n' "" "ours (s)" "distribution" "ratio"
printf '%-6s %12s %14s %8s\n' push "$best_push_ours" "$best_push_dist" "$(ratio "$best_push_ours" "$best_push_dist")"
printf '%-6s %12s %14s %8s\n' pull "$best_pull_ours" "$best_pull_dist" "$(ratio "$best_pull_ours" "$best_pull_dist")"
