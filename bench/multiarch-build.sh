#!/usr/bin/env bash
# Multi-arch build and publish of a two-platform image (linux/amd64 +
# linux/arm64) to a buildset registry, with each builder: the
# build_docker_image module (the binary, run as Ansible runs it, `arch`
# set, two tags) against the same done by hand, side by side in one run:
#
#   podman, buildah: `<tool> build --platform linux/amd64,linux/arm64
#     --manifest L`, `<tool> manifest push --all L oci:DIR` (skopeo 1.9 cannot
#     read a manifest list from containers-storage), then `skopeo copy --all`
#     of the layout to both tags of the registry.
#   docker: one `docker build --platform X` per platform (the daemon's
#     BuildKit, as the module does), `docker push` of each, `docker manifest
#     create` + `docker manifest push` of the list, `skopeo copy --all` to
#     the second tag.
#
# The registry is our server (`serve`) with TLS and bearer tokens, started
# empty before every run; every run starts with nothing of the image left
# locally and the build cache of the context unused (a fresh build-id file
# per run), so each side builds both platforms and pushes every blob.
#
#   BENCH_RUNS=3 bench/multiarch-build.sh     default 3 runs of each side
#   SPECULATIVE_IMAGES_BIN=...                the binary (default: a release build)
#   LAYER_MIB=8                               size of the random layer
#   BENCH_TOOLS="docker podman buildah"       the builders measured
#   BENCH_KEEP_LOGS=DIR                       keep the module's build logs there
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
RUNS=${BENCH_RUNS:-3}
case $RUNS in '' | *[!0-9]* | 0) echo "BENCH_RUNS must be a positive number, not '$RUNS'" >&2; exit 2 ;; esac
LAYER_MIB=${LAYER_MIB:-8}
read -r -a TOOLS <<<"${BENCH_TOOLS:-docker podman buildah}"

BIN=${SPECULATIVE_IMAGES_BIN:-}
if [[ -z $BIN ]]; then
  cargo build --release --quiet --bin speculative-images
  BIN=$PWD/target/release/speculative-images
fi
# The docker CLI that drives the daemon's BuildKit without buildx (the
# module finds the same one on PATH).
DOCKER_BK=
for d in $(type -ap docker); do
  if "$d" buildx version >/dev/null 2>&1; then DOCKER_BK=$d; break; fi
  v=$("$d" version --format '{{.Client.Version}}' 2>/dev/null || true)
  if [[ ${v%%.*} =~ ^[0-9]+$ ]] && ((${v%%.*} < 23)); then DOCKER_BK=$d; break; fi
done
[[ -n $DOCKER_BK ]] || { echo "no docker CLI on PATH drives BuildKit" >&2; exit 1; }

WORK=$(mktemp -d /tmp/bench-multiarch.XXXXXX)
PREFIX=bench-multiarch-$$
BENCH_LABEL=speculative-bench=$PREFIX
SERVER_PID=
REGISTRY=
cleanup() {
  if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  [[ -n $REGISTRY ]] && rm -rf "/etc/docker/certs.d/$REGISTRY"
  if [[ -n ${BENCH_KEEP_LOGS:-} && -d $WORK/logs ]]; then mkdir -p "$BENCH_KEEP_LOGS" && cp -r "$WORK/logs/." "$BENCH_KEEP_LOGS/"; fi
  local_cleanup
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ns() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
spread() { sort -n | awk '{a[NR]=$1} END {printf "%s-%s", a[1], a[NR]}'; }

# --- the registry: our server, TLS, one user, tokens ----------------------
# On the host's own address, not loopback: the docker CLI talks plain HTTP
# to loopback registries (`docker manifest` failed so), as a node's
# buildset registry is not on loopback either.
HOST_IP=$(hostname -I | awk '{print $1}')
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:$HOST_IP" \
  -keyout "$WORK/domain.key" -out "$WORK/domain.crt" 2>/dev/null
mkdir -p "$WORK/certs" && cp "$WORK/domain.crt" "$WORK/certs/ca.crt"
USER_NAME=zuul
PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
HASH=$(htpasswd -nbB "$USER_NAME" "$PASSWORD" | cut -d: -f2)
PORT=$(free_port)
REGISTRY=$HOST_IP:$PORT
# The docker daemon and CLI trust it through certs.d, as use_buildset_registry sets up.
mkdir -p "/etc/docker/certs.d/$REGISTRY" && cp "$WORK/domain.crt" "/etc/docker/certs.d/$REGISTRY/ca.crt"
jq -n --arg listen "$REGISTRY" --arg cert "$WORK/domain.crt" --arg key "$WORK/domain.key" \
   --arg storage "$WORK/storage" --arg user "$USER_NAME" --arg hash "$HASH" \
   --arg secret "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
   '{listen: [$listen], tls: {cert: $cert, key: $key}, storage: $storage,
     users: [{username: $user, password_bcrypt: $hash}], token_secret: $secret,
     anonymous_pull: false}' >"$WORK/registry.json"
start_registry() {
  if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK/storage"
  "$BIN" serve --config "$WORK/registry.json" 2>>"$WORK/registry.log" &
  SERVER_PID=$!
  for _ in $(seq 100); do
    curl -s --cacert "$WORK/domain.crt" "https://$REGISTRY/v2/" >/dev/null && return
    sleep 0.05
  done
  echo "the registry did not start" >&2; exit 1
}
export DOCKER_CONFIG=$WORK/docker-config
mkdir -p "$DOCKER_CONFIG" && echo '{}' >"$DOCKER_CONFIG/config.json"
login_docker() { echo "$PASSWORD" | "$DOCKER_BK" login -u "$USER_NAME" --password-stdin "$REGISTRY" >/dev/null 2>&1; }

# --- the project: a random layer, a static busybox ------------------------
PROJECT=$WORK/home/src/project
mkdir -p "$PROJECT"
head -c $((LAYER_MIB * 1024 * 1024)) /dev/urandom >"$PROJECT/data.bin"
cp /bin/busybox "$PROJECT/busybox"
printf 'FROM scratch\nCOPY build-id /build-id\nCOPY data.bin /data.bin\nCOPY busybox /bin/busybox\n' \
  >"$PROJECT/Containerfile"
fresh_context() { head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$PROJECT/build-id"; }

local_cleanup() {
  local names tool n
  names=$(docker images --format '{{.Repository}}:{{.Tag}}' | grep "$PREFIX" || true)
  [[ -n $names ]] && echo "$names" | xargs docker rmi -f >/dev/null 2>&1
  for tool in podman buildah; do
    names=$("$tool" images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null | grep "$PREFIX" || true)
    for n in $names; do
      "$tool" manifest rm "$n" >/dev/null 2>&1 || "$tool" rmi -f "$n" >/dev/null 2>&1 || true
    done
  done
  # The per-platform images of the manifest lists have no name: both sides
  # label them.
  names=$(podman images -q --filter "label=$BENCH_LABEL" 2>/dev/null || true)
  [[ -n $names ]] && echo "$names" | xargs podman rmi -f >/dev/null 2>&1
  rm -rf "$WORK/layout"
  return 0
}

cold() { local_cleanup; fresh_context; start_registry; }

ours() { # TOOL -> ms
  local tool=$1 start end
  jq -n --arg repo "$PREFIX/$tool" --arg project "$PROJECT" --arg logs "$WORK/logs" --arg host "$HOST_IP" \
     --arg tool "$tool" --arg port "$PORT" --arg user "$USER_NAME" --arg password "$PASSWORD" \
     --rawfile cert "$WORK/domain.crt" --arg bench_label "$BENCH_LABEL" \
     '{_ansible_module_name: "speculative.images.build_docker_image",
       container_images: [{repository: $repo, context: ".", tags: ["latest", "v1"],
                           arch: ["linux/amd64", "linux/arm64"], labels: [$bench_label]}],
       family: "container", container_command: $tool,
       zuul_work_dir: $project, build_log_dir: $logs, zuul: {change: "1", pipeline: "gate"},
       buildset_registry: {host: $host, port: ($port | tonumber), username: $user,
                           password: $password, cert: $cert}}' >"$WORK/args.json"
  start=$(now_ns)
  HOME=$WORK/home "$BIN" "$WORK/args.json" >"$WORK/out.json"
  end=$(now_ns)
  jq -e '.failed == false' "$WORK/out.json" >/dev/null || { cat "$WORK/out.json" >&2; exit 1; }
  jq -r '.images[0].index.digest' "$WORK/out.json" >"$WORK/digest-ours"
  echo $(( (end - start) / 1000000 ))
}

theirs() { # TOOL -> ms
  local tool=$1 start end p
  local repo=$REGISTRY/$PREFIX/$tool local=$PREFIX/$tool
  local creds=(--dest-creds "$USER_NAME:$PASSWORD" --dest-cert-dir "$WORK/certs")
  start=$(now_ns)
  (
    cd "$PROJECT"
    case $tool in
      podman | buildah)
        "$tool" build -q --platform linux/amd64,linux/arm64 --manifest "$local:latest" \
          --layers=false --label org.zuul-ci.change=1 --label "$BENCH_LABEL" -f Containerfile . >/dev/null
        "$tool" manifest push -q --all "$local:latest" "oci:$WORK/layout:latest" >/dev/null
        skopeo copy -q --all "${creds[@]}" "oci:$WORK/layout:latest" "docker://$repo:latest"
        skopeo copy -q --all "${creds[@]}" --src-creds "$USER_NAME:$PASSWORD" \
          --src-cert-dir "$WORK/certs" "docker://$repo:latest" "docker://$repo:v1"
        ;;
      docker)
        login_docker
        for p in amd64 arm64; do
          DOCKER_BUILDKIT=1 "$DOCKER_BK" build -q --platform "linux/$p" -t "$repo:latest-linux-$p" \
            --label org.zuul-ci.change=1 --label "$BENCH_LABEL" -f Containerfile . >/dev/null
          "$DOCKER_BK" push -q "$repo:latest-linux-$p" >/dev/null
        done
        "$DOCKER_BK" manifest create "$repo:latest" "$repo:latest-linux-amd64" "$repo:latest-linux-arm64" >/dev/null
        "$DOCKER_BK" manifest push --purge "$repo:latest" >/dev/null
        skopeo copy -q --all "${creds[@]}" --src-creds "$USER_NAME:$PASSWORD" \
          --src-cert-dir "$WORK/certs" "docker://$repo:latest" "docker://$repo:v1"
        ;;
    esac
  )
  end=$(now_ns)
  echo $(( (end - start) / 1000000 ))
}

printf 'multi-arch build + publish (linux/amd64 + linux/arm64, FROM scratch, %d MiB layer + busybox, 2 tags),\n' "$LAYER_MIB"
printf 'cold (fresh context, empty registry: ours with TLS + tokens), %d runs of each side, median (spread) in ms\n' "$RUNS"
for tool in "${TOOLS[@]}"; do
  o=() t=()
  for _ in $(seq "$RUNS"); do
    cold; o+=("$(ours "$tool")")
    cold; t+=("$(theirs "$tool")")
  done
  om=$(printf '%s\n' "${o[@]}" | median); tm=$(printf '%s\n' "${t[@]}" | median)
  printf '  %-7s build_docker_image (arch):        %6d ms  (%s)\n' "$tool" "$om" "$(printf '%s\n' "${o[@]}" | spread)"
  printf '  %-7s by hand + skopeo copy --all:      %6d ms  (%s)\n' "$tool" "$tm" "$(printf '%s\n' "${t[@]}" | spread)"
  printf '  %-7s ratio ours / by hand:             %6.2f\n' "$tool" "$(awk -v a="$om" -v b="$tm" 'BEGIN { print a / b }')"
done
