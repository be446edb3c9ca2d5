#!/usr/bin/env bash
# Lazy pull benchmark (issue 13): the time of the pull step
# (pull_from_intermediate_registry bringing an image of a change ahead
# into a fresh buildset registry) and the time from the start of that
# step until a consumer's `docker pull` of the image through the
# buildset registry has finished, for three ways of pulling:
#
#   lazy    pull_from_intermediate_registry, lazy: auto (manifests and
#           configs copied, layers fetched by the buildset registry when
#           docker asks, and prefetched in the background for the
#           consumer's platform, as a site with amd64 nodes sets it)
#   full    the same module with lazy: off (every byte copied first)
#   skopeo  `skopeo copy --all` (zuul-jobs' way), then the same docker pull
#
# The intermediate registry is our server in site mode (TLS, htpasswd,
# delegated pull-only tokens); each run gets a fresh buildset registry
# and docker forgets the image. Images of 64 MiB, 512 MiB and 2 GiB in
# all: by default an index of two platforms (linux/amd64, linux/arm64,
# half the size each, as in the issue's check), each of 4 layers of
# random data (uncompressed tar); docker here pulls the amd64 half.
# Prints per size and way the median of the runs with min-max, docker's
# own share (its pull after the full copy, from the buildset registry's
# disk: no way of pulling can end before it), and the ratios lazy/full
# and lazy/skopeo of the time until docker's pull finished (targets: at
# most 0.6 and 0.5; pull step under 100 ms at every size).
#
#   bench/lazy-pull.sh [runs]           (default 3)
#   SIZES_MIB="64 512" bench/lazy-pull.sh 1
#   PLATFORMS=1                         one platform: a plain image manifest
#   LAZY_PREFETCH=off                   no background prefetch (default:
#                                       linux/amd64; "all" for every platform)
#   LINK_MBIT=1000                      the intermediate registry across a link of that
#                                       rate (its own network namespace, a veth pair
#                                       shaped with tc tbf both ways), as a site's
#                                       intermediate registry is a remote service;
#                                       default: loopback, where docker's own pull is
#                                       most of every way's time
#   SPECULATIVE_IMAGES_BIN=...          the binary (default: a release build)
#   KEEP_WORK=1                         keep the work directory (the registries' logs)
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${1:-3}
SIZES_MIB=${SIZES_MIB:-64 512 2048}
LAYERS=4
PLATFORMS=${PLATFORMS:-2}
LAZY_PREFETCH=${LAZY_PREFETCH:-linux/amd64}
ARCHES=(amd64 arm64)
((PLATFORMS == 1 || PLATFORMS == 2)) || { echo "PLATFORMS must be 1 or 2, not $PLATFORMS" >&2; exit 2; }

for tool in docker skopeo openssl htpasswd curl python3 ${LINK_MBIT:+ip tc}; do
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
NETNS=""
cleanup() {
  if [[ -n $NETNS ]]; then ip netns del "$NETNS" 2>/dev/null || true; fi
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for d in "${CERTS_D[@]}"; do rm -rf "$d"; done
  docker rmi -f $(docker images -q --filter "reference=127.0.0.1:*/bench/*") >/dev/null 2>&1 || true
  if [[ -n ${KEEP_WORK:-} ]]; then echo "kept $WORK (registry logs)" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
wait_https() { # address port
  for _ in $(seq 200); do
    curl -s -o /dev/null --cacert "$WORK/domain.crt" "https://$1:$2/v2/" && return
    sleep 0.05
  done
  echo "nothing answers on port $1" >&2; exit 1
}

# --- where the intermediate registry lives ---------------------------------
SITE_IP=127.0.0.1
IN_SITE=()
if [[ -n ${LINK_MBIT:-} ]]; then
  [[ $LINK_MBIT =~ ^[1-9][0-9]*$ ]] || { echo "LINK_MBIT must be a whole number of Mbit/s, not $LINK_MBIT" >&2; exit 2; }
  NETNS=bench-site-$$
  ip netns add "$NETNS"
  ip link add "bh$$" type veth peer name "bs$$"
  ip link set "bs$$" netns "$NETNS"
  ip addr add 10.213.0.1/30 dev "bh$$" && ip link set "bh$$" up
  ip netns exec "$NETNS" ip addr add 10.213.0.2/30 dev "bs$$"
  ip netns exec "$NETNS" ip link set "bs$$" up
  ip netns exec "$NETNS" ip link set lo up
  # Both directions shaped: blobs flow from the site, pushes to it.
  tc qdisc add dev "bh$$" root tbf rate "${LINK_MBIT}mbit" burst 256kb latency 50ms
  ip netns exec "$NETNS" tc qdisc add dev "bs$$" root tbf rate "${LINK_MBIT}mbit" burst 256kb latency 50ms
  SITE_IP=10.213.0.2
  IN_SITE=(ip netns exec "$NETNS")
fi

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1,IP:10.213.0.2 \
  -keyout "$WORK/domain.key" -out "$WORK/domain.crt" 2>/dev/null
mkdir -p "$WORK/certs" && cp "$WORK/domain.crt" "$WORK/certs/ca.crt"
PASS=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
htpasswd -Bbn zuul "$PASS" > "$WORK/htpasswd"
HASH=$(cut -d: -f2- "$WORK/htpasswd" | tr -d '\n')

# --- the intermediate registry: our server in site mode -------------------
SITE_PORT=$(free_port)
SITE=$SITE_IP:$SITE_PORT
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
"${IN_SITE[@]}" "$BIN" serve --config "$WORK/site.yaml" 2>> "$WORK/site.log" &
PIDS+=("$!")
wait_https "$SITE_IP" "$SITE_PORT"

# push_image MIB: an image of MIB MiB in all as bench/img:1_<MIB>.
push_blob() { # file -> "digest size"
  local d s
  d=sha256:$(sha256sum "$1" | cut -d' ' -f1)
  s=$(stat -c %s "$1")
  curl -sf -o /dev/null -u "zuul:$PASS" --cacert "$WORK/domain.crt" -H 'Content-Type: application/octet-stream' \
    --data-binary @"$1" "https://$SITE/v2/bench/img/blobs/uploads/?digest=$d"
  echo "$d $s"
}
put_manifest() { # file media-type reference
  curl -sf -o /dev/null -u "zuul:$PASS" --cacert "$WORK/domain.crt" -X PUT \
    -H "Content-Type: $2" --data-binary @"$1" "https://$SITE/v2/bench/img/manifests/$3"
}
OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
OCI_INDEX=application/vnd.oci.image.index.v1+json
push_platform() { # mib arch -> "digest size" of its manifest (pushed by digest)
  local mib=$1 arch=$2 layers="" diff_ids="" d s i
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
  printf '{"architecture":"%s","os":"linux","rootfs":{"type":"layers","diff_ids":[%s]},"config":{"Cmd":["/data-1"]}}' "$arch" "$diff_ids" > "$WORK/config"
  read -r d s < <(push_blob "$WORK/config")
  printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[%s]}' "$OCI_MANIFEST" "$d" "$s" "$layers" > "$WORK/manifest"
  d=sha256:$(sha256sum "$WORK/manifest" | cut -d' ' -f1)
  put_manifest "$WORK/manifest" "$OCI_MANIFEST" "$d"
  echo "$d $(stat -c %s "$WORK/manifest")"
}
push_image() {
  local mib=$1 entries="" d s arch
  if ((PLATFORMS == 1)); then
    push_platform "$mib" amd64 > /dev/null
    put_manifest "$WORK/manifest" "$OCI_MANIFEST" "1_$mib"
    return
  fi
  for arch in "${ARCHES[@]:0:PLATFORMS}"; do
    read -r d s < <(push_platform $((mib / PLATFORMS)) "$arch")
    entries+="${entries:+,}{\"mediaType\":\"$OCI_MANIFEST\",\"digest\":\"$d\",\"size\":$s,\"platform\":{\"os\":\"linux\",\"architecture\":\"$arch\"}}"
  done
  printf '{"schemaVersion":2,"mediaType":"%s","manifests":[%s]}' "$OCI_INDEX" "$entries" > "$WORK/index"
  put_manifest "$WORK/index" "$OCI_INDEX" "1_$mib"
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
  wait_https 127.0.0.1 "$BUILDSET_PORT"
}
stop_buildset() {
  kill "$BUILDSET_PID" 2>/dev/null || true
  wait "$BUILDSET_PID" 2>/dev/null || true
  rm -rf "/etc/docker/certs.d/$BUILDSET"
}

module_args() { # lazy mib: the module's args file (made before the clock starts)
  python3 - "$WORK" "$SITE_IP" "$SITE_PORT" "$BUILDSET_PORT" "$PASS" "$1" "$2" "$LAZY_PREFETCH" <<'PY' > "$WORK/args.json"
import json, sys
work, site_ip, site, buildset, password, lazy, mib, prefetch = sys.argv[1:]
cert = open(f"{work}/domain.crt").read()
registry = lambda host, port: {"host": host, "port": int(port), "username": "zuul", "password": password, "cert": cert}
print(json.dumps({
    "_ansible_module_name": "speculative.images.pull_from_intermediate_registry",
    "_ansible_check_mode": False,
    "buildset_registry": registry("127.0.0.1", buildset), "intermediate_registry": registry(site_ip, site),
    "zuul_artifacts": [{"url": f"docker://{site_ip}:{site}/bench/img:1_{mib}",
                        "metadata": {"type": "container_image", "repository": "bench/img", "tag": "latest"}}],
    "lazy": lazy, "lazy_prefetch": prefetch != "off",
    "lazy_prefetch_platforms": [] if prefetch in ("off", "all") else prefetch.split(",")}))
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

WHERE="on loopback"
[[ -z ${LINK_MBIT:-} ]] || WHERE="across a $LINK_MBIT Mbit/s link"
echo "image: $PLATFORMS platform(s) of $LAYERS layers each, docker pulls linux/amd64; prefetch: $LAZY_PREFETCH;" \
  "intermediate registry: $WHERE"
printf '%-8s %-7s %18s %22s\n' size way "pull step ms" "until docker pulled ms"
for mib in $SIZES_MIB; do
  push_image "$mib"
  for way in lazy full skopeo; do : > "$WORK/step.$way"; : > "$WORK/total.$way"; : > "$WORK/docker.$way"; done
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
      arch=$(docker image inspect --format '{{.Architecture}}' "$BUILDSET/bench/img:latest")
      [[ $arch == amd64 ]] || { echo "docker pulled the $arch image, not amd64" >&2; exit 1; }
      docker rmi -f "$BUILDSET/bench/img:latest" > /dev/null
      stop_buildset
      echo $((t1 - t0)) >> "$WORK/step.$way"
      echo $((t2 - t0)) >> "$WORK/total.$way"
      echo $((t2 - t1)) >> "$WORK/docker.$way"
    done
  done
  for way in lazy full skopeo; do
    printf '%-8s %-7s %10s (%s) %12s (%s)\n' "${mib}MiB" "$way" \
      "$(median < "$WORK/step.$way")" "$(spread < "$WORK/step.$way")" \
      "$(median < "$WORK/total.$way")" "$(spread < "$WORK/total.$way")"
  done
  lazy=$(median < "$WORK/total.lazy"); full=$(median < "$WORK/total.full"); sk=$(median < "$WORK/total.skopeo")
  own=$(median < "$WORK/docker.full")
  echo "  docker's own pull from the buildset registry's disk (after the full copy): $own ms ($(spread < "$WORK/docker.full"))"
  awk -v l="$lazy" -v f="$full" -v s="$sk" 'BEGIN {
    printf "  until docker pulled: lazy/full %.2f (target <= 0.6), lazy/skopeo %.2f (target <= 0.5)\n", l / f, l / s }'
done
