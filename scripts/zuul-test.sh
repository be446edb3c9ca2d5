#!/usr/bin/env bash
# The gate in a real Zuul: Zuul 14.3.0's own test harness (scheduler,
# executor running ansible-playbook in bubblewrap, merger, SQL reporter,
# fake Gerrit) runs the site jobs of zuul.d/ against this tree's collection,
# installed into each of the executor's Ansible environments as
# docs/zuul-setup.md says. The scenarios are tests/zuul/test_gate.py.
#
# Installs what it needs (Debian packages, a virtualenv with Zuul and the
# harness's requirements, Zuul's source distribution for the harness,
# Zuul's Ansible environments) under $SPECULATIVE_ZUUL_CACHE
# (/var/cache/speculative-zuul); a second run reuses all of it. Starts its
# own ZooKeeper (TLS), sshd (the job's node, root@127.0.0.1) and uses the
# machine's PostgreSQL; stops what it started.
#
#   scripts/zuul-test.sh            every scenario, and the reproduction of
#                                   docs/zuul-artifacts-across-changes.md
#   scripts/zuul-test.sh -k check   scenarios whose test name contains "check"
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

zuul_version=14.3.0
cache=${SPECULATIVE_ZUUL_CACHE:-/var/cache/speculative-zuul}
# Short on purpose: SSH's ControlPath lives under it (108-byte socket limit).
root=${ZUUL_TEST_ROOT:-/tmp/zt}
zk_port=${SPECULATIVE_ZUUL_ZK_PORT:-22281}
ssh_port=${SPECULATIVE_ZUUL_SSH_PORT:-22022}
sdist=$cache/src/zuul-$zuul_version
venv=$cache/venv
ansible_root=$cache/ansible

say() { printf '==> %s\n' "$*"; }

# --- packages -------------------------------------------------------------
packages=(zookeeper bubblewrap openssh-server postgresql docker-registry openssl python3-venv)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  say "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y \
    --no-install-recommends "${missing[@]}"
fi

# --- Zuul, its harness and its Ansible environments ------------------------
mkdir -p "$cache"
if [[ ! -f $sdist/tests/base.py ]]; then
  say "Zuul $zuul_version source distribution (the harness: tests/, tools/)"
  rm -rf "$cache/sdist" "$cache/src"
  mkdir -p "$cache/sdist" "$cache/src"
  python3 -m pip download -q --no-deps --no-binary :all: -d "$cache/sdist" "zuul==$zuul_version"
  tar xzf "$cache/sdist/zuul-$zuul_version.tar.gz" -C "$cache/src"
fi
# Debian's python3 (3.11, the lowest Zuul accepts): the Ansible venvs made
# from it link into /usr, which bubblewrap shows to every job.
if [[ ! -f $venv/.zuul-$zuul_version ]]; then
  say "virtualenv with zuul==$zuul_version and the harness's requirements"
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  nice -n 10 "$venv/bin/pip" install -q "zuul==$zuul_version" pytest \
    -r "$sdist/test-requirements.txt"
  touch "$venv/.zuul-$zuul_version"
fi
if [[ ! -f $ansible_root/.zuul-$zuul_version ]]; then
  say "zuul-manage-ansible (Ansible 9 and 11, a few minutes)"
  nice -n 10 "$venv/bin/zuul-manage-ansible" -r "$ansible_root"
  touch "$ansible_root/.zuul-$zuul_version"
fi

# --- the collection, installed as docs/zuul-setup.md section 2 says ---------
say "collection: build, install into each of the executor's Ansible environments"
# (ansible-galaxy of Zuul's newest Ansible builds the tarball.)
newest=$(printf '%s\n' "$ansible_root"/*/ | sort -V | tail -n1)
PATH="$newest/bin:$PATH" nice -n 10 make --no-print-directory collection \
  COLLECTIONS_PATH="$cache/collections" >/dev/null
tarball=$repo/build/speculative-images-$(sed -n 's/^version: *//p' galaxy.yml).tar.gz
for env in "$ansible_root"/*/; do
  [[ -x $env/bin/ansible-galaxy ]] || continue
  site=$("$env/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  "$env/bin/ansible-galaxy" collection install --force -p "$site" "$tarball" >/dev/null 2>&1 \
    || { echo "collection install into $env failed" >&2; exit 1; }
  "$env/bin/ansible-doc" -t module speculative.images.promote_docker_image >/dev/null
done

# --- services ---------------------------------------------------------------
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# ZooKeeper with TLS, certificates made by Zuul's own tools/zk-ca.sh.
ca=$cache/zk-ca
if [[ ! -f $ca/keystores/localhost.pem ]]; then
  rm -rf "$ca"; mkdir -p "$ca"
  (cd "$ca" && sh "$sdist/tools/zk-ca.sh" "$ca" localhost >/dev/null 2>&1)
fi
rm -rf "$root"; mkdir -p "$root/zk/data"
cat >"$root/zk/zoo.cfg" <<EOF
dataDir=$root/zk/data
tickTime=2000
maxClientCnxns=1000
admin.enableServer=false
4lw.commands.whitelist=*
serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory
secureClientPort=$zk_port
secureClientPortAddress=127.0.0.1
ssl.keyStore.location=$ca/keystores/localhost.pem
ssl.trustStore.location=$ca/certs/cacert.pem
EOF
# Debian's netty-all.jar is an empty stub: name the jars.
cp_jars=(zookeeper zookeeper-jute slf4j-api slf4j-simple commons-cli metrics-core
  jackson-core jackson-databind jackson-annotations snappy-java
  netty-buffer netty-codec netty-common netty-handler netty-resolver netty-transport
  netty-transport-native-epoll netty-transport-native-unix-common)
classpath=$(printf '/usr/share/java/%s.jar:' "${cp_jars[@]}")
java -cp "$classpath" -Dzookeeper.log.dir="$root/zk" \
  org.apache.zookeeper.server.quorum.QuorumPeerMain "$root/zk/zoo.cfg" >"$root/zk/zk.log" 2>&1 &
pids+=($!)

# PostgreSQL for the SQL reporter, with the role the harness logs in as.
if ! pg_isready -q -h 127.0.0.1; then
  service postgresql start >/dev/null
fi
for _ in $(seq 60); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done
if ! su postgres -c "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname='openstack_citest'\"" | grep -q 1; then
  su postgres -c "psql -q -c \"CREATE ROLE openstack_citest WITH LOGIN SUPERUSER PASSWORD 'openstack_citest'\""
fi
if ! su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname='openstack_citest'\"" | grep -q 1; then
  su postgres -c "psql -q -c \"CREATE DATABASE openstack_citest OWNER openstack_citest TEMPLATE template0 ENCODING 'UTF8'\""
fi

# The job's node: sshd on 127.0.0.1 accepting the harness's test key.
mkdir -p "$cache/ssh" "$root/ssh"
[[ -f $cache/ssh/host_ed25519 ]] || ssh-keygen -q -t ed25519 -N '' -f "$cache/ssh/host_ed25519"
cp "$sdist/tests/fixtures/test_id_rsa.pub" "$root/ssh/authorized_keys"
chmod 600 "$root/ssh/authorized_keys"
mkdir -p /run/sshd
cat >"$root/ssh/sshd_config" <<EOF
ListenAddress 127.0.0.1:$ssh_port
HostKey $cache/ssh/host_ed25519
AuthorizedKeysFile $root/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $root/ssh/sshd.pid
EOF
/usr/sbin/sshd -D -e -f "$root/ssh/sshd_config" 2>"$root/ssh/sshd.log" &
pids+=($!)

zk_pid=${pids[0]}
for _ in $(seq 60); do
  (exec 3<>"/dev/tcp/127.0.0.1/$zk_port") 2>/dev/null && break
  kill -0 "$zk_pid" 2>/dev/null || break
  sleep 1
done
(exec 3<>"/dev/tcp/127.0.0.1/$zk_port") 2>/dev/null || { echo "ZooKeeper did not start:" >&2; tail "$root/zk/zk.log" >&2; exit 1; }

# --- the scenarios -----------------------------------------------------------
say "scenarios (tests/zuul/test_gate.py) and Zuul's artifact hand-over (tests/zuul/test_upstream_artifacts.py)"

export ZUUL_ZK_HOST=localhost:$zk_port
export ZUUL_ZK_CA=$ca/certs/cacert.pem ZUUL_ZK_CERT=$ca/certs/client.pem ZUUL_ZK_KEY=$ca/keys/clientkey.pem
export ZUUL_TEST_ROOT=$root ZUUL_POSTGRES_HOST=127.0.0.1 ZUUL_REMOTE_USER=root
export SPECULATIVE_ZUUL_ANSIBLE_ROOT=$ansible_root SPECULATIVE_ZUUL_SSH_PORT=$ssh_port
export SPECULATIVE_ZUUL_HOST_KEY=$cache/ssh/host_ed25519.pub SPECULATIVE_REPO=$repo
export PYTHONPATH=$sdist:$repo/tests/zuul
cd "$sdist"
"$venv/bin/python" -m pytest -p no:cacheprovider -p no:logging -q -rA \
  "$repo/tests/zuul/test_gate.py" "$repo/tests/zuul/test_upstream_artifacts.py" "$@"
