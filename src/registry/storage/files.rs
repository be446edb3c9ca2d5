//! Durable file operations: atomic replace (write beside, fsync, rename,
//! fsync the directory) and random identifiers.

use std::io::Write as _;
use std::path::Path;

/// 128 random bits as 32 lower-case hex characters.
pub fn random_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Whether `id` looks like one of ours (so it is safe in a path).
pub fn is_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Flush a directory entry change (create, rename) to disk.
pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Move a complete, fsynced file into place, creating the parent.
pub fn rename_into_place(from: &Path, to: &Path) -> std::io::Result<()> {
    let parent = to.parent().expect("storage paths have parents");
    std::fs::create_dir_all(parent)?;
    std::fs::rename(from, to)?;
    fsync_dir(parent)
}

/// Replace `target` with `bytes` atomically, writing first to `tmp`.
pub fn write_atomic(tmp: &Path, target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let result = (|| {
        let mut file = std::fs::File::create(tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        rename_into_place(tmp, target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}
