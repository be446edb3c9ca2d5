//! Local users from `/etc/passwd`: whose `~/.docker/config.json` to edit,
//! and the uid that names their `/run/user/<uid>`.

use std::path::PathBuf;

use super::HostPaths;

/// Why a user could not be found.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// `/etc/passwd` could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// Host path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// No such user.
    #[error("user {0:?} does not exist in /etc/passwd")]
    Unknown(String),
}

/// A local account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory, as a host path.
    pub home: PathBuf,
}

/// Find `name` (or a numeric uid) in the host's `/etc/passwd`.
pub fn lookup(paths: &HostPaths, name: &str) -> Result<Account, UserError> {
    let path = paths.etc_passwd();
    let text = std::fs::read_to_string(&path).map_err(|source| UserError::Read {
        path: paths.display(&path),
        source,
    })?;
    let by_uid: Option<u32> = name.parse().ok();
    text.lines()
        .filter_map(parse_line)
        .find(|u| u.name == name || Some(u.uid) == by_uid)
        .ok_or_else(|| UserError::Unknown(name.to_string()))
}

fn parse_line(line: &str) -> Option<Account> {
    let fields: Vec<&str> = line.split(':').collect();
    if fields.len() < 7 || line.starts_with('#') {
        return None;
    }
    Some(Account {
        name: fields[0].to_string(),
        uid: fields[2].parse().ok()?,
        gid: fields[3].parse().ok()?,
        home: PathBuf::from(fields[5]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_users_by_name_and_uid() {
        let dir = tempfile::tempdir().unwrap();
        let paths = HostPaths::under(dir.path());
        std::fs::create_dir_all(paths.path("/etc")).unwrap();
        std::fs::write(
            paths.etc_passwd(),
            "root:x:0:0:root:/root:/bin/bash\nzuul:x:1000:1001::/home/zuul:/bin/sh\n",
        )
        .unwrap();
        let zuul = lookup(&paths, "zuul").unwrap();
        assert_eq!((zuul.uid, zuul.gid), (1000, 1001));
        assert_eq!(zuul.home, PathBuf::from("/home/zuul"));
        assert_eq!(lookup(&paths, "0").unwrap().name, "root");
        assert_eq!(
            lookup(&paths, "nobody").unwrap_err().to_string(),
            "user \"nobody\" does not exist in /etc/passwd"
        );
    }
}
