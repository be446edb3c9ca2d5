//! A server killed with SIGKILL in the middle of a 200 MiB upload restarts
//! serving only complete, verified content: the partial blob is not
//! served, and the next push of it succeeds. While the upload streams,
//! the server's memory stays far below the blob's size.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use speculative_images::oci::{Algorithm, Digest};

use crate::support::buildset::BuildsetServer;
use crate::support::wait_until;

const BLOB_SIZE: usize = 200 << 20;

/// Write 200 MiB of incompressible bytes to `path` (one random MiB,
/// each copy stamped with its index); returns their digest.
fn write_blob(path: &Path) -> Digest {
    let mut block = vec![0u8; 1 << 20];
    rand::Rng::fill(&mut rand::rng(), &mut block[..]);
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut hasher = Algorithm::Sha256.hasher();
    for i in 0..BLOB_SIZE / block.len() {
        block[..8].copy_from_slice(&(i as u64).to_le_bytes());
        hasher.update(&block);
        file.write_all(&block).unwrap();
    }
    file.flush().unwrap();
    hasher.finish()
}

/// `curl` sending `file` to `url` with `method` as the registry user.
fn curl_upload(
    registry: &BuildsetServer,
    ca: &Path,
    method: &str,
    url: &str,
    file: &Path,
) -> Command {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail", "-X", method, "-o", "/dev/null", "-D", "-"])
        .arg("--cacert")
        .arg(ca)
        .arg("-u")
        .arg(format!("{}:{}", registry.username, registry.password))
        .args([
            "-H",
            "Content-Type: application/octet-stream",
            "-H",
            "Expect:",
        ])
        .arg("--upload-file")
        .arg(file)
        .arg(url);
    cmd
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn sigkill_mid_upload_leaves_nothing_served_and_the_next_push_succeeds() {
    let mut registry = BuildsetServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (blob, ca) = (dir.path().join("blob"), dir.path().join("ca.pem"));
    std::fs::write(&ca, &registry.ca_pem).unwrap();
    let digest = write_blob(&blob);
    let client = registry.client();
    let blob_url = format!("{}/v2/org/big/blobs/{digest}", registry.url());
    let start_upload = |registry: &BuildsetServer| -> String {
        let reply = client
            .post(format!("{}/v2/org/big/blobs/uploads/", registry.url()))
            .basic_auth(&registry.username, Some(&registry.password))
            .send()
            .unwrap();
        assert_eq!(reply.status(), 202);
        format!(
            "{}{}",
            registry.url(),
            reply.headers()["location"].to_str().unwrap()
        )
    };

    // A slow upload, killed once a good part of it is on disk.
    let location = start_upload(&registry);
    let mut sender = curl_upload(&registry, &ca, "PATCH", &location, &blob)
        .args(["--limit-rate", "50M"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let uploads = registry.storage.join("uploads");
    let partial_size = || -> u64 {
        std::fs::read_dir(&uploads)
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::metadata(e.path().join("data")).ok())
            .map(|m| m.len())
            .sum()
    };
    wait_until(
        "the partial upload on disk",
        Duration::from_secs(30),
        || partial_size() > 64 << 20,
    );
    let rss = rss_kib(registry.pid().unwrap());
    assert!(
        rss < 64 * 1024,
        "server RSS {rss} KiB while receiving 200 MiB"
    );
    registry.kill();
    assert!(!sender.wait().unwrap().success(), "the upload was cut");
    let on_disk = partial_size();
    assert!(
        on_disk > 0 && on_disk < BLOB_SIZE as u64,
        "partial upload of {on_disk} bytes"
    );

    // After the restart the partial blob is not served.
    registry.restart();
    assert_eq!(
        client.head(&blob_url).send().unwrap().status(),
        404,
        "{}",
        registry.log()
    );
    assert_eq!(client.get(&blob_url).send().unwrap().status(), 404);
    let blob_file = registry
        .storage
        .join("blobs/sha256")
        .join(&digest.hex()[..2])
        .join(digest.hex());
    assert!(!blob_file.exists(), "no blob file for the partial upload");

    // The next push succeeds and serves exactly the blob.
    let location = start_upload(&registry);
    let separator = if location.contains('?') { '&' } else { '?' };
    crate::support::run(&mut curl_upload(
        &registry,
        &ca,
        "PUT",
        &format!("{location}{separator}digest={digest}"),
        &blob,
    ));
    let head = client.head(&blob_url).send().unwrap();
    assert_eq!(head.status(), 200, "{}", registry.log());
    assert_eq!(
        head.headers()["content-length"],
        BLOB_SIZE.to_string().as_str()
    );
    assert_eq!(
        head.headers()["docker-content-digest"],
        digest.to_string().as_str()
    );
    // The server verified the digest before storing; check the tail too.
    let tail = client
        .get(&blob_url)
        .header("range", "bytes=-4096")
        .send()
        .unwrap();
    assert_eq!(tail.status(), 206);
    let expected = std::fs::read(&blob).unwrap();
    assert_eq!(&tail.bytes().unwrap()[..], &expected[BLOB_SIZE - 4096..]);
}
