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

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::path::Path;
    use std::process::Command;
    use std::time::Duration;

    use super::write_atomic;

    /// Set in the child process that replaces a file until it is killed:
    /// the way to write (`atomic` or `in-place`) and the directory.
    const CHILD_ENV: &str = "SPECULATIVE_IMAGES_TORN_WRITE_CHILD";
    /// Large enough that a kill lands inside a write, which a 71-byte tag
    /// never lets happen: the same function writes both.
    const PAYLOAD: usize = 8 << 20;

    fn payload(round: usize) -> Vec<u8> {
        vec![b'a' + (round % 2) as u8; PAYLOAD]
    }

    /// Replace `dir/file` with alternating whole payloads, forever.
    fn replace_forever(way: &str, dir: &Path) -> ! {
        let (tmp, target) = (dir.join("tmp"), dir.join("file"));
        for round in 0.. {
            let bytes = payload(round);
            if way == "atomic" {
                write_atomic(&tmp, &target, &bytes).unwrap();
            } else {
                // What a torn write looks like: truncate, then write in place.
                let mut file = std::fs::File::create(&target).unwrap();
                file.write_all(&bytes).unwrap();
            }
        }
        unreachable!()
    }

    /// Kill a child replacing the file in `way` at varied moments until
    /// `enough(torn, mid_write)` or `max_rounds`: the count of rounds in
    /// which the file was left torn (neither payload whole), and of rounds
    /// in which the kill landed mid-write (a partial file beside it, for
    /// `atomic`; kills that land in the fsync or the rename do not count).
    fn kill_while_replacing(
        way: &str,
        max_rounds: u64,
        enough: impl Fn(u64, u64) -> bool,
    ) -> (u64, u64) {
        let this_test = format!(
            "{}::every_kill_leaves_the_old_or_the_new_bytes_whole",
            module_path!().split_once("::").unwrap().1
        );
        let (mut torn, mut mid_write) = (0, 0);
        for round in 0..max_rounds {
            if enough(torn, mid_write) {
                break;
            }
            let dir = tempfile::tempdir().unwrap();
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args(["--exact", &this_test, "--nocapture", "--test-threads", "1"])
                .env(CHILD_ENV, format!("{way}:{}", dir.path().display()))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            // Let it replace the file a few times, then kill it somewhere.
            let target = dir.path().join("file");
            while !target.exists() {
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(Duration::from_millis(5 + (round * 7) % 40));
            child.kill().unwrap();
            child.wait().unwrap();
            let held = std::fs::read(&target).unwrap();
            if held != payload(0) && held != payload(1) {
                torn += 1;
            }
            let tmp = std::fs::metadata(dir.path().join("tmp")).map(|m| m.len());
            if matches!(tmp, Ok(len) if len < PAYLOAD as u64) {
                mid_write += 1;
            }
        }
        (torn, mid_write)
    }

    /// The proof a tag is never torn: a process SIGKILLed while it
    /// replaces a file with [`write_atomic`] (as every tag, revision and
    /// manifest is written) leaves the old or the new bytes whole, also
    /// when the kill lands mid-write; the same kills tear a file written
    /// in place, so the check can see a torn file.
    #[test]
    fn every_kill_leaves_the_old_or_the_new_bytes_whole() {
        if let Ok(child) = std::env::var(CHILD_ENV) {
            let (way, dir) = child.split_once(':').unwrap();
            replace_forever(way, Path::new(dir));
        }
        let (torn, mid_write) = kill_while_replacing("atomic", 200, |_, mid| mid >= 3);
        assert_eq!(torn, 0, "write_atomic left a torn file");
        assert!(
            mid_write >= 3,
            "only {mid_write} kill(s) in 200 landed mid-write"
        );
        let (torn, _) = kill_while_replacing("in-place", 50, |torn, _| torn >= 1);
        assert!(
            torn > 0,
            "no in-place write was torn: the check cannot see a torn file"
        );
    }
}
