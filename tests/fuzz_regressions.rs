//! Every input stored under `fuzz/regressions/<target>/` (the crashes
//! `make fuzz` found, and hand-made inputs at the edges of each grammar)
//! replayed through the entry its fuzz target runs: each must return,
//! never panic. The entries are the fuzz crate's own file, included here,
//! so this runs in the ordinary test command without cargo-fuzz.

use std::path::{Path, PathBuf};

#[path = "../fuzz/src/entries.rs"]
mod entries;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, sorted; none when it is missing.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    found.retain(|p| p.is_file());
    found.sort();
    found
}

#[test]
fn every_stored_fuzz_input_is_answered_without_a_panic() {
    let mut replayed = 0;
    let mut panicked = Vec::new();
    for (target, entry) in entries::TARGETS {
        let dir = fuzz_dir().join("regressions").join(target);
        let inputs = files(&dir);
        assert!(
            !inputs.is_empty(),
            "{} holds no input for the fuzz target {target}",
            dir.display()
        );
        for input in inputs {
            let data = std::fs::read(&input).unwrap();
            if std::panic::catch_unwind(|| entry(&data)).is_err() {
                panicked.push(input.display().to_string());
            }
            replayed += 1;
        }
    }
    assert!(panicked.is_empty(), "these inputs panic: {panicked:#?}");
    assert!(replayed >= 2 * entries::TARGETS.len(), "{replayed} inputs");
}

#[test]
fn every_fuzz_target_has_an_entry_and_every_entry_a_target() {
    let name = |p: &PathBuf| p.file_stem().unwrap().to_string_lossy().into_owned();
    let targets: Vec<String> = files(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .map(name)
        .collect();
    let mut entries: Vec<String> = entries::TARGETS
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    entries.sort();
    assert_eq!(targets, entries, "fuzz/fuzz_targets/ and entries::TARGETS");
    let mut stored: Vec<String> = std::fs::read_dir(fuzz_dir().join("regressions"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    stored.sort();
    assert_eq!(stored, entries, "fuzz/regressions/ and entries::TARGETS");
}
