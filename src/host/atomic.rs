//! Atomic file replacement: write a sibling temporary file, fsync it, give
//! it the old file's mode and owner, rename it over the target, fsync the
//! directory. A reader sees the old or the new content, never a mix.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode and owner of a file we write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    /// Permission bits (`0o644`).
    pub mode: u32,
    /// `(uid, gid)`, or `None` to leave it to the writing process.
    pub owner: Option<(u32, u32)>,
    /// Whether `mode`/`owner` replace those of an existing file (a file
    /// holding credentials is always made private) or only apply to a new
    /// one (an existing file keeps its own).
    pub enforce: bool,
}

impl Ownership {
    /// A new file gets `mode`, an existing one keeps its mode and owner.
    pub const fn keep_or(mode: u32) -> Self {
        Ownership {
            mode,
            owner: None,
            enforce: false,
        }
    }

    /// The file always ends up with exactly `mode` and `owner`.
    pub const fn exactly(mode: u32, owner: Option<(u32, u32)>) -> Self {
        Ownership {
            mode,
            owner,
            enforce: true,
        }
    }
}

/// Replace `path` with `contents` atomically. Missing parent directories
/// are created with `dir_mode` and the file's owner.
pub fn write_atomic(
    path: &Path,
    contents: &[u8],
    ownership: Ownership,
    dir_mode: u32,
) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    create_dirs(dir, dir_mode, ownership.owner)?;

    let (mode, owner) = match fs::metadata(path) {
        Ok(meta) if !ownership.enforce => (meta.mode() & 0o7777, Some((meta.uid(), meta.gid()))),
        _ => (ownership.mode, ownership.owner),
    };

    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = write_then_rename(&tmp, path, contents, mode, owner);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_then_rename(
    tmp: &Path,
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    {
        // Created private, so a credential never sits world-readable.
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(tmp)?;
        file.write_all(contents)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
        }
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
    }
    match fs::rename(tmp, path) {
        Ok(()) => {}
        // A file bind-mounted into a container (/etc/hosts under docker)
        // cannot be replaced, only rewritten in place.
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            fs::remove_file(tmp)?;
            let mut file = OpenOptions::new().write(true).truncate(true).open(path)?;
            file.write_all(contents)?;
            file.sync_all()?;
            return Ok(());
        }
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// `mkdir -p` giving every directory it creates `mode` and `owner`.
fn create_dirs(dir: &Path, mode: u32, owner: Option<(u32, u32)>) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent, mode, owner)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {
            fs::set_permissions(dir, fs::Permissions::from_mode(mode))?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_mode_of_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&path, b"new", Ownership::keep_or(0o644), 0o755).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o640);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn creates_parents_and_enforces_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/config.json");
        write_atomic(&path, b"{}", Ownership::exactly(0o600, None), 0o700).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
        assert_eq!(
            fs::metadata(dir.path().join("a/b")).unwrap().mode() & 0o7777,
            0o700
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&path, b"{ }", Ownership::exactly(0o600, None), 0o700).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
    }
}
