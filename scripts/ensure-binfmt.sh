#!/usr/bin/env bash
# Make foreign-architecture binaries run here through qemu, so that `RUN`
# steps of multi-arch image builds work: mount binfmt_misc and register
# the qemu-user-static handlers (Debian registers them through
# systemd-binfmt or binfmt-support, neither of which runs without
# systemd). A host that cannot is reported, never an error: builds
# without RUN in a foreign stage need no emulation.
set -uo pipefail

BINFMT=/proc/sys/fs/binfmt_misc
say() { printf '==> %s\n' "$*"; }

cannot() {
  say "multi-arch emulation unavailable: $*; RUN steps in foreign-architecture stages will fail (builds without them work)"
  exit 0
}

[[ $(id -u) -eq 0 ]] || cannot "not root (binfmt_misc needs root to mount and register)"
ls /usr/lib/binfmt.d/qemu-*.conf >/dev/null 2>&1 || cannot "qemu-user-static is not installed"
if [[ ! -e $BINFMT/register ]]; then
  mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null \
    || cannot "binfmt_misc cannot be mounted at $BINFMT (a container without the privilege?)"
fi

registered=()
for conf in /usr/lib/binfmt.d/qemu-*.conf; do
  name=$(basename "$conf" .conf)
  [[ -e $BINFMT/$name ]] && continue
  # The file holds the kernel's register line (:name:type:offset:magic:mask:interpreter:flags).
  if grep -v '^[#;]' "$conf" | grep -m1 . >"$BINFMT/register" 2>/dev/null; then
    registered+=("$name")
  else
    say "could not register $name from $conf"
  fi
done
((${#registered[@]})) && say "registered binfmt handlers: ${registered[*]}"
if [[ -e $BINFMT/qemu-aarch64 ]] && grep -q enabled "$BINFMT/qemu-aarch64"; then
  say "arm64 binaries run through $(sed -n 's/^interpreter //p' "$BINFMT/qemu-aarch64")"
else
  cannot "no qemu-aarch64 handler is registered"
fi
