//! The server under load, faults and bad input (issue 12): deadlines and
//! caps per connection, HTTP/2 memory, capped upload sessions, stalled
//! uploads, a full disk, uploads nobody can name, and a request log that
//! names the user but never a credential. Each test runs the real
//! `speculative-images serve` with its limits shortened.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use speculative_images::oci::Digest;
use speculative_images::registry::config::{Limits, Role, ServerConfig, User};

use crate::support::{free_port, random_password, wait_until};

/// A registry over plain HTTP on 127.0.0.1 with two read-write users,
/// `zuul` and `other`, and the given limits.
struct Server {
    port: u16,
    password: String,
    storage: PathBuf,
    child: Child,
    dir: tempfile::TempDir,
}

impl Server {
    fn start(limits: Limits) -> Server {
        Server::start_with_storage(limits, None)
    }

    fn start_with_storage(limits: Limits, storage: Option<PathBuf>) -> Server {
        Server::start_full(limits, storage, false, None)
    }

    /// The same with the open-file limits set to `soft` and `hard` first.
    fn start_with_fd_limits(limits: Limits, soft: u64, hard: u64) -> Server {
        Server::start_full(limits, None, false, Some((soft, hard)))
    }

    /// The same over TLS (a certificate for 127.0.0.1).
    fn start_tls(limits: Limits) -> Server {
        Server::start_full(limits, None, true, None)
    }

    fn start_full(
        limits: Limits,
        storage: Option<PathBuf>,
        tls: bool,
        fd_limits: Option<(u64, u64)>,
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let tls = tls.then(|| {
            let pair = crate::support::tls::server_pki(dir.path(), &["127.0.0.1"]);
            speculative_images::registry::config::TlsFiles {
                cert: pair.cert_path,
                key: pair.key_path,
            }
        });
        let port = free_port();
        let password = random_password();
        let storage = storage.unwrap_or_else(|| dir.path().join("storage"));
        let user = |name: &str| User {
            username: name.into(),
            password_bcrypt: bcrypt::hash(&password, 4).unwrap(),
            role: Role::ReadWrite,
        };
        let config = ServerConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], port))],
            tls,
            storage: storage.clone(),
            users: vec![user("zuul"), user("other")],
            public_url: None,
            max_token_lifetime_secs: 3600,
            token_secret: hex::encode([7u8; 32]),
            anonymous_pull: true,
            delete_enabled: true,
            limits,
            prune: None,
        };
        let path = dir.path().join("config.json");
        std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let binary = env!("CARGO_BIN_EXE_speculative-images");
        let mut command = match fd_limits {
            None => Command::new(binary),
            Some((soft, hard)) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!(
                        "ulimit -S -n {soft} && ulimit -H -n {hard} && exec \"$0\" \"$@\""
                    ))
                    .arg(binary);
                sh
            }
        };
        let child = command
            .args(["serve", "--config"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let server = Server {
            port,
            password,
            storage,
            child,
            dir,
        };
        wait_until("the registry", Duration::from_secs(30), || {
            TcpStream::connect(server.addr()).is_ok()
        });
        server
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Authorization` for `user`.
    fn basic(&self, user: &str) -> String {
        let creds = format!("{user}:{}", self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(creds)
        )
    }

    /// Upload directories left in the storage.
    fn upload_dirs(&self) -> Vec<String> {
        std::fs::read_dir(self.storage.join("uploads"))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client whose connections come from `127.0.0.2`: another client
/// address than the tests' floods, which come from `127.0.0.1`.
fn other_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// `GET /v2/` answers 200, and quickly.
fn assert_base_answers(client: &reqwest::blocking::Client, server: &Server) {
    let started = Instant::now();
    let reply = client
        .get(server.url("/v2/"))
        .header("authorization", server.basic("zuul"))
        .send()
        .unwrap_or_else(|e| panic!("GET /v2/ got no answer: {e}\n{}", server.log()));
    assert_eq!(reply.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "GET /v2/ took {:?}",
        started.elapsed()
    );
}

/// The test process may open as many files as it is allowed.
fn raise_own_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

/// Whether the server closed `stream` (EOF or reset), without waiting.
fn closed(mut stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    }
}

fn count_closed(streams: &mut [TcpStream]) -> usize {
    streams.iter().filter(|s| closed(s)).count()
}

/// Wait until `ready` holds, up to `timeout`; whether it did.
fn within(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn error_code(body: &str) -> String {
    let value: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    value["errors"][0]["code"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn error_message(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).unwrap();
    value["errors"][0]["message"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn idle_connections_from_one_client_cannot_starve_another_and_are_closed() {
    raise_own_fd_limit();
    let server = Server::start(Limits {
        max_connections_per_client: 100,
        request_head_secs: 3,
        ..Limits::default()
    });
    // 1,100 connections that never send a byte (never start TLS, never
    // send a request).
    let mut idle: Vec<TcpStream> = (0..1100)
        .map(|_| TcpStream::connect(server.addr()).unwrap())
        .collect();
    assert_base_answers(&other_client(), &server);
    // All above the per-client cap are closed at once; the first 100
    // stay open until the deadline.
    assert!(
        within(Duration::from_secs(2), || count_closed(&mut idle) >= 1000),
        "only {} of 1100 were refused",
        count_closed(&mut idle)
    );
    let open = idle.len() - count_closed(&mut idle);
    assert!(open > 0 && open <= 100, "{open} idle connections open");
    assert!(
        within(Duration::from_secs(8), || count_closed(&mut idle) == 1100),
        "{} idle connections still open after the head deadline",
        1100 - count_closed(&mut idle)
    );
    // Their places are free again.
    let again = TcpStream::connect(server.addr()).unwrap();
    let mut again = [again];
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count_closed(&mut again), 0);
}

#[test]
fn a_tls_handshake_that_never_starts_or_stalls_is_closed_at_its_deadline() {
    let server = Server::start_tls(Limits {
        tls_handshake_secs: 2,
        request_head_secs: 30,
        ..Limits::default()
    });
    let started = Instant::now();
    // One sends nothing; one sends half a ClientHello.
    let mut silent = [
        TcpStream::connect(server.addr()).unwrap(),
        TcpStream::connect(server.addr()).unwrap(),
    ];
    silent[1]
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc])
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(count_closed(&mut silent), 0, "closed before the deadline");
    assert!(
        within(Duration::from_secs(5), || count_closed(&mut silent) == 2),
        "handshakes still open after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() >= Duration::from_millis(1800));
}

#[test]
fn the_total_cap_closes_connections_above_it_at_once() {
    let server = Server::start(Limits {
        max_connections: 20,
        request_head_secs: 2,
        ..Limits::default()
    });
    // The readiness probe's connection must be gone first.
    std::thread::sleep(Duration::from_millis(1000));
    let mut held: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(server.addr()).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count_closed(&mut held), 0);
    let mut above = [TcpStream::connect(server.addr()).unwrap()];
    assert!(
        within(Duration::from_secs(1), || count_closed(&mut above) == 1),
        "a connection above the cap was kept"
    );
    // Once the held ones time out, others are served.
    assert!(within(Duration::from_secs(6), || count_closed(&mut held) == 20));
    assert_base_answers(&other_client(), &server);
}

#[test]
fn slowloris_connections_are_closed_at_the_request_head_deadline() {
    raise_own_fd_limit();
    let server = Server::start(Limits {
        max_connections_per_client: 300,
        request_head_secs: 2,
        ..Limits::default()
    });
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr()).unwrap();
            s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    let mut closed_at = vec![None; slow.len()];
    // A header byte from each every 250 ms, for 6 s.
    while started.elapsed() < Duration::from_secs(6) {
        for (i, stream) in slow.iter_mut().enumerate() {
            if closed_at[i].is_none() && (closed(stream) || stream.write_all(b"X").is_err()) {
                closed_at[i] = Some(started.elapsed());
            }
        }
        if started.elapsed() > Duration::from_secs(1) && started.elapsed() < Duration::from_secs(2)
        {
            assert_base_answers(&other_client(), &server);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let early = closed_at
        .iter()
        .filter(|t| t.is_some_and(|t| t < Duration::from_millis(1500)))
        .count();
    assert_eq!(early, 0, "slow clients closed before the deadline");
    let open = closed_at.iter().filter(|t| t.is_none()).count();
    assert_eq!(open, 0, "{open} slowloris connections still open after 6 s");
    assert_base_answers(&other_client(), &server);
}

#[test]
fn upload_sessions_are_capped_per_user_and_in_total_with_429() {
    let server = Server::start(Limits {
        max_uploads: 5,
        max_uploads_per_user: 3,
        ..Limits::default()
    });
    let http = client();
    let start = |user: &str| {
        http.post(server.url("/v2/org/img/blobs/uploads/"))
            .header("authorization", server.basic(user))
            .send()
            .unwrap()
    };
    let mut mine = vec![];
    for _ in 0..3 {
        let reply = start("zuul");
        assert_eq!(reply.status(), 202);
        mine.push(reply.headers()["location"].to_str().unwrap().to_string());
    }
    let refused = start("zuul");
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "10");
    assert_eq!(refused.headers()["content-type"], "application/json");
    assert_eq!(error_code(&refused.text().unwrap()), "TOOMANYREQUESTS");
    // Another user has room until the total is reached.
    assert_eq!(start("other").status(), 202);
    assert_eq!(start("other").status(), 202);
    let refused = start("other");
    assert_eq!(refused.status(), 429);
    assert_eq!(error_code(&refused.text().unwrap()), "TOOMANYREQUESTS");
    // A cancel frees a place.
    let cancel = http
        .delete(server.url(&mine[0]))
        .header("authorization", server.basic("zuul"))
        .send()
        .unwrap();
    assert_eq!(cancel.status(), 204);
    assert_eq!(start("other").status(), 202);
}

#[test]
fn idle_upload_sessions_hold_no_file_descriptor() {
    let server = Server::start(Limits::default());
    let http = client();
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
            .unwrap()
            .count()
    };
    assert_base_answers(&http, &server);
    let before = fds();
    for _ in 0..100 {
        let reply = http
            .post(server.url("/v2/org/img/blobs/uploads/"))
            .header("authorization", server.basic("zuul"))
            .send()
            .unwrap();
        assert_eq!(reply.status(), 202);
        let location = reply.headers()["location"].to_str().unwrap().to_string();
        let patch = http
            .patch(server.url(&location))
            .header("authorization", server.basic("zuul"))
            .body(vec![1u8; 1000])
            .send()
            .unwrap();
        assert_eq!(patch.status(), 202);
    }
    let after = fds();
    assert!(
        after < before + 10,
        "100 idle uploads hold {} descriptors",
        after - before
    );
}

/// A raw HTTP/1.1 PATCH that declares `declared` bytes and sends `sent`.
fn stalled_patch(server: &Server, location: &str, declared: u64, sent: usize) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n",
        server.basic("zuul")
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&vec![7u8; sent]).unwrap();
    stream
}

fn start_upload(server: &Server) -> String {
    let reply = client()
        .post(server.url("/v2/org/img/blobs/uploads/"))
        .header("authorization", server.basic("zuul"))
        .send()
        .unwrap();
    assert_eq!(reply.status(), 202);
    reply.headers()["location"].to_str().unwrap().to_string()
}

#[test]
fn a_stalled_patch_blocks_neither_status_nor_cancel_and_times_out() {
    let server = Server::start(Limits {
        stall_secs: 2,
        ..Limits::default()
    });
    let http = client();
    let status = |location: &str| {
        let started = Instant::now();
        let reply = http
            .get(server.url(location))
            .header("authorization", server.basic("zuul"))
            .send()
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "status took {:?}",
            started.elapsed()
        );
        reply
    };

    // 4 GiB declared, 1 MiB sent, then nothing.
    let first = start_upload(&server);
    let _stalled = stalled_patch(&server, &first, 4 << 30, 1 << 20);
    assert!(
        within(Duration::from_secs(3), || {
            let reply = status(&first);
            assert_eq!(reply.status(), 204);
            reply.headers()["range"] == "0-1048575"
        }),
        "the status never showed the first MiB"
    );
    let started = Instant::now();
    let cancel = http
        .delete(server.url(&first))
        .header("authorization", server.basic("zuul"))
        .send()
        .unwrap();
    assert_eq!(cancel.status(), 204);
    assert!(started.elapsed() < Duration::from_millis(1000));
    let gone = status(&first);
    assert_eq!(gone.status(), 404);
    assert_eq!(error_code(&gone.text().unwrap()), "BLOB_UPLOAD_UNKNOWN");

    // A stalled body ends after the stall deadline with what arrived
    // written, and the upload goes on from there.
    let second = start_upload(&server);
    let sent = (1 << 20) + 1000;
    let mut stalled = stalled_patch(&server, &second, 4 << 30, sent);
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    let mut answer = vec![0u8; 4096];
    let n = stalled.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("BLOB_UPLOAD_INVALID"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let reply = status(&second);
    assert_eq!(reply.status(), 204);
    assert_eq!(reply.headers()["range"], format!("0-{}", sent - 1));
    let more = http
        .patch(server.url(&second))
        .header("authorization", server.basic("zuul"))
        .header("content-range", format!("{sent}-{}", sent + 9))
        .body(vec![7u8; 10])
        .send()
        .unwrap();
    assert_eq!(more.status(), 202);
    assert_eq!(more.headers()["range"], format!("0-{}", sent + 9));
    let digest = Digest::sha256(&vec![7u8; sent + 10]);
    let done = http
        .put(format!("{}?digest={digest}", server.url(&second)))
        .header("authorization", server.basic("zuul"))
        .send()
        .unwrap();
    assert_eq!(done.status(), 201, "{}", server.log());
}

#[test]
fn a_client_that_disconnects_mid_body_of_a_monolithic_post_leaves_no_upload() {
    let server = Server::start(Limits::default());
    let digest = Digest::sha256(b"never sent whole");
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    let head = format!(
        "POST /v2/org/img/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Authorization: {}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\n\r\n",
        server.basic("zuul"),
        10 << 20
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&vec![1u8; 2 << 20]).unwrap();
    assert!(
        within(Duration::from_secs(3), || !server.upload_dirs().is_empty()),
        "the upload never started"
    );
    drop(stream);
    assert!(
        within(Duration::from_secs(5), || server.upload_dirs().is_empty()),
        "left behind: {:?}",
        server.upload_dirs()
    );
}

/// A raw HTTP/1.1 PUT `?digest=` of `location` that declares 10 MiB and
/// sends 2 MiB; returns the connection, still open.
fn cut_short_put(server: &Server, location: &str) -> TcpStream {
    let digest = Digest::sha256(b"never sent whole");
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    let head = format!(
        "PUT {location}?digest={digest} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Authorization: {}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\n\r\n",
        server.basic("zuul"),
        10 << 20
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&vec![1u8; 2 << 20]).unwrap();
    stream
}

#[test]
fn a_whole_blob_put_cut_short_leaves_no_upload_and_a_chunked_one_keeps_its_bytes() {
    let server = Server::start(Limits::default());
    let http = client();
    // POST, then the whole blob in one PUT, cut short.
    let whole = start_upload(&server);
    let stream = cut_short_put(&server, &whole);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.upload_dirs().len(), 1, "the upload is not there");
    drop(stream);
    assert!(
        within(Duration::from_secs(5), || server.upload_dirs().is_empty()),
        "left behind: {:?}",
        server.upload_dirs()
    );
    // After a PATCH the client may resume: the upload and its bytes stay.
    let chunked = start_upload(&server);
    let patch = http
        .patch(server.url(&chunked))
        .header("authorization", server.basic("zuul"))
        .body(vec![1u8; 1000])
        .send()
        .unwrap();
    assert_eq!(patch.status(), 202);
    drop(cut_short_put(&server, &chunked));
    std::thread::sleep(Duration::from_millis(1000));
    let status = http
        .get(server.url(&chunked))
        .header("authorization", server.basic("zuul"))
        .send()
        .unwrap();
    assert_eq!(status.status(), 204);
    let range = status.headers()["range"].to_str().unwrap().to_string();
    assert!(range.starts_with("0-"), "{range}");
    let held: u64 = range[2..].parse::<u64>().unwrap() + 1;
    assert!(held >= 1000, "{range}");
}

/// A tmpfs of `size` mounted on a fresh directory; unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs (needs root)");
        Tmpfs(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_disk_answers_507_storage_is_full_and_recovers() {
    let disk = Tmpfs::mount("4m");
    let server = Server::start_with_storage(Limits::default(), Some(disk.path().join("storage")));
    let http = client();
    let auth = server.basic("zuul");
    let full = |reply: reqwest::blocking::Response| {
        assert_eq!(reply.status(), 507);
        let body = reply.text().unwrap();
        assert_eq!(error_code(&body), "UNKNOWN");
        assert_eq!(error_message(&body), "storage is full");
    };

    // A monolithic upload larger than the disk: refused, nothing left.
    let big = vec![3u8; 6 << 20];
    let reply = http
        .post(format!(
            "{}?digest={}",
            server.url("/v2/org/img/blobs/uploads/"),
            Digest::sha256(&big)
        ))
        .header("authorization", &auth)
        .body(big.clone())
        .send()
        .unwrap();
    full(reply);
    assert!(
        within(Duration::from_secs(3), || server.upload_dirs().is_empty()),
        "left behind: {:?}",
        server.upload_dirs()
    );

    // A chunk larger than the disk: refused, the upload is dropped.
    let location = start_upload(&server);
    let reply = http
        .patch(server.url(&location))
        .header("authorization", &auth)
        .body(big)
        .send()
        .unwrap();
    full(reply);
    let status = http
        .get(server.url(&location))
        .header("authorization", &auth)
        .send()
        .unwrap();
    assert_eq!(status.status(), 404);

    // Blobs of a manifest, then a full disk for the manifest itself.
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer = vec![5u8; 1000];
    for blob in [&config, &layer] {
        let reply = http
            .post(format!(
                "{}?digest={}",
                server.url("/v2/org/img/blobs/uploads/"),
                Digest::sha256(blob)
            ))
            .header("authorization", &auth)
            .body(blob.clone())
            .send()
            .unwrap();
        assert_eq!(reply.status(), 201, "{}", server.log());
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::sha256(&config).to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": Digest::sha256(&layer).to_string(), "size": layer.len()}],
    })
    .to_string();
    let filler = disk.path().join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 << 10];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.write_all(&[0u8; 512]);
    while file.write_all(&[0u8]).is_ok() {}
    drop(file);
    let put = |http: &reqwest::blocking::Client| {
        http.put(server.url("/v2/org/img/manifests/latest"))
            .header("authorization", &auth)
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.clone())
            .send()
            .unwrap()
    };
    full(put(&http));
    let missing = http
        .get(server.url("/v2/org/img/manifests/latest"))
        .send()
        .unwrap();
    assert_eq!(missing.status(), 404);

    // Space again: everything works.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(put(&http).status(), 201);
    let got = http
        .get(server.url("/v2/org/img/manifests/latest"))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.text().unwrap(), manifest);
    let blob = vec![9u8; 1 << 20];
    let reply = http
        .post(format!(
            "{}?digest={}",
            server.url("/v2/org/img/blobs/uploads/"),
            Digest::sha256(&blob)
        ))
        .header("authorization", &auth)
        .body(blob)
        .send()
        .unwrap();
    assert_eq!(reply.status(), 201);
    assert!(
        server.upload_dirs().is_empty(),
        "{:?}",
        server.upload_dirs()
    );
    drop(server);
}

#[test]
fn the_request_log_names_the_user_and_never_a_credential() {
    let server = Server::start(Limits::default());
    let http = client();
    let reply = http
        .get(server.url("/v2/"))
        .header("authorization", server.basic("zuul"))
        .send()
        .unwrap();
    assert_eq!(reply.status(), 200);
    let token: serde_json::Value = http
        .get(server.url("/auth/token?service=registry&scope=repository:org/img:pull"))
        .header("authorization", server.basic("zuul"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let token = token["token"].as_str().unwrap().to_string();
    let reply = http
        .get(server.url("/v2/org/img/tags/list"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(reply.status(), 404);
    let reply = http
        .get(server.url("/v2/_catalog?n=5&access_token=s3cr3tq&last=a"))
        .header(
            "authorization",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("zuul:wrong-pw-123")
            ),
        )
        .send()
        .unwrap();
    // Anonymous pulls are allowed: refused credentials read as anonymous.
    assert_eq!(reply.status(), 200);
    std::thread::sleep(Duration::from_millis(200));
    let log = server.log();
    let line = |prefix: &str| {
        log.lines()
            .find(|l| l.contains(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in\n{log}"))
            .to_string()
    };
    let base = line("GET /v2/ 200 ");
    assert!(base.ends_with(" user=zuul"), "{base}");
    assert!(base.contains(" in=0 out=2 "), "{base}");
    let tags = line("GET /v2/org/img/tags/list 404 ");
    assert!(tags.ends_with(" user=zuul"), "{tags}");
    let catalog = line("GET /v2/_catalog?n=5&access_token=***&last=a 200 ");
    assert!(catalog.ends_with(" user=-"), "{catalog}");
    for secret in [
        server.password.as_str(),
        token.as_str(),
        "s3cr3tq",
        "wrong-pw-123",
        &server.basic("zuul")[6..],
    ] {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
}

/// Peak resident memory of a process, in KiB (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Push a manifest of about 4 MiB (padded with an annotation) as
/// `org/big:latest`.
fn push_big_manifest(server: &Server) {
    let http = client();
    let auth = server.basic("zuul");
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer = vec![5u8; 1000];
    for blob in [&config, &layer] {
        let reply = http
            .post(format!(
                "{}?digest={}",
                server.url("/v2/org/big/blobs/uploads/"),
                Digest::sha256(blob)
            ))
            .header("authorization", &auth)
            .body(blob.clone())
            .send()
            .unwrap();
        assert_eq!(reply.status(), 201);
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::sha256(&config).to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": Digest::sha256(&layer).to_string(), "size": layer.len()}],
        "annotations": {"pad": "x".repeat((4 << 20) - 4096)},
    })
    .to_string();
    let reply = http
        .put(server.url("/v2/org/big/manifests/latest"))
        .header("authorization", &auth)
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest)
        .send()
        .unwrap();
    assert_eq!(reply.status(), 201, "{}", server.log());
}

#[test]
fn http2_streams_that_never_read_keep_memory_bounded_and_are_closed() {
    const CONNECTIONS: usize = 8;
    const STREAMS: usize = 200;
    let server = Server::start(Limits {
        stall_secs: 4,
        idle_secs: 2,
        ..Limits::default()
    });
    push_big_manifest(&server);
    let before = peak_rss_kib(server.pid());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let addr = server.addr();
    let auth = server.basic("zuul");
    let (answered, closed_in) = runtime.block_on(async move {
        let mut connections = vec![];
        let mut responses = vec![];
        for _ in 0..CONNECTIONS {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            // A zero window: the server may send headers, never data.
            let (client, connection) = h2::client::Builder::new()
                .initial_window_size(0)
                .handshake::<_, bytes::Bytes>(tcp)
                .await
                .unwrap();
            connections.push(tokio::spawn(connection));
            let mut client = client;
            for _ in 0..STREAMS {
                let ready =
                    tokio::time::timeout(Duration::from_millis(500), client.clone().ready()).await;
                let Ok(Ok(ready)) = ready else {
                    break; // the server's stream limit
                };
                client = ready;
                let request = axum::http::Request::get(format!(
                    "http://127.0.0.1:{}/v2/org/big/manifests/latest",
                    addr.port()
                ))
                .header("authorization", &auth)
                .header("accept", "application/vnd.oci.image.manifest.v1+json")
                .body(())
                .unwrap();
                match client.send_request(request, true) {
                    Ok((response, _)) => responses.push(response),
                    Err(_) => break,
                }
            }
        }
        eprintln!("{} streams opened", responses.len());
        // Keep every answer unread (dropping one would reset its stream).
        let mut answers = vec![];
        for response in responses {
            if let Ok(Ok(response)) = tokio::time::timeout(Duration::from_secs(2), response).await {
                if response.status() == 200 {
                    answers.push(response);
                }
            }
        }
        let answered = answers.len();
        // The server closes the stalled connections.
        let started = Instant::now();
        for connection in connections {
            let _ = tokio::time::timeout(Duration::from_secs(15), connection).await;
        }
        drop(answers);
        (answered, started.elapsed())
    });
    let after = peak_rss_kib(server.pid());
    eprintln!(
        "{answered} streams answered on {CONNECTIONS} connections; peak RSS {before} KiB \
         before, {after} KiB after"
    );
    assert!(
        answered >= CONNECTIONS * 16,
        "only {answered} streams were answered"
    );
    assert!(
        answered <= CONNECTIONS * 32,
        "{answered} streams at once: more than 32 per connection"
    );
    assert!(after < 64 << 10, "peak RSS {after} KiB");
    assert!(
        closed_in < Duration::from_secs(10),
        "stalled connections closed after {closed_in:?}"
    );
    // Idle HTTP/2 connections are closed too.
    let closed_idle = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        let connection = tokio::spawn(connection);
        let mut client = client.ready().await.unwrap();
        let request = axum::http::Request::get(format!("http://127.0.0.1:{}/v2/", addr.port()))
            .header("authorization", server.basic("zuul"))
            .body(())
            .unwrap();
        let (response, _) = client.send_request(request, true).unwrap();
        assert_eq!(response.await.unwrap().status(), 200);
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(10), connection)
            .await
            .is_ok()
            .then(|| started.elapsed())
    });
    let closed_idle = closed_idle.expect("an idle HTTP/2 connection stayed open");
    assert!(
        closed_idle >= Duration::from_millis(1500),
        "{closed_idle:?}"
    );
}

#[test]
fn a_site_file_sets_limits_by_key_and_the_example_shows_the_defaults() {
    use speculative_images::registry::site;
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/intermediate-registry/registry.yaml");
    let text = std::fs::read_to_string(&example).unwrap();
    let parsed = site::parse(&example, &text).unwrap();
    assert_eq!(parsed.limits, Limits::default());
    let base = "listen: [\"127.0.0.1:1\"]\nstorage: data\nhtpasswd: h\n\
                token_secret_file: t\nusers: {zuul: read-write}\n";
    let path = Path::new("registry.yaml");
    let some = site::parse(path, &format!("{base}limits: {{idle_secs: 5}}\n")).unwrap();
    assert_eq!(
        some.limits,
        Limits {
            idle_secs: 5,
            ..Limits::default()
        }
    );
    assert_eq!(site::parse(path, base).unwrap().limits, Limits::default());
    let error = site::parse(path, &format!("{base}limits: {{idle_sec: 5}}\n")).unwrap_err();
    let error = format!("{error:#}");
    assert!(
        error.contains("limits: unknown field `idle_sec`"),
        "{error}"
    );
    let toml = site::parse(
        Path::new("registry.toml"),
        "listen = [\"127.0.0.1:1\"]\nstorage = \"d\"\nhtpasswd = \"h\"\n\
         token_secret_file = \"t\"\n[users]\nzuul = \"read-write\"\n\
         [limits]\nmax_uploads = 7\n",
    )
    .unwrap();
    assert_eq!(toml.limits.max_uploads, 7);
}

#[test]
fn the_open_file_limit_is_raised_to_the_hard_one_and_bounds_connections() {
    let server = Server::start_with_fd_limits(Limits::default(), 64, 400);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .skip(3)
        .take(2)
        .collect::<Vec<_>>();
    assert_eq!(open_files, ["400", "400"], "{limits}");
    let log = server.log();
    assert!(
        log.contains(
            "serving at most 300 connections (not 4096): the file descriptor limit is 400"
        ),
        "{log}"
    );
}
