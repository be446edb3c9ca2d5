#!/usr/bin/env bash
# Promote benchmark: moving final tags onto an uploaded image, with the
# promote_docker_image module (the binary, run as Ansible runs it) and with
# the anchor, `skopeo copy --all` from the temporary tag to the final tag
# of the same repository, side by side on one registry: our registry
# server with TLS and the bearer token flow (standing in for Docker Hub).
#
# Two images: 5 MiB (one layer) and 512 MiB (8 x 64 MiB); the cost should
# not depend on the size, since only the manifest moves. Each run promotes
# TAGS tags; the temporary tags are re-created (untimed) before each run of
# ours, since the module deletes them. Requests are counted in the
# registry's request log (token requests included).
#
#   bench/promote.sh [RUNS]      default 5 runs of each
#   BENCH_TAGS="latest"          the tags each run promotes (default
#                                "latest v1 v2 v3")
#   SPECULATIVE_IMAGES_BIN=...   the binary to measure (default: a release
#                                build here)
#   BENCH_KEEP_LOG=FILE          keep the registry's request log there
#   BENCH_TRACE=FILE             also run ours once more per image under
#                                strace -f -tt (untimed), into FILE.<name>,
#                                to see where its time goes
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
read -ra TAGS <<<"${BENCH_TAGS:-latest v1 v2 v3}"
TRACE=()

BIN=${SPECULATIVE_IMAGES_BIN:-}
if [[ -z $BIN ]]; then
  cargo build --release --quiet --bin speculative-images
  BIN=$PWD/target/release/speculative-images
fi

WORK=$(mktemp -d /tmp/bench-promote.XXXXXX)
SERVER_PID=
cleanup() {
  if [[ -n ${BENCH_KEEP_LOG:-} && -f $WORK/registry.log ]]; then cp "$WORK/registry.log" "$BENCH_KEEP_LOG"; fi
  if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ns() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# --- the registry: our server, TLS, one user, tokens ----------------------
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$WORK/domain.key" -out "$WORK/domain.crt" 2>/dev/null
mkdir -p "$WORK/certs" && cp "$WORK/domain.crt" "$WORK/certs/ca.crt"
USER_NAME=zuul
PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
HASH=$(htpasswd -nbB "$USER_NAME" "$PASSWORD" | cut -d: -f2)
PORT=$(free_port)
REGISTRY=127.0.0.1:$PORT
jq -n --arg listen "$REGISTRY" --arg cert "$WORK/domain.crt" --arg key "$WORK/domain.key" \
   --arg storage "$WORK/storage" --arg user "$USER_NAME" --arg hash "$HASH" \
   --arg secret "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
   '{listen: [$listen], tls: {cert: $cert, key: $key}, storage: $storage,
     users: [{username: $user, password_bcrypt: $hash}], token_secret: $secret,
     anonymous_pull: false}' >"$WORK/registry.json"
"$BIN" serve --config "$WORK/registry.json" 2>"$WORK/registry.log" &
SERVER_PID=$!
for _ in $(seq 100); do
  curl -s --cacert "$WORK/domain.crt" "https://$REGISTRY/v2/" >/dev/null && break
  sleep 0.05
done
requests() { grep -c ' in=' "$WORK/registry.log" || true; }
# Deletes, and the token requests made for them (a token fetched right
# before a DELETE): what "plus deletes" covers.
deletes() {
  grep ' in=' "$WORK/registry.log" | awk '
    / GET \/auth\/token / { token = 1; next }
    / DELETE / { n += 1 + token }
    { token = 0 }
    END { print n + 0 }'
}
manifest_requests() { grep ' in=' "$WORK/registry.log" | grep -v ' DELETE ' | grep -c '/manifests/' || true; }
# wire_ms FIRST: ms from the first to the last request logged after line FIRST
wire_ms() {
  grep ' in=' "$WORK/registry.log" | tail -n +"$(($1 + 1))" | python3 -c '
import sys, datetime
t = [datetime.datetime.fromisoformat(l.split()[0].replace("Z", "+00:00")) for l in sys.stdin]
print(round((t[-1] - t[0]).total_seconds() * 1000) if t else 0)'
}
CREDS=(--src-creds "$USER_NAME:$PASSWORD" --dest-creds "$USER_NAME:$PASSWORD"
       --src-cert-dir "$WORK/certs" --dest-cert-dir "$WORK/certs")

# --- images: OCI layouts written by hand, pushed with skopeo ---------------
blob() { # FILE MEDIA_TYPE -> descriptor JSON; stores FILE under its digest
  local hex size
  hex=$(sha256sum "$1" | cut -d' ' -f1); size=$(stat -c %s "$1")
  mv "$1" "$LAYOUT/blobs/sha256/$hex"
  printf '{"mediaType":"%s","digest":"sha256:%s","size":%s}' "$2" "$hex" "$size"
}
make_image() { # NAME LAYERS LAYER_MIB
  LAYOUT=$WORK/layout-$1
  mkdir -p "$LAYOUT/blobs/sha256"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$LAYOUT/oci-layout"
  local layers=() diff_ids=() i
  for ((i = 0; i < $2; i++)); do
    head -c $(($3 * 1024 * 1024)) /dev/urandom >"$WORK/layer"
    diff_ids+=("\"sha256:$(sha256sum "$WORK/layer" | cut -d' ' -f1)\"")
    layers+=("$(blob "$WORK/layer" application/vnd.oci.image.layer.v1.tar)")
  done
  printf '{"architecture":"amd64","os":"linux","created":"%s","rootfs":{"type":"layers","diff_ids":[%s]}}' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(IFS=,; echo "${diff_ids[*]}")" >"$WORK/config"
  local config; config=$(blob "$WORK/config" application/vnd.oci.image.config.v1+json)
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":%s,"layers":[%s]}' \
    "$config" "$(IFS=,; echo "${layers[*]}")" >"$WORK/manifest"
  local manifest; manifest=$(blob "$WORK/manifest" application/vnd.oci.image.manifest.v1+json)
  printf '{"schemaVersion":2,"manifests":[%s]}' \
    "$(echo "$manifest" | jq -c '. + {annotations: {"org.opencontainers.image.ref.name": "img"}}')" \
    >"$LAYOUT/index.json"
  skopeo copy -q --all --preserve-digests --dest-creds "$USER_NAME:$PASSWORD" \
    --dest-cert-dir "$WORK/certs" "oci:$LAYOUT:img" "docker://$REGISTRY/bench/$1:base"
  rm -rf "$LAYOUT"
}

temporary_tags() { # NAME: (re)create change_1_<tag> for every tag, untimed
  local tag
  for tag in "${TAGS[@]}"; do
    skopeo copy -q --all "${CREDS[@]}" "docker://$REGISTRY/bench/$1:base" \
      "docker://$REGISTRY/bench/$1:change_1_$tag"
  done
}

ours() { # NAME -> "ms requests wire_ms deletes manifest_requests"
  local args=$WORK/args.json start end before before_deletes before_manifests
  jq -n --arg repo "bench/$1" --arg registry "$REGISTRY" --rawfile cert "$WORK/domain.crt" \
     --arg user "$USER_NAME" --arg password "$PASSWORD" --argjson tags "$(printf '%s\n' "${TAGS[@]}" | jq -R . | jq -s .)" \
     '{_ansible_module_name: "speculative.images.promote_docker_image",
       docker_images: [{repository: $repo, tags: $tags}],
       docker_registry: $registry, docker_registry_cert: $cert,
       docker_credentials: {username: $user, password: $password},
       zuul: {change: "1", pipeline: "promote"}}' >"$args"
  before=$(requests); before_deletes=$(deletes); before_manifests=$(manifest_requests)
  start=$(now_ns)
  HOME=$WORK "${TRACE[@]}" "$BIN" "$args" >"$WORK/out.json"
  end=$(now_ns)
  jq -e '.failed == false' "$WORK/out.json" >/dev/null || { cat "$WORK/out.json" >&2; exit 1; }
  echo "$(( (end - start) / 1000000 )) $(( $(requests) - before )) $(wire_ms "$before") \
    $(( $(deletes) - before_deletes )) $(( $(manifest_requests) - before_manifests ))"
}

theirs() { # NAME -> "ms requests wire_ms"
  local start end before tag
  before=$(requests); start=$(now_ns)
  for tag in "${TAGS[@]}"; do
    skopeo copy -q --all "${CREDS[@]}" "docker://$REGISTRY/bench/$1:change_1_$tag" \
      "docker://$REGISTRY/bench/$1:$tag"
  done
  end=$(now_ns)
  echo "$(( (end - start) / 1000000 )) $(( $(requests) - before )) $(wire_ms "$before")"
}

echo "promote: ${#TAGS[@]} tags per run, $RUNS runs, medians; registry: ours, TLS + bearer tokens"
for spec in "small 1 5" "big 8 64"; do
  read -r name layers mib <<<"$spec"
  make_image "$name" "$layers" "$mib"
  o_ms=() o_req=() o_wire=() o_del=() o_man=() t_ms=() t_req=() t_wire=()
  for _ in $(seq "$RUNS"); do
    temporary_tags "$name"
    read -r ms req wire del man <<<"$(ours "$name")"
    o_ms+=("$ms"); o_req+=("$req"); o_wire+=("$wire"); o_del+=("$del"); o_man+=("$man")
    temporary_tags "$name"
    read -r ms req wire <<<"$(theirs "$name")"; t_ms+=("$ms"); t_req+=("$req"); t_wire+=("$wire")
  done
  if [[ -n ${BENCH_TRACE:-} ]]; then
    temporary_tags "$name"
    TRACE=(strace -f -tt -o "$BENCH_TRACE.$name")
    ours "$name" >/dev/null
    TRACE=()
  fi
  om=$(printf '%s\n' "${o_ms[@]}" | median); orq=$(printf '%s\n' "${o_req[@]}" | median)
  tm=$(printf '%s\n' "${t_ms[@]}" | median); trq=$(printf '%s\n' "${t_req[@]}" | median)
  odel=$(printf '%s\n' "${o_del[@]}" | median); oman=$(printf '%s\n' "${o_man[@]}" | median)
  ow=$(printf '%s\n' "${o_wire[@]}" | median); tw=$(printf '%s\n' "${t_wire[@]}" | median)
  n=${#TAGS[@]}
  printf '%-5s %3d MiB  promote_docker_image: %5d ms (%5.1f ms/tag, %4.1f requests/tag incl. auth, deletes, tag list)\n' \
    "$name" $((layers * mib)) "$om" "$(awk -v a="$om" -v n="$n" 'BEGIN{print a/n}')" "$(awk -v a="$orq" -v n="$n" 'BEGIN{print a/n}')"
  printf '%-5s %3d MiB  promote_docker_image: %4.1f manifest requests/tag + %d shared (ping, tokens, tag list) + %d for deletes (with their token); (all but deletes)/tag %4.2f (target <= 4)\n' \
    "$name" $((layers * mib)) "$(awk -v a="$oman" -v n="$n" 'BEGIN{print a/n}')" $((orq - oman - odel)) "$odel" \
    "$(awk -v a="$orq" -v d="$odel" -v n="$n" 'BEGIN{print (a-d)/n}')"
  printf '%-5s %3d MiB  skopeo copy --all:    %5d ms (%5.1f ms/tag, %4.1f requests/tag)\n' \
    "$name" $((layers * mib)) "$tm" "$(awk -v a="$tm" -v n="$n" 'BEGIN{print a/n}')" "$(awk -v a="$trq" -v n="$n" 'BEGIN{print a/n}')"
  printf '%-5s %3d MiB  on the wire (first to last request, registry clock): ours %d ms (%.1f ms/tag), skopeo %d ms (%.1f ms/tag)\n' \
    "$name" $((layers * mib)) "$ow" "$(awk -v a="$ow" -v n="$n" 'BEGIN{print a/n}')" "$tw" "$(awk -v a="$tw" -v n="$n" 'BEGIN{print a/n}')"
  printf '%-5s %3d MiB  ratio ours/skopeo:    %5.2f (wall), %5.2f (wire)\n' "$name" $((layers * mib)) \
    "$(awk -v a="$om" -v b="$tm" 'BEGIN{print a/b}')" "$(awk -v a="$ow" -v b="$tw" 'BEGIN{print (b ? a/b : 0)}')"
done
