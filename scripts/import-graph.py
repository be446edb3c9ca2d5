#!/usr/bin/env python3
"""The import graph of src/: which file uses which, read from the `use`
lines (`use crate::a::b`, `use super::x`, `use self::y`, also inside
braces and with `pub`/`pub(crate)`) and from paths written out in the
code (`super::limits::read_limited(...)`). A name a `mod.rs` re-exports
(`pub use auth::Challenge`) counts as the file it comes from. Two graphs
are checked for cycles:

- files: the files of each room named in FILE_ROOMS (src/client/ today),
  one node per file;
- rooms: the top-level modules of src/ (oci, client, registry, ...), one
  node per room.

Prints each cycle found ("a -> b -> a") and exits 1 if there is any, 0
otherwise. `--dot` prints the room graph in Graphviz form instead.
"""

import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
# Rooms whose files must not import each other in a circle.
FILE_ROOMS = ("client",)

# A `use` item up to its `;` (may span lines: `use crate::{a, b::{c}};`).
USE = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", re.MULTILINE)
# A path written out in the code: `crate::a::b`, `super::x::y`.
INLINE = re.compile(r"\b((?:crate|super|self)(?:::(?:super|[A-Za-z_]\w*))+)")
# A line comment (doc comments too), removed before looking for paths.
COMMENT = re.compile(r"//[^\n]*")


def module_path(path: Path) -> list:
    """`src/client/auth.rs` -> ["client", "auth"]; `mod.rs`/`lib.rs` name
    their directory."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return parts


def expand(tree: str) -> list:
    """Every path a use tree names: `a::{b, c::{d, e}}` ->
    ["a::b", "a::c::d", "a::c::e"]."""
    tree = re.sub(r"\s+", "", tree)
    brace = tree.find("{")
    if brace < 0:
        return [tree.split(" as ")[0]]
    prefix, inner = tree[:brace], tree[brace + 1 : tree.rfind("}")]
    items, depth, start = [], 0, 0
    for i, ch in enumerate(inner):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(inner[start:i])
            start = i + 1
    items.append(inner[start:])
    return [p for item in items if item for p in expand(prefix + item)]


def resolve(current: list, used: str) -> list:
    """The crate-absolute module path a `use` path starts from, as a list,
    or None for an external crate or std."""
    parts = [p for p in used.split("::") if p]
    if not parts:
        return None
    # `super` of `a/b.rs` (module a::b) is a; of `a/mod.rs` (module a),
    # the crate root.
    here = list(current)
    if parts[0] == "crate":
        return parts[1:]
    if parts[0] == "self":
        return here + parts[1:]
    if parts[0] == "super":
        base = here
        while parts and parts[0] == "super":
            base = base[:-1]
            parts = parts[1:]
        return base + parts
    return None


def uses(text: str) -> list:
    """Every crate-relative path `text` names (comments removed)."""
    text = COMMENT.sub("", text)
    found = [p for m in USE.finditer(text) for p in expand(m.group(1))]
    return found + INLINE.findall(USE.sub("", text))


def build():
    """(file graph per room, room graph): {node: set(nodes)}."""
    files = sorted(SRC.rglob("*.rs"))
    modules = {tuple(module_path(f)): f for f in files}

    def file_of(target: list) -> list:
        """The longest prefix of `target` that is a module file."""
        for n in range(len(target), 0, -1):
            if tuple(target[:n]) in modules:
                return target[:n]
        return None

    # What each mod.rs re-exports: {(module, name): file it comes from}.
    reexports = {}
    for f in files:
        if f.name != "mod.rs":
            continue
        here = module_path(f)
        for m in re.finditer(r"pub\s+use\s+([^;]+);", COMMENT.sub("", f.read_text())):
            for used in expand(m.group(1)):
                target = resolve(here, used) or resolve(here, "self::" + used)
                source = file_of(target) if target else None
                if source and len(source) > len(here):
                    reexports[(tuple(here), used.split("::")[-1])] = source

    file_graph = {room: {} for room in FILE_ROOMS}
    room_graph = {}
    for f in files:
        current = module_path(f)
        if not current:
            continue
        for used in uses(f.read_text()):
            target = resolve(current, used)
            if not target:
                continue
            module = file_of(target)
            if not module:
                continue
            if len(target) > len(module):
                module = reexports.get((tuple(module), target[len(module)]), module)
            if module[0] != current[0]:
                room_graph.setdefault(current[0], set()).add(module[0])
            if (
                current[0] in FILE_ROOMS
                and module[0] == current[0]
                and len(current) >= 2
                and len(module) >= 2
                and module[1] != current[1]
            ):
                file_graph[current[0]].setdefault(current[1], set()).add(module[1])
    return file_graph, room_graph


def cycles(graph: dict) -> list:
    """One cycle per strongly connected component of more than one node
    (or a node using itself), as a list of nodes ending where it started."""
    index, low, stack, on, found = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(path_within(graph, set(component)))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def path_within(graph: dict, component: set) -> list:
    """A closed walk through `component` from its first node back to it."""
    start = min(component)
    prev = {start: None}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph.get(v, ())):
            if w == start:
                walk = [w, v]
                while prev[walk[-1]] is not None:
                    walk.append(prev[walk[-1]])
                return list(reversed(walk))
            if w in component and w not in prev:
                prev[w] = v
                queue.append(w)
    return [start, start]


def main() -> int:
    file_graph, room_graph = build()
    if "--dot" in sys.argv:
        print("digraph rooms {")
        for a in sorted(room_graph):
            for b in sorted(room_graph[a]):
                print(f'  "{a}" -> "{b}";')
        print("}")
        return 0
    bad = 0
    for room, graph in file_graph.items():
        for cycle in cycles(graph):
            bad += 1
            print(f"cycle between files of src/{room}/: " + " -> ".join(cycle))
    for cycle in cycles(room_graph):
        bad += 1
        print("cycle between rooms of src/: " + " -> ".join(cycle))
    if not bad:
        rooms = ", ".join(f"src/{r}/" for r in FILE_ROOMS)
        print(f"no import cycle between files of {rooms} nor between rooms")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
