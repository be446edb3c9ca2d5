#!/usr/bin/env bash
# Create what the intermediate registry needs: a CA and a server certificate
# it signed (certs/domain.crt is the chain, certs/ca.crt goes to clients and
# to the `cert` of the intermediate_registry secret), and an htpasswd file
# with one bcrypt user.
#
# Usage: make-credentials.sh [-d DIR] [-u USER] [-p PASSWORD] NAME...
#   DIR       where to write certs/ and auth/ (default /var/registry)
#   USER      registry user (default zuul)
#   PASSWORD  its password (default: generated and printed once)
#   NAME      host names or IP addresses clients use for the registry
set -euo pipefail
dir=/var/registry user=zuul password=
while getopts d:u:p: opt; do
  case $opt in
    d) dir=$OPTARG ;;
    u) user=$OPTARG ;;
    p) password=$OPTARG ;;
    *) sed -n '2,12p' "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
(($#)) || { echo "make-credentials.sh: name at least one host name or IP address" >&2; exit 2; }
command -v openssl >/dev/null || { echo "make-credentials.sh: openssl is required" >&2; exit 1; }
command -v htpasswd >/dev/null || { echo "make-credentials.sh: htpasswd is required (apache2-utils)" >&2; exit 1; }

mkdir -p "$dir/certs" "$dir/auth" "$dir/data"
umask 077
san=""
for name in "$@"; do
  if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then san+="IP:${name},"; else san+="DNS:${name},"; fi
done
san=${san%,}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

openssl req -x509 -new -nodes -newkey rsa:3072 -days 3650 -subj "/CN=Intermediate registry CA" \
  -keyout "$tmp/ca.key" -out "$dir/certs/ca.crt" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -new -nodes -newkey rsa:3072 -subj "/CN=$1" \
  -keyout "$dir/certs/domain.key" -out "$tmp/server.csr" 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$san" > "$tmp/ext"
openssl x509 -req -in "$tmp/server.csr" -CA "$dir/certs/ca.crt" -CAkey "$tmp/ca.key" \
  -CAcreateserial -days 825 -extfile "$tmp/ext" -out "$tmp/server.crt" 2>/dev/null
cat "$tmp/server.crt" "$dir/certs/ca.crt" > "$dir/certs/domain.crt"
chmod 0644 "$dir/certs/domain.crt" "$dir/certs/ca.crt"

generated=no
if [[ -z $password ]]; then
  password=$(openssl rand -hex 16)
  generated=yes
fi
htpasswd -Bbc "$dir/auth/htpasswd" "$user" "$password" 2>/dev/null
chmod 0644 "$dir/auth/htpasswd"

echo "certificate chain: $dir/certs/domain.crt (CA for clients: $dir/certs/ca.crt)"
echo "htpasswd:          $dir/auth/htpasswd (user $user)"
if [[ $generated == yes ]]; then
  echo "password for $user (shown once, put it in the Zuul secret): $password"
fi
