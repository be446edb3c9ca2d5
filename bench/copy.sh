#!/usr/bin/env bash
# Copy benchmark: an 8-layer image (8 x 64 MiB of random data plus a small
# layer) from an intermediate registry (Debian's docker-registry, TLS +
# htpasswd, a self-signed `openssl req -x509` certificate as sites make)
# to a second such registry, with ours (`speculative-images copy`) and with
# the anchor (`skopeo copy --all`), same credentials and certificate.
#
#   cold: destination emptied (fresh storage, registry restarted) and
#         skopeo's blob-info cache removed before every run
#   warm: every blob and the manifest already at the destination
#
# Prints the median time of each, the ratio ours/skopeo, and the HTTP
# requests each made (counted in both registries' access logs).
#
#   bench/copy.sh [runs]        (default 3 runs of each)
#   SPECULATIVE_IMAGES_BIN=...  the binary to measure (default: a release
#                               build made here)
set -euo pipefail
source "$(dirname "$0")/lib/distribution.sh"
cd "$(dirname "$0")/.."

RUNS=${1:-3}
LAYERS=8
LAYER_MIB=64

BIN=${SPECULATIVE_IMAGES_BIN:-}
if [[ -z $BIN ]]; then
  cargo build --release --quiet --bin speculative-images
  BIN=$PWD/target/release/speculative-images
fi

WORK=$(mktemp -d /tmp/bench-copy.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ns() { date +%s%N; }

# --- TLS and credentials, as a site sets up its intermediate registry -----
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$WORK/domain.key" -out "$WORK/domain.crt" 2>/dev/null
mkdir -p "$WORK/certs"
cp "$WORK/domain.crt" "$WORK/certs/ca.crt"
REG_USER=zuul
REG_PASS=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
htpasswd -Bbn "$REG_USER" "$REG_PASS" > "$WORK/htpasswd"

# start_registry NAME PORT: a docker-registry with fresh storage; its access
# log (one line per request) in $WORK/NAME.access.log, appended across restarts.
declare -A REG_PID
start_registry() {
  local name=$1 port=$2
  rm -rf "${WORK:?}/$name.data"
  distribution_config "$WORK/$name.yml" "$WORK/$name.data" "127.0.0.1:$port" \
    "$WORK/domain.crt" "$WORK/domain.key" "$WORK/htpasswd"
  docker-registry serve "$WORK/$name.yml" >> "$WORK/$name.access.log" 2>> "$WORK/$name.log" &
  REG_PID[$name]=$!
  PIDS+=("$!")
  for _ in $(seq 100); do
    if curl -s -o /dev/null --cacert "$WORK/domain.crt" "https://127.0.0.1:$port/v2/"; then return; fi
    sleep 0.05
  done
  echo "registry $name did not start" >&2; cat "$WORK/$name.log" >&2; exit 1
}
stop_registry() {
  local pid=${REG_PID[$1]}
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
requests() { cat "$WORK"/src.access.log "$WORK"/dst.access.log 2>/dev/null | wc -l; }

SRC_PORT=$(free_port)
DST_PORT=$(free_port)
start_registry src "$SRC_PORT"
start_registry dst "$DST_PORT"
SRC=127.0.0.1:$SRC_PORT
DST=127.0.0.1:$DST_PORT

# --- the image: an OCI layout pushed to the source with skopeo ------------
echo "making the image: $LAYERS x $LAYER_MIB MiB random layers + 1 small layer"
LAYOUT=$WORK/layout
mkdir -p "$LAYOUT/blobs/sha256"
add_blob() { # file -> prints "digest size", moves the file into the layout
  local d s
  d=$(sha256sum "$1" | cut -d' ' -f1)
  s=$(stat -c %s "$1")
  mv "$1" "$LAYOUT/blobs/sha256/$d"
  echo "$d $s"
}
layers_json=""
diff_ids=""
for i in $(seq $((LAYERS + 1))); do
  if ((i <= LAYERS)); then
    head -c $((LAYER_MIB << 20)) /dev/urandom > "$WORK/layer"
  else
    echo "small layer" > "$WORK/layer"
  fi
  read -r d s < <(add_blob "$WORK/layer")
  layers_json+="${layers_json:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"sha256:$d\",\"size\":$s}"
  diff_ids+="${diff_ids:+,}\"sha256:$d\""
done
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[%s]},"config":{}}' "$diff_ids" > "$WORK/config"
read -r cd cs < <(add_blob "$WORK/config")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' "$cd" "$cs" "$layers_json" > "$WORK/manifest"
read -r md ms < <(add_blob "$WORK/manifest")
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"bench"}}]}' "$md" "$ms" > "$LAYOUT/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' > "$LAYOUT/oci-layout"
skopeo copy -q --dest-creds "$REG_USER:$REG_PASS" --dest-cert-dir "$WORK/certs" \
  "oci:$LAYOUT:bench" "docker://$SRC/bench/img:1"
rm -rf "$LAYOUT"
# skopeo compresses the layers on the way in: take the digest the source has.
manifest_digest() { # registry -> digest of bench/img:1 there
  curl -s -I --cacert "$WORK/domain.crt" -u "$REG_USER:$REG_PASS" \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "https://$1/v2/bench/img/manifests/1" | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}'
}
IMAGE_DIGEST=$(manifest_digest "$SRC")

# --- the two copiers -------------------------------------------------------
ours() {
  ${BENCH_WRAP:-} "$BIN" copy --src-creds "$REG_USER:$REG_PASS" --dest-creds "$REG_USER:$REG_PASS" \
    --src-cert "$WORK/domain.crt" --dest-cert "$WORK/domain.crt" \
    "docker://$SRC/bench/img:1" "docker://$DST/bench/img:1" > "$WORK/ours.json" 2>/dev/null
}
skopeo_copy() {
  skopeo copy -q --all --src-creds "$REG_USER:$REG_PASS" --dest-creds "$REG_USER:$REG_PASS" \
    --src-cert-dir "$WORK/certs" --dest-cert-dir "$WORK/certs" \
    "docker://$SRC/bench/img:1" "docker://$DST/bench/img:1" > /dev/null
}
skopeo_cache_clear() {
  rm -f /var/lib/containers/cache/blob-info-cache-v1.* "$HOME"/.local/share/containers/cache/blob-info-cache-v1.* 2>/dev/null || true
}
check_destination() {
  local got
  got=$(manifest_digest "$DST")
  [[ $got == "$IMAGE_DIGEST" ]] || { echo "destination has $got, expected $IMAGE_DIGEST" >&2; exit 1; }
}

# measure TOOL MODE: one run; sets RUN_MS and RUN_REQUESTS. (Not run in a
# subshell: it restarts the destination registry, whose pid must be known
# to the cleanup.)
measure() {
  local tool=$1 mode=$2 t0 t1 r0 r1
  if [[ $mode == cold ]]; then
    stop_registry dst
    start_registry dst "$DST_PORT"
    skopeo_cache_clear
  fi
  r0=$(requests)
  t0=$(now_ns)
  local c0 c1 g0 g1 me=$BASHPID
  c0=$(children_cpu_ms "$me")
  g0=$(registries_cpu_ms)
  "$tool"
  c1=$(children_cpu_ms "$me")
  g1=$(registries_cpu_ms)
  t1=$(now_ns)
  echo "$tool $mode cpu $((c1 - c0)) ms, registries $((g1 - g0)) ms" >> "$WORK/cpu.log"
  sleep 0.2 # let the registries flush their access logs
  r1=$(requests)
  check_destination # (its request is not counted: r1 is taken before)
  RUN_MS=$(((t1 - t0) / 1000000))
  RUN_REQUESTS=$((r1 - r0))
}

# CPU time (user + sys, ms) of this shell's finished children.
children_cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{ print int(($16 + $17) * 1000 / hz) }' "/proc/$1/stat"; }

# CPU time (user + sys, ms) the two registries used so far.
registries_cpu_ms() {
  cat "/proc/${REG_PID[src]}/stat" "/proc/${REG_PID[dst]}/stat" |
    awk -v hz="$(getconf CLK_TCK)" '{ t += $14 + $15 } END { print int(t * 1000 / hz) }'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Runs alternate between the two tools, so a change in the machine's load
# weighs on both alike.
declare -A MS REQ
for mode in cold warm; do
  : > "$WORK/times.ours" ; : > "$WORK/times.skopeo_copy"
  if [[ $mode == warm ]]; then
    # Warm: the image is at the destination (the last cold run left it).
    ours
  fi
  for _ in $(seq "$RUNS"); do
    for tool in ours skopeo_copy; do
      measure "$tool" "$mode"
      echo "$RUN_MS" >> "$WORK/times.$tool"
      REQ[$tool.$mode]=$RUN_REQUESTS
    done
  done
  for tool in ours skopeo_copy; do
    MS[$tool.$mode]=$(median < "$WORK/times.$tool")
  done
done

[[ -n ${BENCH_CPU:-} ]] && cat "$WORK/cpu.log"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo
echo "copy of $LAYERS x $LAYER_MIB MiB + 1 small layer, distribution (TLS + htpasswd) -> distribution, median of $RUNS"
for mode in cold warm; do
  o=${MS[ours.$mode]} s=${MS[skopeo_copy.$mode]}
  printf '%-4s  ours %5d ms %3d requests | skopeo %5d ms %3d requests | time ratio ours/skopeo %s\n' \
    "$mode" "$o" "${REQ[ours.$mode]}" "$s" "${REQ[skopeo_copy.$mode]}" "$(ratio "$o" "$s")"
done
