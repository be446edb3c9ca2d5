#!/usr/bin/env bash
# Lazy pull benchmark (issue 13): the time of the pull step
# (pull_from_intermediate_registry bringing an image of a change ahead
# into a fresh buildset registry) and the time from the start of that
# step until a consumer's `docker pull` of the image through the
# buildset registry has finished, for three ways of pulling:
#
#   lazy    pull_from_intermediate_registry, lazy: auto (manifests and
#           configs copied, layers fetched by the buildset registry when
#           docker asks; prefetch off, so docker's pull is what fetches)
#   full    the same module with lazy: off (every byte copied first)
#   skopeo  `skopeo copy --all` (zuul-jobs' way), then the same docker pull
#
# The intermediate registry is our server in site mode (TLS, htpasswd,
# delegated pull-only tokens); each run gets a fresh buildset registry
# and docker forgets the image. Images of 64 MiB, 512 MiB and 2 GiB
# (4 layers of random data each, uncompressed tar). Prints per size and
# way the median of the runs with min-max, and the ratios lazy/full and
# lazy/skopeo of the time until docker's pull finished (targets: at most
# 0.6 and 0.5; pull step under 100 ms at every size).
#
#   bench/lazy-pull.sh [runs]           (default 3)
#   SIZES_MIB="64 512" bench/lazy-pull.sh 1
#   SPECULATIVE_IMAGES_BIN=...          the binary (default: a release build)
#   KEEP_WORK=1                         keep the work directory (the registries' logs)
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${1:-3}
SIZES_MIB=${SIZES_MIB:-64 512 2048}
LAYERS=4

for tool in docker skopeo openssl htpasswd curl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (run scripts/setup.sh)" >&2; exit 1; }
done
BIN=${SPECULATIVE_IMAGES_BIN:-}
if [[ -z $BIN ]]; then
  cargo build --release --quiet --bin speculative-images
  BIN=$PWD/target/release/speculative-images
fi

WORK=$(mktemp -d /tmp/bench-lazy.XXXXXX)
PIDS=()
CERTS_D=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for d in "${CERTS_D[@]}"; do rm -rf "$d"; done
  docker rmi -f $(docker images -q --filter "reference=127.0.0.1:*/bench/*") >/dev/null 2>&1 || true
  if [[ -n ${KEEP_WORK:-} ]]; then echo "kept $WORK (registry logs)" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
wait_https() { # port
  for _ in $(seq 200); do
    curl -s -o /dev/null --cacert "$WORK/domain.crt" "https://127.0.0.1:$1/v2/" && return
    sleep 0.05
  done
  echo "nothing answers on port $1" >&2; exit 1
}

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$WORK/domain.key" -out "$WORK/domain.crt" 2>/dev/null
mkdir -p "$WORK/certs" && cp "$WORK/domain.crt" "$WORK/certs/ca.crt"
PASS=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
htpasswd -Bbn zuul "$PASS" > "$WORK/htpasswd"
HASH=$(cut -d: -f2- "$WORK/htpasswd" | tr -d '\n')

# --- the intermediate registry: our server in site mode -------------------
SITE_PORT=$(free_port)
SITE=127.0.0.1:$SITE_PORT
cat > "$WORK/site.yaml" <<EOF
listen: ["$SITE"]
public_url: https://$SITE
tls: {cert: domain.crt, key: domain.key}
storage: site-data
htpasswd: htpasswd
users: {zuul: read-write}
token_secret_file: token.secret
max_token_lifetime: 12h
EOF
"$BIN" serve --config "$WORK/site.yaml" 2>> "$WORK/site.log" &
PIDS+=("$!")
wait_https "$SITE_PORT"

# push_image MIB: a $LAYERS-layer image of MIB MiB as bench/img:<MIB>.
push_blob() { # file -> "digest size"
  local d s
  d=sha256:$(sha256sum "$1" | cut -d' ' -f1)
  s=$(stat -c %s "$1")
  curl -sf -o /dev/null -u "zuul:$PASS" --cacert "$WORK/domain.crt" -H 'Content-Type: application/octet-stream' \
    --data-binary @"$1" "https://$SITE/v2/bench/img/blobs/uploads/?digest=$d"
  echo "$d $s"
}
push_image() {
  local mib=$1 layers="" diff_ids="" d s i
  for i in $(seq $LAYERS); do
    mkdir -p "$WORK/l"
    head -c $((mib * 1048576 / LAYERS)) /dev/urandom > "$WORK/l/data-$i"
    tar -C "$WORK/l" -cf "$WORK/layer.tar" "data-$i"
    rm -rf "$WORK/l"
    read -r d s < <(push_blob "$WORK/layer.tar")
    layers+="${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"$d\",\"size\":$s}"
    diff_ids+="${diff_ids:+,}\"$d\""
  done
  rm -f "$WORK/layer.tar"
  printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[%s]},"config":{"Cmd":["/data-1"]}}' "$diff_ids" > "$WORK/config"
  read -r d s < <(push_blob "$WORK/config")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[%s]}' "$d" "$s" "$layers" > "$WORK/manifest"
  curl -sf -o /dev/null -u "zuul:$PASS" --cacert "$WORK/domain.crt" -X PUT \
    -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary @"$WORK/manifest" \
    "https://$SITE/v2/bench/img/manifests/1_$mib"
}

# --- a fresh buildset registry per run -------------------------------------
BUILDSET_PID=""
start_buildset() {
  BUILDSET_PORT=$(free_port)
  BUILDSET=127.0.0.1:$BUILDSET_PORT
  rm -rf "$WORK/buildset"
  mkdir -p "$WORK/buildset"
  python3 - "$WORK" "$BUILDSET" "$HASH" <<'PY'
import json, os, sys
work, addr, hash_ = sys.argv[1:]
json.dump({"listen": [addr], "tls": {"cert": f"{work}/domain.crt", "key": f"{work}/domain.key"},
           "storage": f"{work}/buildset/storage", "token_secret": os.urandom(32).hex(),
           "users": [{"username": "zuul", "password_bcrypt": hash_}]},
          open(f"{work}/buildset/config.json", "w"))
PY
  "$BIN" serve --config "$WORK/buildset/config.json" 2>> "$WORK/buildset.log" &
  BUILDSET_PID=$!
  PIDS+=("$BUILDSET_PID")
  mkdir -p "/etc/docker/certs.d/$BUILDSET"
  cp "$WORK/domain.crt" "/etc/docker/certs.d/$BUILDSET/ca.crt"
  CERTS_D+=("/etc/docker/certs.d/$BUILDSET")
  wait_https "$BUILDSET_PORT"
}
stop_buildset() {
  kill "$BUILDSET_PID" 2>/dev/null || true
  wait "$BUILDSET_PID" 2>/dev/null || true
  rm -rf "/etc/docker/certs.d/$BUILDSET"
}

module_args() { # lazy mib: the module's args file (made before the clock starts)
  python3 - "$WORK" "$SITE_PORT" "$BUILDSET_PORT" "$PASS" "$1" "$2" <<'PY' > "$WORK/args.json"
import json, sys
work, site, buildset, password, lazy, mib = sys.argv[1:]
cert = open(f"{work}/domain.crt").read()
registry = lambda port: {"host": "127.0.0.1", "port": int(port), "username": "zuul", "password": password, "cert": cert}
print(json.dumps({
    "_ansible_module_name": "speculative.images.pull_from_intermediate_registry",
    "_ansible_check_mode": False,
    "buildset_registry": registry(buildset), "intermediate_registry": registry(site),
    "zuul_artifacts": [{"url": f"docker://127.0.0.1:{site}/bench/img:1_{mib}",
                        "metadata": {"type": "container_image", "repository": "bench/img", "tag": "latest"}}],
    "lazy": lazy, "lazy_prefetch": False}))
PY
}
check_result() { # way: the module's result did not fail, and was lazy when asked
  [[ $1 == skopeo ]] && return
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(1 if r.get("failed") or r["lazy"] != (sys.argv[2] == "lazy") else 0)' \
    "$WORK/result.json" "$1" || { cat "$WORK/result.json" >&2; exit 1; }
}
pull_step() { # way mib
  case $1 in
    lazy | full) "$BIN" "$WORK/args.json" > "$WORK/result.json" ;;
    skopeo) skopeo copy -q --all --src-creds "zuul:$PASS" --dest-creds "zuul:$PASS" \
              --src-cert-dir "$WORK/certs" --dest-cert-dir "$WORK/certs" \
              "docker://$SITE/bench/img:1_$2" "docker://$BUILDSET/bench/img:latest" ;;
  esac
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
spread() { sort -n | awk 'NR==1{lo=$1} {hi=$1} END {printf "%s-%s", lo, hi}'; }

printf '%-8s %-7s %18s %22s\n' size way "pull step ms" "until docker pulled ms"
for mib in $SIZES_MIB; do
  push_image "$mib"
  for way in lazy full skopeo; do : > "$WORK/step.$way"; : > "$WORK/total.$way"; done
  for _ in $(seq "$RUNS"); do
    # Alternating ways, so a change of the machine's load weighs on all.
    for way in lazy full skopeo; do
      start_buildset
      case $way in lazy) module_args auto "$mib" ;; full) module_args off "$mib" ;; esac
      t0=$(now_ms)
      pull_step "$way" "$mib"
      t1=$(now_ms)
      check_result "$way"
      docker pull -q "$BUILDSET/bench/img:latest" > /dev/null
      t2=$(now_ms)
      docker rmi -f "$BUILDSET/bench/img:latest" > /dev/null
      stop_buildset
      echo $((t1 - t0)) >> "$WORK/step.$way"
      echo $((t2 - t0)) >> "$WORK/total.$way"
    done
  done
  for way in lazy full skopeo; do
    printf '%-8s %-7s %10s (%s) %12s (%s)\n' "${mib}MiB" "$way" \
      "$(median < "$WORK/step.$way")" "$(spread < "$WORK/step.$way")" \
      "$(median < "$WORK/total.$way")" "$(spread < "$WORK/total.$way")"
  done
  lazy=$(median < "$WORK/total.lazy"); full=$(median < "$WORK/total.full"); sk=$(median < "$WORK/total.skopeo")
  awk -v l="$lazy" -v f="$full" -v s="$sk" 'BEGIN {
    printf "  until docker pulled: lazy/full %.2f (target <= 0.6), lazy/skopeo %.2f (target <= 0.5)\n", l / f, l / s }'
done
