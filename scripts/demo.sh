#!/usr/bin/env bash
# The main job (`make demo`, after `make setup collection`).
#
# Part 1, the buildset registry through the collection: start one with the
# run_buildset_registry role, push an image built here with docker into it,
# pull it back with skopeo, check the digests and run what came back, print
# the registry facts (password masked), and remove everything at the end.
# Part 2, when present: the full gating demo (demo/gate.py); set
# DEMO_REGISTRY_ONLY=1 to stop after part 1.
set -euo pipefail
cd "$(dirname "$0")/.." || exit 1
export PATH="$PWD/.venv/bin:$PATH"

bold() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

work=$(mktemp -d /tmp/speculative-demo.XXXXXX)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
authority=127.0.0.1:$port
image=$authority/demo/hello:latest
export DOCKER_CONFIG=$work/docker   # docker login never touches ~/.docker

cat >"$work/registry.yml" <<YAML
- name: A buildset registry on this machine
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Run it with the collection's role
      ansible.builtin.include_role:
        name: speculative.images.run_buildset_registry
      vars:
        buildset_registry_root: "{{ demo_root }}"
        buildset_registry_port: "{{ demo_port | int }}"
        buildset_registry_host: 127.0.0.1
        buildset_registry_state: "{{ demo_state }}"
    - name: Keep its facts for this script (mode 0600)
      ansible.builtin.copy:
        content: "{{ buildset_registry | to_json }}"
        dest: "{{ demo_facts }}"
        mode: "0600"
      when: buildset_registry is defined
      no_log: true
YAML
registry() {
  ansible-playbook -i localhost, "$work/registry.yml" \
    -e "demo_root=$work/buildset_registry demo_port=$port demo_state=$1 demo_facts=$work/facts.json"
}

cleanup() {
  bold "cleaning up"
  registry absent >/dev/null 2>&1 || echo "could not stop the registry under $work/buildset_registry"
  docker rmi -f "$image" demo/hello-pulled:latest >/dev/null 2>&1 || true
  rm -rf "/etc/docker/certs.d/$authority" "$work"
}
trap cleanup EXIT

bold "starting a buildset registry on $authority with speculative.images.run_buildset_registry"
registry present
bold "a second run finds it running (changed=0)"
registry present | grep -E '^localhost +:'

bold "the registry facts (buildset_registry), password masked"
jq '.password = "********" | .cert = (.cert | split("\n")[0] + " ...")' "$work/facts.json"
password=$(jq -r .password "$work/facts.json")
mkdir -p "/etc/docker/certs.d/$authority" "$work/certs"
jq -r .cert "$work/facts.json" >"/etc/docker/certs.d/$authority/ca.crt"
cp "/etc/docker/certs.d/$authority/ca.crt" "$work/certs/ca.crt"

bold "building $image with docker (FROM scratch + busybox)"
mkdir -p "$work/context"
cp /bin/busybox "$work/context/busybox"
cat >"$work/context/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
CMD ["/bin/busybox", "echo", "hello from the buildset registry"]
DOCKERFILE
docker build -q -t "$image" "$work/context"

bold "docker login and push"
docker login "$authority" --username zuul --password-stdin <<<"$password" >/dev/null
push_log=$(docker push "$image")
echo "$push_log"
pushed=$(sed -n 's/.*digest: \(sha256:[0-9a-f]*\).*/\1/p' <<<"$push_log")

bold "skopeo pulls it back (anonymous pull, trusting the returned CA)"
# dir: keeps the manifest's bytes as the registry served them.
skopeo copy -q --src-cert-dir "$work/certs" "docker://$image" "dir:$work/pulled"
pulled=sha256:$(sha256sum "$work/pulled/manifest.json" | cut -d' ' -f1)
skopeo copy -q --src-cert-dir "$work/certs" "docker://$image" "docker-daemon:demo/hello-pulled:latest"
echo "pushed by docker: $pushed"
echo "pulled by skopeo: $pulled"
if [[ -z $pushed || $pushed != "$pulled" ]]; then
  echo "the digests differ" >&2
  exit 1
fi
echo "the image that came back runs:"
docker run --rm demo/hello-pulled:latest

if [[ -f demo/gate.py && -z ${DEMO_REGISTRY_ONLY:-} ]]; then
  trap - EXIT
  cleanup
  bold "the full gating demo"
  exec python3 demo/gate.py
fi
