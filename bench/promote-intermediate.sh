#!/usr/bin/env bash
# Promote from the intermediate registry: the gate build's image copied
# whole to its final tag on the public registry, by promote_docker_image
# with method intermediate-registry (the binary, run as Ansible runs it,
# gate build found in zuul.artifacts) and by the anchor, zuul-jobs' way:
# `skopeo copy --all` from the intermediate registry's <build>_<tag> to the
# final tag. Side by side in one run, each run on a fresh target registry
# for each side (so neither profits from the other's blobs); medians of
# BENCH_RUNS runs, with their spread.
#
# Both registries are our server with TLS and the bearer token flow; the
# target listens on port 443 of a loopback address of its own, so image
# names carry no port (as quay.io/org/app does not). The image is 512 MiB
# (8 x 64 MiB layers). Then a second tag of the same image to a target that
# already has every layer: requests counted, only manifests should move.
#
#   BENCH_RUNS=N bench/promote-intermediate.sh     default 3 runs of each
#   SPECULATIVE_IMAGES_BIN=...                     the binary (default: a
#                                                  release build here)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${BENCH_RUNS:-3}
LAYERS=8 LAYER_MIB=64

BIN=${SPECULATIVE_IMAGES_BIN:-}
if [[ -z $BIN ]]; then
  cargo build --release --quiet --bin speculative-images
  BIN=$PWD/target/release/speculative-images
fi

WORK=$(mktemp -d /tmp/bench-promote-intermediate.XXXXXX)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ns() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
spread() { sort -n | awk 'NR==1{lo=$1} {hi=$1} END {printf "%d-%d", lo, hi}'; }

USER_NAME=zuul
PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
HASH=$(htpasswd -nbB "$USER_NAME" "$PASSWORD" | cut -d: -f2)

# A loopback address with port 443 free, for the targets.
TARGET_IP=
for _ in $(seq 50); do
  ip=127.0.0.$((RANDOM % 200 + 30))
  if python3 -c "import socket,sys; s=socket.socket(); s.bind(('$ip',443))" 2>/dev/null; then TARGET_IP=$ip; break; fi
done
[[ -n $TARGET_IP ]] || { echo "no loopback address with port 443 free" >&2; exit 1; }

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:$TARGET_IP" \
  -keyout "$WORK/domain.key" -out "$WORK/domain.crt" 2>/dev/null
mkdir -p "$WORK/certs" && cp "$WORK/domain.crt" "$WORK/certs/ca.crt"

SERVER_PID=
start_server() { # LISTEN NAME: our server on LISTEN, storage and log under NAME
  jq -n --arg listen "$1" --arg cert "$WORK/domain.crt" --arg key "$WORK/domain.key" \
     --arg storage "$WORK/$2" --arg user "$USER_NAME" --arg hash "$HASH" \
     --arg secret "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
     '{listen: [$listen], tls: {cert: $cert, key: $key}, storage: $storage,
       users: [{username: $user, password_bcrypt: $hash}], token_secret: $secret,
       anonymous_pull: false}' >"$WORK/$2.json"
  "$BIN" serve --config "$WORK/$2.json" 2>"$WORK/$2.log" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  local host=${1%:443}
  for _ in $(seq 100); do
    curl -s --cacert "$WORK/domain.crt" "https://$host/v2/" >/dev/null && return
    sleep 0.05
  done
  echo "our server on $1 did not answer" >&2; exit 1
}
stop_server() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; rm -rf "${WORK:?}/${2:?}"; }

INTER_PORT=$(free_port)
INTER=127.0.0.1:$INTER_PORT
start_server "$INTER" intermediate
REPOSITORY=$TARGET_IP/bench/app

# --- the gate build's image in the intermediate registry ------------------
blob() { # FILE MEDIA_TYPE -> descriptor JSON; stores FILE under its digest
  local hex size
  hex=$(sha256sum "$1" | cut -d' ' -f1); size=$(stat -c %s "$1")
  mv "$1" "$LAYOUT/blobs/sha256/$hex"
  printf '{"mediaType":"%s","digest":"sha256:%s","size":%s}' "$2" "$hex" "$size"
}
LAYOUT=$WORK/layout
mkdir -p "$LAYOUT/blobs/sha256"
echo '{"imageLayoutVersion":"1.0.0"}' >"$LAYOUT/oci-layout"
layers=() diff_ids=()
for ((i = 0; i < LAYERS; i++)); do
  head -c $((LAYER_MIB * 1024 * 1024)) /dev/urandom >"$WORK/layer"
  diff_ids+=("\"sha256:$(sha256sum "$WORK/layer" | cut -d' ' -f1)\"")
  layers+=("$(blob "$WORK/layer" application/vnd.oci.image.layer.v1.tar)")
done
printf '{"architecture":"amd64","os":"linux","created":"%s","rootfs":{"type":"layers","diff_ids":[%s]}}' \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(IFS=,; echo "${diff_ids[*]}")" >"$WORK/config"
config=$(blob "$WORK/config" application/vnd.oci.image.config.v1+json)
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":%s,"layers":[%s]}' \
  "$config" "$(IFS=,; echo "${layers[*]}")" >"$WORK/manifest"
manifest=$(blob "$WORK/manifest" application/vnd.oci.image.manifest.v1+json)
printf '{"schemaVersion":2,"manifests":[%s]}' \
  "$(echo "$manifest" | jq -c '. + {annotations: {"org.opencontainers.image.ref.name": "img"}}')" >"$LAYOUT/index.json"
for tag in latest v1; do
  skopeo copy -q --all --preserve-digests --dest-creds "$USER_NAME:$PASSWORD" \
    --dest-cert-dir "$WORK/certs" "oci:$LAYOUT:img" "docker://$INTER/$REPOSITORY:b1_$tag"
done
rm -rf "$LAYOUT"
GATE_DIGEST=$(echo "$manifest" | jq -r .digest)

args() { # TAG -> args file for promote_docker_image, method intermediate-registry
  jq -n --arg repo "$REPOSITORY" --arg registry "$TARGET_IP" --arg tag "$1" \
     --arg inter_host 127.0.0.1 --argjson inter_port "$INTER_PORT" --arg inter "$INTER" \
     --rawfile cert "$WORK/domain.crt" --arg user "$USER_NAME" --arg password "$PASSWORD" \
     '{_ansible_module_name: "speculative.images.promote_docker_image",
       container_images: [{registry: $registry, repository: $repo, tags: [$tag]}],
       container_registry_credentials: {($registry): {username: $user, password: $password}},
       docker_registry_cert: $cert, method: "intermediate-registry",
       intermediate_registry: {host: $inter_host, port: $inter_port, username: $user,
                               password: $password, cert: $cert},
       zuul: {change: "1", patchset: "1", pipeline: "promote",
              artifacts: [{name: ($repo + ":" + $tag), url: ("docker://" + $inter + "/" + $repo + ":b1_" + $tag),
                           metadata: {type: "container_image", repository: $repo, tag: $tag}}]}}' \
     >"$WORK/args-$1.json"
  echo "$WORK/args-$1.json"
}
ours() { # TAG -> ms; checks the gate's digest arrived
  local file start end
  file=$(args "$1")
  start=$(now_ns)
  HOME=$WORK "$BIN" "$file" >"$WORK/out.json"
  end=$(now_ns)
  jq -e --arg d "$GATE_DIGEST" '.failed == false and .promoted[0].digest == $d and .promoted[0].same_as_gate' \
    "$WORK/out.json" >/dev/null || { cat "$WORK/out.json" >&2; exit 1; }
  echo $(( (end - start) / 1000000 ))
}
theirs() { # TAG -> ms
  local start end
  start=$(now_ns)
  skopeo copy -q --all --src-creds "$USER_NAME:$PASSWORD" --dest-creds "$USER_NAME:$PASSWORD" \
    --src-cert-dir "$WORK/certs" --dest-cert-dir "$WORK/certs" \
    "docker://$INTER/$REPOSITORY:b1_$1" "docker://$REPOSITORY:$1"
  end=$(now_ns)
  echo $(( (end - start) / 1000000 ))
}
blob_writes() { grep ' in=' "$WORK/$1.log" | grep -cE 'POST [^ ]*/blobs/uploads|PUT [^ ]*/blobs/|PATCH [^ ]*/blobs/' || true; }
manifest_puts() { grep ' in=' "$WORK/$1.log" | grep -cE 'PUT [^ ]*/manifests/' || true; }
requests() { grep -c ' in=' "$WORK/$1.log" || true; }

echo "promote from the intermediate registry: $((LAYERS * LAYER_MIB)) MiB image, $RUNS runs, a fresh target per side and run"
o_ms=() t_ms=() o_again=() o_blobs=() o_manifests=() o_requests=() t_again=() t_blobs=()
for run in $(seq "$RUNS"); do
  # Ours, then a second tag of the same image (the target has every layer).
  start_server "$TARGET_IP:443" "target-ours-$run"; pid=$SERVER_PID
  o_ms+=("$(ours latest)")
  before=$(requests "target-ours-$run"); before_blobs=$(blob_writes "target-ours-$run"); before_put=$(manifest_puts "target-ours-$run")
  o_again+=("$(ours v1)")
  o_requests+=("$(( $(requests "target-ours-$run") - before ))")
  o_blobs+=("$(( $(blob_writes "target-ours-$run") - before_blobs ))")
  o_manifests+=("$(( $(manifest_puts "target-ours-$run") - before_put ))")
  stop_server "$pid" "target-ours-$run"
  # skopeo, the same two steps.
  start_server "$TARGET_IP:443" "target-skopeo-$run"; pid=$SERVER_PID
  t_ms+=("$(theirs latest)")
  before_blobs=$(blob_writes "target-skopeo-$run")
  t_again+=("$(theirs v1)")
  t_blobs+=("$(( $(blob_writes "target-skopeo-$run") - before_blobs ))")
  stop_server "$pid" "target-skopeo-$run"
done
om=$(printf '%s\n' "${o_ms[@]}" | median); tm=$(printf '%s\n' "${t_ms[@]}" | median)
oa=$(printf '%s\n' "${o_again[@]}" | median); ta=$(printf '%s\n' "${t_again[@]}" | median)
printf 'whole image   promote_docker_image: %6d ms (spread %s)\n' "$om" "$(printf '%s\n' "${o_ms[@]}" | spread)"
printf 'whole image   skopeo copy --all:    %6d ms (spread %s)\n' "$tm" "$(printf '%s\n' "${t_ms[@]}" | spread)"
printf 'whole image   ratio ours/skopeo:    %6.2f (target <= 0.5)\n' "$(awk -v a="$om" -v b="$tm" 'BEGIN{print a/b}')"
printf 'layers there  promote_docker_image: %6d ms (spread %s), %s request(s), %s blob write(s), %s manifest PUT(s)\n' \
  "$oa" "$(printf '%s\n' "${o_again[@]}" | spread)" "$(printf '%s\n' "${o_requests[@]}" | median)" \
  "$(printf '%s\n' "${o_blobs[@]}" | median)" "$(printf '%s\n' "${o_manifests[@]}" | median)"
printf 'layers there  skopeo copy --all:    %6d ms (spread %s), %s blob write(s)\n' \
  "$ta" "$(printf '%s\n' "${t_again[@]}" | spread)" "$(printf '%s\n' "${t_blobs[@]}" | median)"
printf 'layers there  ratio ours/skopeo:    %6.2f\n' "$(awk -v a="$oa" -v b="$ta" 'BEGIN{print a/b}')"
echo "every promote of ours published $GATE_DIGEST, the gate's digest"
