//! The running Docker daemon: what mirrors it uses now, and making it
//! reread daemon.json. dockerd reloads `registry-mirrors` on SIGHUP, so
//! running containers (a buildset registry on the same host among them)
//! survive; a restart through the service manager is only the fallback for
//! a daemon we cannot signal or that did not take the change.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::daemon_json::same_url;
use super::HostPaths;

/// How the daemon was made to pick up daemon.json.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// SIGHUP sent to this pid; the mirror is live.
    Signalled(i32),
    /// Restarted through the service manager.
    Restarted,
    /// No daemon runs; it reads the file when it starts.
    NotRunning,
}

/// The dockerd process id: from its pid file when that names a live
/// dockerd, else found by process name.
pub fn dockerd_pid(paths: &HostPaths) -> Option<i32> {
    let from_file = std::fs::read_to_string(paths.docker_pid_file())
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|pid| is_dockerd(*pid));
    from_file.or_else(|| {
        std::fs::read_dir("/proc")
            .ok()?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .find(|pid| is_dockerd(*pid))
    })
}

fn is_dockerd(pid: i32) -> bool {
    std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("comm"))
        .map(|comm| comm.trim() == "dockerd")
        .unwrap_or(false)
}

/// The mirrors the running daemon uses, or `None` when no daemon answers
/// (or there is no docker CLI to ask).
pub fn live_mirrors() -> Option<Vec<String>> {
    let out = Command::new("docker")
        .args(["info", "--format", "{{json .RegistryConfig.Mirrors}}"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice::<Option<Vec<String>>>(&out.stdout)
        .ok()
        .map(Option::unwrap_or_default)
}

/// Whether the running daemon has `mirror` first.
pub fn mirror_is_live(mirror: &str) -> Option<bool> {
    live_mirrors().map(|m| m.first().map(|m| same_url(m, mirror)) == Some(true))
}

/// Make the daemon use the current daemon.json, whose first mirror is
/// `mirror`, and wait until it does.
pub fn reload(paths: &HostPaths, mirror: &str) -> anyhow::Result<Reload> {
    let Some(pid) = dockerd_pid(paths) else {
        if service_active() {
            restart_service()?;
            wait_for_mirror(mirror, Duration::from_secs(60))?;
            return Ok(Reload::Restarted);
        }
        return Ok(Reload::NotRunning);
    };
    // SAFETY: kill(2) with a pid we just read and a valid signal number.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        let err = std::io::Error::last_os_error();
        anyhow::bail!(
            "sending SIGHUP to dockerd (pid {pid}) to reload /etc/docker/daemon.json: {err}"
        );
    }
    match wait_for_mirror(mirror, Duration::from_secs(10)) {
        Ok(()) => Ok(Reload::Signalled(pid)),
        Err(_) if service_active() => {
            restart_service()?;
            wait_for_mirror(mirror, Duration::from_secs(60))?;
            Ok(Reload::Restarted)
        }
        Err(e) => Err(e),
    }
}

fn wait_for_mirror(mirror: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match mirror_is_live(mirror) {
            Some(true) => return Ok(()),
            // No CLI or no answer: nothing more we can check.
            None => return Ok(()),
            _ if Instant::now() >= deadline => anyhow::bail!(
                "dockerd did not take {mirror} as its first registry mirror within {timeout:?} after a reload; see the daemon's log"
            ),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Whether a service manager runs a docker service we could restart.
fn service_active() -> bool {
    Command::new("systemctl")
        .args(["is-active", "--quiet", "docker"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn restart_service() -> anyhow::Result<()> {
    let status = Command::new("systemctl")
        .args(["restart", "docker"])
        .status()
        .map_err(|e| anyhow::anyhow!("running systemctl restart docker: {e}"))?;
    anyhow::ensure!(
        status.success(),
        "systemctl restart docker failed ({status})"
    );
    Ok(())
}
