//! Sibling projects copied into a build context for the length of one
//! build: `~/src/<sibling>` to `<context>/.zuul-siblings/<sibling>`, removed
//! when the copy is dropped, so also when the build fails.

use std::path::{Path, PathBuf};

use super::BuildError;

/// The directory, inside the build context, siblings are copied to.
pub const SIBLINGS_DIR: &str = ".zuul-siblings";

/// The build argument naming the copied siblings (space separated).
pub const SIBLINGS_BUILD_ARG: &str = "ZUUL_SIBLINGS";

/// Siblings copied into a context; removed on drop.
#[derive(Debug)]
pub struct SiblingsCopy {
    dir: PathBuf,
}

impl SiblingsCopy {
    /// Copy each of `siblings` from `src_root` into
    /// `<context_dir>/.zuul-siblings`. A leftover `.zuul-siblings` is an
    /// error rather than something to delete: it is not ours.
    pub fn create(
        context_dir: &Path,
        src_root: &Path,
        siblings: &[String],
    ) -> Result<SiblingsCopy, BuildError> {
        let dir = context_dir.join(SIBLINGS_DIR);
        if dir.symlink_metadata().is_ok() {
            return Err(BuildError::file(
                "refusing to copy siblings over the existing",
                dir,
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            ));
        }
        std::fs::create_dir(&dir).map_err(|e| BuildError::file("creating", dir.clone(), e))?;
        // From here on, dropping `copy` cleans up whatever was copied.
        let copy = SiblingsCopy { dir };
        for sibling in siblings {
            let from = src_root.join(sibling);
            if !from.is_dir() {
                return Err(BuildError::file(
                    "sibling project not found at",
                    from,
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ));
            }
            copy_tree(&from, &copy.dir.join(sibling))?;
        }
        Ok(copy)
    }

    /// Where the siblings are.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for SiblingsCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `ZUUL_SIBLINGS=a b` build argument for `siblings`.
pub fn build_arg(siblings: &[String]) -> String {
    format!("{SIBLINGS_BUILD_ARG}={}", siblings.join(" "))
}

/// Copy a directory tree, keeping symlinks as symlinks and file modes.
fn copy_tree(from: &Path, to: &Path) -> Result<(), BuildError> {
    std::fs::create_dir_all(to).map_err(|e| BuildError::file("creating", to, e))?;
    let entries = std::fs::read_dir(from).map_err(|e| BuildError::file("reading", from, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| BuildError::file("reading", from, e))?;
        let source = entry.path();
        let dest = to.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| BuildError::file("reading", &source, e))?;
        if kind.is_dir() {
            copy_tree(&source, &dest)?;
        } else if kind.is_symlink() {
            let link =
                std::fs::read_link(&source).map_err(|e| BuildError::file("reading", &source, e))?;
            std::os::unix::fs::symlink(link, &dest)
                .map_err(|e| BuildError::file("creating", &dest, e))?;
        } else {
            std::fs::copy(&source, &dest).map_err(|e| BuildError::file("copying", &source, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_and_cleans_up() {
        let home = tempfile::tempdir().unwrap();
        let src = home.path().join("src");
        let lib = src.join("example.org/org/lib");
        std::fs::create_dir_all(lib.join("pkg")).unwrap();
        std::fs::write(lib.join("pkg/mod.txt"), "x").unwrap();
        std::os::unix::fs::symlink("pkg/mod.txt", lib.join("link")).unwrap();
        let context = home.path().join("ctx");
        std::fs::create_dir(&context).unwrap();

        let siblings = vec!["example.org/org/lib".to_string()];
        let copy = SiblingsCopy::create(&context, &src, &siblings).unwrap();
        let copied = context.join(".zuul-siblings/example.org/org/lib");
        assert_eq!(
            std::fs::read_to_string(copied.join("pkg/mod.txt")).unwrap(),
            "x"
        );
        assert_eq!(
            std::fs::read_link(copied.join("link")).unwrap(),
            Path::new("pkg/mod.txt")
        );
        assert_eq!(build_arg(&siblings), "ZUUL_SIBLINGS=example.org/org/lib");
        drop(copy);
        assert!(!context.join(".zuul-siblings").exists());

        let missing = vec!["nope".to_string()];
        let err = SiblingsCopy::create(&context, &src, &missing).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "sibling project not found at {}: ",
                src.join("nope").display()
            )),
            "{err}"
        );
        assert!(!context.join(".zuul-siblings").exists());
    }
}
