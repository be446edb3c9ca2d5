# shellcheck shell=bash
# Shared by the benchmarks (source it; bench/run.sh runs only bench/*.sh).

# Resolved now: the benchmarks change directory after sourcing this file.
DISTRIBUTION_EXAMPLE=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/examples/intermediate-registry/config.yml

# distribution_config OUT DATA ADDR CERT KEY HTPASSWD: write a config for
# Debian's docker-registry rendered from the seed's deployment
# (examples/intermediate-registry/config.yml: TLS + htpasswd), with its own
# storage, address and files, logging warnings only.
distribution_config() {
  local out=$1 data=$2 addr=$3 cert=$4 key=$5 htpasswd=$6
  sed -e "s|rootdirectory: /var/registry/data|rootdirectory: $data|" \
      -e "s|certificate: /var/registry/certs/domain.crt|certificate: $cert|" \
      -e "s|key: /var/registry/certs/domain.key|key: $key|" \
      -e "s|path: /var/registry/auth/htpasswd|path: $htpasswd|" \
      -e "s|addr: \":5000\"|addr: \"$addr\"|" \
      -e "s|level: info|level: warn|" \
      "$DISTRIBUTION_EXAMPLE" > "$out"
}
