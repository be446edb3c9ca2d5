#!/usr/bin/env bash
# cargo deny over the module binary's dependencies (deny.toml): licenses,
# duplicate crates and sources, always; security advisories when the
# RustSec database can be fetched (from GitHub: machines that cannot reach
# it skip that one check and say so). Installs cargo-deny when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
CARGO_DENY_VERSION=0.20.2

if ! cargo deny --version 2>/dev/null | grep -qx "cargo-deny $CARGO_DENY_VERSION"; then
  echo "installing cargo-deny $CARGO_DENY_VERSION from crates.io"
  cargo install --locked --quiet "cargo-deny@$CARGO_DENY_VERSION"
fi

cargo deny --locked check licenses bans sources

if timeout 60 cargo deny fetch db >/dev/null 2>&1; then
  cargo deny --locked check advisories
else
  echo "advisories: skipped, the RustSec advisory database (github.com/RustSec/advisory-db) cannot be fetched from here"
fi
