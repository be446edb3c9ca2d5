//! What can go wrong while building or pushing an image.

use std::path::PathBuf;
use std::process::ExitStatus;

/// A builder's failure. A failed command carries the last lines of its
/// output, so the user sees why without opening the log.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `container_command` names no builder we have.
    #[error("container_command {0:?} is not a known builder: use docker, podman or buildah")]
    UnknownBuilder(String),
    /// A multi-arch docker build needs BuildKit, which no docker CLI on
    /// `PATH` drives here.
    #[error(
        "`arch` with docker needs BuildKit: a docker CLI with the buildx plugin, or one \
         older than 23 (Debian's docker.io), which drives the daemon's own BuildKit; \
         none on PATH does ({found})"
    )]
    NoBuildKit {
        /// The docker CLIs found, with their versions.
        found: String,
    },
    /// A command succeeded but did not leave what it should have.
    #[error("`{command}` {problem}")]
    Output {
        /// The command.
        command: String,
        /// What is missing or wrong.
        problem: String,
    },
    /// The command could not be started.
    #[error("running {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why it did not start.
        source: std::io::Error,
    },
    /// The command ran and failed.
    #[error("`{command}` failed ({status}); last lines of its output:\n{tail}")]
    Failed {
        /// The command, shortened to what identifies it.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its last lines of output.
        tail: String,
    },
    /// A local file the builder needs could not be read or written.
    #[error("{action} {path}: {source}")]
    File {
        /// What was being done (`writing the registry credentials to`).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl BuildError {
    /// Wrap an I/O error on `path`.
    pub fn file(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BuildError::File {
            action,
            path: path.into(),
            source,
        }
    }
}
