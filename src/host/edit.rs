//! One planned file edit: the path, the old and new content, and how to
//! write it. Planning reads; only [`FileEdit::apply`] writes.

use std::path::{Path, PathBuf};

use super::atomic::{write_atomic, Ownership};
use super::HostPaths;
use crate::ansible::FileDiff;

/// Why a file could not be planned or written.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// Host path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The existing content is not something we can edit safely.
    #[error("{path}: {reason}; the file was left untouched")]
    Invalid {
        /// Host path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Writing failed.
    #[error("writing {path}: {source}")]
    Write {
        /// Host path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// A file's planned new content beside its current content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEdit {
    /// Where it is on disk.
    pub path: PathBuf,
    /// The host path, for messages and diffs (`/etc/hosts`).
    pub display: String,
    /// Current content; `None` when the file does not exist.
    pub before: Option<String>,
    /// Content after the edit.
    pub after: String,
    /// Mode and owner to write it with.
    pub ownership: Ownership,
    /// Mode of parent directories we create.
    pub dir_mode: u32,
}

impl FileEdit {
    /// Plan an edit of `path`: read it, and compute the new content with
    /// `edit`, whose error text becomes an [`EditError::Invalid`] naming
    /// the file.
    pub fn plan<E: std::fmt::Display>(
        paths: &HostPaths,
        path: &Path,
        ownership: Ownership,
        edit: impl FnOnce(Option<&str>) -> Result<String, E>,
    ) -> Result<FileEdit, EditError> {
        let display = paths.display(path);
        let before = read_optional(path).map_err(|source| EditError::Read {
            path: display.clone(),
            source,
        })?;
        let after = edit(before.as_deref()).map_err(|e| EditError::Invalid {
            path: display.clone(),
            reason: e.to_string(),
        })?;
        Ok(FileEdit {
            path: path.to_path_buf(),
            display,
            before,
            after,
            ownership,
            dir_mode: 0o755,
        })
    }

    /// Parent directories we create get `mode` (a private `~/.docker`).
    pub fn with_dir_mode(mut self, mode: u32) -> Self {
        self.dir_mode = mode;
        self
    }

    /// Whether the file would change.
    pub fn changed(&self) -> bool {
        self.before.as_deref() != Some(self.after.as_str())
    }

    /// The diff Ansible shows with `--diff`.
    pub fn diff(&self) -> FileDiff {
        FileDiff::new(
            self.display.clone(),
            self.before.clone().unwrap_or_default(),
            self.after.clone(),
        )
    }

    /// Write the new content when it differs; returns whether it wrote.
    pub fn apply(&self) -> Result<bool, EditError> {
        if !self.changed() {
            return Ok(false);
        }
        write_atomic(
            &self.path,
            self.after.as_bytes(),
            self.ownership,
            self.dir_mode,
        )
        .map_err(|source| EditError::Write {
            path: self.display.clone(),
            source,
        })?;
        Ok(true)
    }
}

/// The file's text, or `None` when it does not exist.
pub fn read_optional(path: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_then_applies_only_changes() {
        let dir = tempfile::tempdir().unwrap();
        let paths = HostPaths::under(dir.path());
        let path = paths.path("/etc/thing.conf");
        let edit = FileEdit::plan(&paths, &path, Ownership::keep_or(0o644), |old| {
            assert!(old.is_none());
            Ok::<_, String>("a\n".to_string())
        })
        .unwrap();
        assert!(edit.changed());
        assert_eq!(edit.diff().before_header, "/etc/thing.conf");
        assert!(!path.exists(), "planning writes nothing");
        assert!(edit.apply().unwrap());
        let again = FileEdit::plan(&paths, &path, Ownership::keep_or(0o644), |old| {
            Ok::<_, String>(old.unwrap().to_string())
        })
        .unwrap();
        assert!(!again.changed());
        assert!(!again.apply().unwrap());
    }

    #[test]
    fn invalid_content_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let paths = HostPaths::under(dir.path());
        let err = FileEdit::plan(
            &paths,
            &paths.path("/etc/x.json"),
            Ownership::keep_or(0o644),
            |_| Err("not valid JSON"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/x.json: not valid JSON; the file was left untouched"
        );
    }
}
