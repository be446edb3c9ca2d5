#!/usr/bin/env bash
# Print the collection's module names: the dispatch table in src/modules/mod.rs.
cd "$(dirname "$0")/.." || exit 1
grep -oE '^ +\(?"[a-z_]+",' src/modules/mod.rs | tr -d ' (",'
