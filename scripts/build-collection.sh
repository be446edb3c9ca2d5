#!/usr/bin/env bash
# Place the static multi-call binary under plugins/modules/ once per module,
# build the collection tarball and install it.
# Usage: build-collection.sh BINARY COLLECTIONS_PATH MODULE...
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$1 collections=$2
shift 2
for module in "$@"; do
  install -m 0755 "$bin" "plugins/modules/$module"
done
mkdir -p build
ansible-galaxy collection build --force --output-path build/ . >/dev/null
version=$(sed -n 's/^version: *//p' galaxy.yml)
ansible-galaxy collection install --force -p "$collections" "build/speculative-images-$version.tar.gz" >/dev/null
echo "installed speculative.images $version into $collections ($(du -h "$bin" | cut -f1) per module binary)"
