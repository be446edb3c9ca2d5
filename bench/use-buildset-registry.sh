#!/usr/bin/env bash
# Wall time of a full use_buildset_registry role run on this host (dockerd
# running, our buildset registry holding a docker.io and a quay.io image,
# preload on): the first run, an unchanged re-run, and the number of tasks
# the role executes (from the play recap), beside the figures measured for
# Zuul's use-buildset-registry role before this project started (issue 4).
# Every host file it touches, the CA bundle and dockerd's live mirrors are
# put back afterwards.
# Usage: bench/use-buildset-registry.sh
#   SPECULATIVE_IMAGES_BIN=...  the binary to measure (default: the static
#                               release build `make collection` ships)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# Zuul's role, measured on this machine before we started (issue 4).
ANCHOR_TASKS=42 ANCHOR_FIRST=8.4 ANCHOR_RERUN=7.5

BIN=${SPECULATIVE_IMAGES_BIN:-$ROOT/target/x86_64-unknown-linux-gnu/release/speculative-images}
[[ -x $BIN ]] || make --no-print-directory static >/dev/null
PLAYBOOK=$ROOT/.venv/bin/ansible-playbook
[[ -x $PLAYBOOK ]] || PLAYBOOK=$(command -v ansible-playbook)
ALIAS=zuul-jobs.buildset-registry

tmp=$(mktemp -d)
docker_home=${HOME:-/root}
anchor=""
for d in /usr/local/share/ca-certificates /etc/pki/ca-trust/source/anchors; do
  [[ -d $d ]] && { anchor=$d/speculative-images-buildset-registry.crt; break; }
done
saved=(/etc/docker/daemon.json /etc/hosts /etc/containers/registries.conf
       /etc/buildkit/buildkitd.toml "$docker_home/.docker/config.json")
[[ -n $anchor ]] && saved+=("$anchor")
mkdir -p "$tmp/saved"
for i in "${!saved[@]}"; do
  [[ -e ${saved[$i]} ]] && cp -a "${saved[$i]}" "$tmp/saved/$i"
done
[[ -d /etc/buildkit ]] || created_buildkit=1
[[ -d $docker_home/.docker ]] || created_docker_home=1
mirrors=$(docker info --format '{{json .RegistryConfig.Mirrors}}')

restore() {
  set +e
  [[ -n ${registry_pid:-} ]] && kill "$registry_pid" 2>/dev/null
  # dockerd keeps options absent from daemon.json on reload: write the old
  # mirrors out, reload, then put the original file back.
  if [[ $(docker info --format '{{json .RegistryConfig.Mirrors}}') != "$mirrors" ]]; then
    old=$( [[ -e $tmp/saved/0 ]] && cat "$tmp/saved/0" || echo '{}')
    jq --argjson m "$mirrors" '.["registry-mirrors"] = ($m // [])' <<<"$old" >/etc/docker/daemon.json
    kill -HUP "$(cat /var/run/docker.pid)"
    for _ in $(seq 100); do
      [[ $(docker info --format '{{json .RegistryConfig.Mirrors}}') == "$mirrors" ]] && break
      sleep 0.1
    done
  fi
  ca_changed=0
  for i in "${!saved[@]}"; do
    f=${saved[$i]}
    if [[ -e $tmp/saved/$i ]]; then
      cmp -s "$tmp/saved/$i" "$f" || { cp -a "$tmp/saved/$i" "$f"; [[ $f == "$anchor" ]] && ca_changed=1; }
    elif [[ -e $f ]]; then
      rm -f "$f"; [[ $f == "$anchor" ]] && ca_changed=1
    fi
  done
  [[ -n ${created_buildkit:-} ]] && rm -rf /etc/buildkit
  [[ -n ${created_docker_home:-} ]] && rm -rf "$docker_home/.docker"
  rm -rf /etc/docker/certs.d/"$ALIAS":*
  if ((ca_changed)); then
    if command -v update-ca-certificates >/dev/null; then update-ca-certificates >/dev/null 2>&1
    else update-ca-trust extract; fi
  fi
  docker rmi -f "quay.io/bench/img:latest" "$ALIAS:${port:-0}/quay.io/bench/img:latest" bench-local/img:latest >/dev/null 2>&1
  rm -rf "$tmp"
}
trap restore EXIT

# Our buildset registry, TLS with a CA-signed certificate naming the alias.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
password=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
cd "$tmp"
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 -subj "/CN=bench CA" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=$ALIAS" 2>/dev/null
printf 'subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\n' "$ALIAS" >ext.cnf
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out leaf.crt -days 1 -extfile ext.cnf 2>/dev/null
cat leaf.crt ca.crt >server.crt
hash=$(htpasswd -nbB zuul "$password" | cut -d: -f2)
jq -n --arg port "$port" --arg hash "$hash" --arg dir "$tmp" --arg secret "$(openssl rand -hex 32)" '{
  listen: ["127.0.0.1:\($port)"], tls: {cert: "\($dir)/server.crt", key: "\($dir)/server.key"},
  storage: "\($dir)/storage", users: [{username: "zuul", password_bcrypt: $hash}],
  token_secret: $secret, anonymous_pull: true}' >registry.json
"$BIN" serve --config registry.json 2>registry.log &
registry_pid=$!
for _ in $(seq 100); do curl -sf --cacert ca.crt "https://127.0.0.1:$port/v2/" -o /dev/null && break; sleep 0.1; done
jq -n --arg port "$port" --arg pw "$password" --rawfile cert ca.crt \
  '{host: "127.0.0.1", port: ($port|tonumber), username: "zuul", password: $pw, cert: $cert}' >buildset_registry.json

# A docker.io and a quay.io image in it (preload pulls the quay.io one).
mkdir -p img certs && cp /bin/busybox img/ && cp ca.crt certs/
printf 'FROM scratch\nCOPY busybox /bin/busybox\nCMD ["/bin/busybox","true"]\n' >img/Dockerfile
docker build -q -t bench-local/img:latest img >/dev/null 2>&1
for dst in library/bench-img:latest quay.io/bench/img:latest; do
  skopeo copy -q --dest-cert-dir certs --dest-creds "zuul:$password" \
    docker-daemon:bench-local/img:latest "docker://127.0.0.1:$port/$dst"
done

# The collection as Ansible sees it, private to this run.
col=$tmp/collections/ansible_collections/speculative/images
mkdir -p "$col/plugins/modules"
cp "$ROOT/galaxy.yml" "$col/"; cp -r "$ROOT/meta" "$ROOT/roles" "$col/"
cp -r "$ROOT/plugins/action" "$col/plugins/"
install -m 0755 "$BIN" "$col/plugins/modules/use_buildset_registry"
cp "$ROOT/plugins/modules/use_buildset_registry.yml" "$col/plugins/modules/"
cat >play.yml <<'PLAY'
- name: Use the buildset registry
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    buildset_registry: "{{ lookup('file', 'buildset_registry.json') | from_json }}"
  roles:
    - speculative.images.use_buildset_registry
PLAY

run_role() {
  local start end
  start=$(date +%s.%N)
  ANSIBLE_COLLECTIONS_PATH=$tmp/collections ANSIBLE_LOCALHOST_WARNING=false \
    ANSIBLE_INVENTORY_UNPARSED_WARNING=false "$PLAYBOOK" play.yml >"$1.log" 2>&1 \
    || { cat "$1.log" >&2; exit 1; }
  end=$(date +%s.%N)
  recap=$(grep -E '^localhost +:' "$1.log")
  field() { sed -E "s/.*$1=([0-9]+).*/\1/" <<<"$recap"; }
  tasks=$(( $(field ok) + $(field failed) + $(field skipped) ))
  changed=$(field changed)
  secs=$(awk "BEGIN {print $end - $start}")
  printf '%s %.2f %s %s\n' "$1" "$secs" "$tasks" "$changed"
}

# What any one-task play costs here: the floor under both roles.
cat >floor.yml <<'PLAY'
- name: Floor
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: One trivial task
      ansible.builtin.ping:
PLAY
start=$(date +%s.%N)
ANSIBLE_LOCALHOST_WARNING=false ANSIBLE_INVENTORY_UNPARSED_WARNING=false "$PLAYBOOK" floor.yml >/dev/null 2>&1
floor=$(awk "BEGIN {print $(date +%s.%N) - $start}")

read -r _ first tasks first_changed < <(run_role first)
# Re-runs: the median of RERUNS (default 5); ansible-playbook's own start
# varies by a few hundred ms from run to run here.
reruns=() rerun_changed=0
for i in $(seq "${RERUNS:-5}"); do
  read -r _ secs _ changed < <(run_role "rerun$i")
  reruns+=("$secs"); rerun_changed=$((rerun_changed + changed))
done
rerun=$(printf '%s\n' "${reruns[@]}" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')

# The module alone on the configured host (what the re-run costs above
# Ansible's own floor).
jq --slurpfile r buildset_registry.json '{buildset_registry: $r[0], preload: true,
  _ansible_module_name: "speculative.images.use_buildset_registry"}' -n >module-args.json
start=$(date +%s.%N)
module_changed=$("$BIN" module-args.json | jq .changed)
module=$(awk "BEGIN {print $(date +%s.%N) - $start}")

printf 'use_buildset_registry (ours):  first run %5.2f s (changed=%s), re-run %5.2f s (median of %d: %s; changed=%s in all), %s task(s)\n' \
  "$first" "$first_changed" "$rerun" "${#reruns[@]}" "${reruns[*]}" "$rerun_changed" "$tasks"
printf 'module alone, unchanged host: %.3f s (changed=%s)\n' "$module" "$module_changed"
printf 'ansible-playbook floor (one ping task, same machine now): %.2f s; load average %s\n' "$floor" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'use-buildset-registry (Zuul):  first run %5.2f s,             re-run %5.2f s (changed every run), %s tasks\n' \
  "$ANCHOR_FIRST" "$ANCHOR_RERUN" "$ANCHOR_TASKS"
awk -v f="$first" -v r="$rerun" -v t="$tasks" -v af="$ANCHOR_FIRST" -v ar="$ANCHOR_RERUN" -v at="$ANCHOR_TASKS" \
  'BEGIN {printf "ratio Zuul/ours: first run %.1fx, re-run %.1fx, tasks %.0fx\n", af / f, ar / r, at / t}'
