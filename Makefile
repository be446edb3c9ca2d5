# speculative.images: every entry point people, CI and later issues rely on.
#   make demo        set up this machine and run the gating demo (the main job)
#   make test        every test (what .ci/run calls)
#   make collection  static module binary -> plugins/modules/, tarball, install
#   make bench       every benchmark, ours and the anchor side by side
#   make fuzz        every fuzz target of fuzz/ (cargo fuzz, libFuzzer) for
#                    FUZZ_SECONDS (default 30) each; non-zero on a crash.
#                    Not part of make test: the stored crash inputs are
#                    (tests/fuzz_regressions.rs replays them).

SHELL := /bin/bash
COLLECTIONS_PATH ?= $(HOME)/.ansible/collections
TARGET := x86_64-unknown-linux-gnu
STATIC_BIN := target/$(TARGET)/release/speculative-images
VENV := $(CURDIR)/.venv
MODULES := $(shell scripts/modules.sh)

export PATH := $(VENV)/bin:$(HOME)/.cargo/bin:$(PATH)

.PHONY: setup demo test collection static bench fuzz clean

setup:
	scripts/setup.sh

# The module binary: static (no glibc pins), so it runs on any node. The
# explicit --target keeps build scripts and proc-macros dynamic. Not
# position-independent: a static PIE carries ~450 KB of relocations that
# Ansible would copy to the node on every task.
static:
	RUSTFLAGS='-C target-feature=+crt-static -C relocation-model=static' cargo build --release --locked --target $(TARGET) --bin speculative-images

collection: static
	scripts/build-collection.sh "$(STATIC_BIN)" "$(COLLECTIONS_PATH)" $(MODULES)

demo: setup collection
	scripts/demo.sh

test: setup
	scripts/test.sh

bench: setup collection
	bench/run.sh

fuzz:
	scripts/fuzz.sh

clean:
	cargo clean
	rm -rf build fuzz/target $(addprefix plugins/modules/,$(MODULES))
