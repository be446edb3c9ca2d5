//! The prune lock: `<root>/prune.lock`, an `flock(2)` lock that a
//! manifest PUT holds shared while it checks that what the manifest names
//! is stored and commits it, and that a prune holds exclusive while it
//! decides what nothing references and deletes it. So a manifest is either
//! committed before the prune looks (and keeps its blobs) or checks its
//! blobs after the prune has deleted what it deletes (and is refused with
//! BLOB_UNKNOWN, never stored without them). An `flock` lock works
//! between processes (`speculative-images prune` beside a running `serve`)
//! and between open files of one process (the schedule inside `serve`).

use std::os::fd::AsRawFd as _;

use super::paths::Layout;
use super::{io_context, Result};

/// A held lock; released when dropped (the file is closed).
pub struct PruneLock {
    _file: std::fs::File,
}

/// Create the lock file if it is missing (at open, so that the store's
/// tree does not change on the first PUT).
pub fn ensure(layout: &Layout) -> Result<()> {
    open(layout).map(drop)
}

fn open(layout: &Layout) -> Result<std::fs::File> {
    let path = layout.prune_lock();
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_context(format!("opening {}", path.display())))
}

/// Hold the lock shared (blocking while a prune deletes).
pub fn shared(layout: &Layout) -> Result<PruneLock> {
    lock(layout, libc::LOCK_SH)
}

/// Hold the lock exclusively (blocking while manifests are committed).
pub fn exclusive(layout: &Layout) -> Result<PruneLock> {
    lock(layout, libc::LOCK_EX)
}

fn lock(layout: &Layout, how: libc::c_int) -> Result<PruneLock> {
    let file = open(layout)?;
    loop {
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), how) } == 0 {
            return Ok(PruneLock { _file: file });
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(io_context("taking the prune lock")(error));
        }
    }
}
