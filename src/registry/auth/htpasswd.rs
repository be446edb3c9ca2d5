//! Apache `htpasswd` files, as `htpasswd -B` writes them and distribution's
//! `registry:2` reads them: one `user:hash` per line, bcrypt hashes only
//! (`$2y$`, also `$2b$`/`$2a$`). Other hash kinds (MD5 `$apr1$`, `{SHA}`,
//! crypt, plain text) are refused: they are fast to brute-force.
//! Errors name the file and line, never the hash.

use std::path::{Path, PathBuf};

/// One entry of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Login name.
    pub username: String,
    /// bcrypt hash of the password.
    pub password_bcrypt: String,
}

/// Why an htpasswd file is refused.
#[derive(Debug, thiserror::Error)]
pub enum HtpasswdError {
    /// The file cannot be read.
    #[error("reading htpasswd file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not `user:hash`.
    #[error("htpasswd file {}, line {line}: expected USER:HASH", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// A hash is of another kind than bcrypt, or not a valid bcrypt hash.
    #[error(
        "htpasswd file {}, line {line}: the password of user {username:?} is {kind}, \
         not bcrypt; recreate it with `htpasswd -B`",
        path.display()
    )]
    NotBcrypt {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Whose.
        username: String,
        /// What kind of hash it looks like (never the hash itself).
        kind: &'static str,
    },
    /// A user is listed twice.
    #[error("htpasswd file {}, line {line}: user {username:?} is listed twice", path.display())]
    Duplicate {
        /// The file.
        path: PathBuf,
        /// 1-based line number of the second entry.
        line: usize,
        /// Whose.
        username: String,
    },
}

/// Read and check an htpasswd file.
pub fn read(path: &Path) -> Result<Vec<Entry>, HtpasswdError> {
    let text = std::fs::read_to_string(path).map_err(|source| HtpasswdError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parse the text of an htpasswd file (`path` is for messages).
pub fn parse(path: &Path, text: &str) -> Result<Vec<Entry>, HtpasswdError> {
    let mut entries: Vec<Entry> = Vec::new();
    // Names seen so far: a set, so that a long file is not read in
    // quadratic time.
    let mut seen = std::collections::HashSet::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let raw = raw.trim_end_matches('\r');
        if raw.trim().is_empty() || raw.starts_with('#') {
            continue;
        }
        let (username, hash) = raw
            .split_once(':')
            .filter(|(user, hash)| !user.is_empty() && !hash.is_empty())
            .ok_or_else(|| HtpasswdError::Syntax {
                path: path.to_path_buf(),
                line,
            })?;
        if let Some(kind) = not_bcrypt(hash) {
            return Err(HtpasswdError::NotBcrypt {
                path: path.to_path_buf(),
                line,
                username: username.to_string(),
                kind,
            });
        }
        if !seen.insert(username) {
            return Err(HtpasswdError::Duplicate {
                path: path.to_path_buf(),
                line,
                username: username.to_string(),
            });
        }
        entries.push(Entry {
            username: username.to_string(),
            password_bcrypt: hash.to_string(),
        });
    }
    Ok(entries)
}

/// `None` for a well-formed bcrypt hash, else what it looks like.
fn not_bcrypt(hash: &str) -> Option<&'static str> {
    if ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) {
        return match hash.parse::<bcrypt::HashParts>() {
            Ok(_) => None,
            Err(_) => Some("a malformed bcrypt hash"),
        };
    }
    Some(if hash.starts_with("$apr1$") {
        "an MD5 ($apr1$) hash"
    } else if hash.starts_with("{SHA}") {
        "a SHA-1 ({SHA}) hash"
    } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
        "a SHA-crypt hash"
    } else if hash.len() == 13 {
        "a DES crypt hash"
    } else {
        "plain text or an unknown hash"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `htpasswd -nbB -C 5 zuul pw`.
    const BCRYPT: &str = "$2y$05$mN1YmFn/URr8t9nRSJvSoOXIDbTmoWsU/puZwUnoBwq6jf5kMGhEW";

    #[test]
    fn reads_bcrypt_entries_and_skips_blank_lines() {
        let text = format!("zuul:{BCRYPT}\n\nreader:{BCRYPT}\r\n");
        let entries = parse(Path::new("h"), &text).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].username, "reader");
        assert_eq!(entries[1].password_bcrypt, BCRYPT);
    }

    #[test]
    fn a_long_file_is_read_in_linear_time() {
        // 100,000 users: the duplicate check was quadratic (minutes).
        let text: String = (0..100_000)
            .map(|i| format!("user{i}:{BCRYPT}\n"))
            .collect();
        let started = std::time::Instant::now();
        assert_eq!(parse(Path::new("h"), &text).unwrap().len(), 100_000);
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    }

    #[test]
    fn other_hash_kinds_are_refused_naming_the_line_not_the_hash() {
        let md5 = "$apr1$abcdefgh$0123456789abcdefghijkl";
        let text = format!("zuul:{BCRYPT}\nold:{md5}\n");
        let error = parse(Path::new("/etc/htpasswd"), &text)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "htpasswd file /etc/htpasswd, line 2: the password of user \"old\" is an MD5 \
             ($apr1$) hash, not bcrypt; recreate it with `htpasswd -B`"
        );
        for (hash, kind) in [
            ("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "a SHA-1 ({SHA}) hash"),
            ("secret", "plain text or an unknown hash"),
            ("$2y$05$short", "a malformed bcrypt hash"),
        ] {
            let error = parse(Path::new("h"), &format!("u:{hash}\n"))
                .unwrap_err()
                .to_string();
            assert!(error.contains(kind), "{error}");
            assert!(!error.contains(hash), "{error}");
        }
        assert_eq!(
            parse(
                Path::new("h"),
                &format!("a:{BCRYPT}\nb:{BCRYPT}\na:{BCRYPT}\n")
            )
            .unwrap_err()
            .to_string(),
            "htpasswd file h, line 3: user \"a\" is listed twice"
        );
        assert_eq!(
            parse(Path::new("h"), "nocolon\n").unwrap_err().to_string(),
            "htpasswd file h, line 1: expected USER:HASH"
        );
    }
}
