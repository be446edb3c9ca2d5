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

/// What [`reload_with`] needs of the host: the real one is [`System`].
pub trait DaemonHost {
    /// The running dockerd's pid, if one runs.
    fn dockerd_pid(&self) -> Option<i32>;
    /// Send SIGHUP to `pid`.
    fn send_hup(&self, pid: i32) -> std::io::Result<()>;
    /// Whether the running daemon has `mirror` first; `None` when no
    /// daemon answers (or there is no docker CLI to ask).
    fn mirror_is_live(&self, mirror: &str) -> Option<bool>;
    /// Whether a service manager runs a docker service we could restart.
    fn service_active(&self) -> bool;
    /// Restart that service.
    fn restart_service(&self) -> anyhow::Result<()>;
}

/// The real host: `/proc`, kill(2), `docker info`, systemctl.
pub struct System<'a>(pub &'a HostPaths);

impl DaemonHost for System<'_> {
    fn dockerd_pid(&self) -> Option<i32> {
        dockerd_pid(self.0)
    }

    fn send_hup(&self, pid: i32) -> std::io::Result<()> {
        // SAFETY: kill(2) with a pid we just read and a valid signal number.
        if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    fn mirror_is_live(&self, mirror: &str) -> Option<bool> {
        mirror_is_live(mirror)
    }

    fn service_active(&self) -> bool {
        service_active()
    }

    fn restart_service(&self) -> anyhow::Result<()> {
        restart_service()
    }
}

/// How long to wait for a mirror to go live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// After a SIGHUP.
    pub reload: Duration,
    /// After a restart.
    pub restart: Duration,
    /// Between two looks.
    pub poll: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            reload: Duration::from_secs(10),
            restart: Duration::from_secs(60),
            poll: Duration::from_millis(50),
        }
    }
}

/// Make the daemon use the current daemon.json, whose first mirror is
/// `mirror`, and wait until it does.
pub fn reload(paths: &HostPaths, mirror: &str) -> anyhow::Result<Reload> {
    reload_with(&System(paths), mirror, Timeouts::default())
}

/// [`reload`] on `host`: SIGHUP when a dockerd runs, a restart through
/// the service manager when none runs but the service is active or when
/// the reload did not put `mirror` first in time; nothing when there is
/// no daemon at all.
pub fn reload_with(
    host: &impl DaemonHost,
    mirror: &str,
    timeouts: Timeouts,
) -> anyhow::Result<Reload> {
    let Some(pid) = host.dockerd_pid() else {
        if host.service_active() {
            host.restart_service()?;
            wait_for_mirror(host, mirror, timeouts.restart, timeouts.poll)?;
            return Ok(Reload::Restarted);
        }
        return Ok(Reload::NotRunning);
    };
    host.send_hup(pid).map_err(|err| {
        anyhow::anyhow!(
            "sending SIGHUP to dockerd (pid {pid}) to reload /etc/docker/daemon.json: {err}"
        )
    })?;
    match wait_for_mirror(host, mirror, timeouts.reload, timeouts.poll) {
        Ok(()) => Ok(Reload::Signalled(pid)),
        Err(_) if host.service_active() => {
            host.restart_service()?;
            wait_for_mirror(host, mirror, timeouts.restart, timeouts.poll)?;
            Ok(Reload::Restarted)
        }
        Err(e) => Err(e),
    }
}

fn wait_for_mirror(
    host: &impl DaemonHost,
    mirror: &str,
    timeout: Duration,
    poll: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match host.mirror_is_live(mirror) {
            Some(true) => return Ok(()),
            // No CLI or no answer: nothing more we can check.
            None => return Ok(()),
            _ if Instant::now() >= deadline => anyhow::bail!(
                "dockerd did not take {mirror} as its first registry mirror within {timeout:?} after a reload; see the daemon's log"
            ),
            _ => std::thread::sleep(poll),
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

#[cfg(test)]
mod tests {
    //! The decision between SIGHUP, restart and nothing, on a host whose
    //! daemon answers as each case needs; the real daemon's SIGHUP path is
    //! exercised in `tests/host_real.rs`.

    use std::cell::RefCell;

    use super::*;

    const MIRROR: &str = "https://zuul-jobs.buildset-registry:5000/";

    /// A host whose dockerd takes the mirror after `live_after` ("hup" or
    /// "restart") happened, or never.
    #[derive(Default)]
    struct Scripted {
        pid: Option<i32>,
        hup_errno: Option<i32>,
        live_after: Option<&'static str>,
        no_cli: bool,
        service: bool,
        restart_fails: bool,
        calls: RefCell<Vec<String>>,
    }

    impl DaemonHost for Scripted {
        fn dockerd_pid(&self) -> Option<i32> {
            self.pid
        }

        fn send_hup(&self, pid: i32) -> std::io::Result<()> {
            if let Some(errno) = self.hup_errno {
                return Err(std::io::Error::from_raw_os_error(errno));
            }
            self.calls.borrow_mut().push(format!("hup {pid}"));
            Ok(())
        }

        fn mirror_is_live(&self, mirror: &str) -> Option<bool> {
            assert_eq!(mirror, MIRROR);
            if self.no_cli {
                return None;
            }
            let calls = self.calls.borrow();
            Some(
                self.live_after
                    .is_some_and(|event| calls.iter().any(|c| c.starts_with(event))),
            )
        }

        fn service_active(&self) -> bool {
            self.service
        }

        fn restart_service(&self) -> anyhow::Result<()> {
            anyhow::ensure!(
                !self.restart_fails,
                "systemctl restart docker failed (exit status: 1)"
            );
            self.calls.borrow_mut().push("restart".into());
            Ok(())
        }
    }

    const QUICK: Timeouts = Timeouts {
        reload: Duration::from_millis(30),
        restart: Duration::from_millis(40),
        poll: Duration::from_millis(1),
    };

    fn reload(host: &Scripted) -> Result<Reload, String> {
        reload_with(host, MIRROR, QUICK).map_err(|e| e.to_string())
    }

    fn calls(host: &Scripted) -> Vec<String> {
        host.calls.borrow().clone()
    }

    #[test]
    fn a_reload_that_takes_effect_is_all_even_with_a_service_manager() {
        let host = Scripted {
            pid: Some(4242),
            live_after: Some("hup"),
            service: true,
            ..Scripted::default()
        };
        assert_eq!(reload(&host), Ok(Reload::Signalled(4242)));
        assert_eq!(calls(&host), ["hup 4242"]);
    }

    #[test]
    fn a_reload_without_effect_falls_back_to_a_restart() {
        let host = Scripted {
            pid: Some(4242),
            live_after: Some("restart"),
            service: true,
            ..Scripted::default()
        };
        assert_eq!(reload(&host), Ok(Reload::Restarted));
        assert_eq!(calls(&host), ["hup 4242", "restart"]);
    }

    #[test]
    fn a_reload_without_effect_and_no_service_manager_fails() {
        let host = Scripted {
            pid: Some(4242),
            service: false,
            ..Scripted::default()
        };
        assert_eq!(
            reload(&host),
            Err("dockerd did not take https://zuul-jobs.buildset-registry:5000/ as its first registry mirror within 30ms after a reload; see the daemon's log".into())
        );
        assert_eq!(calls(&host), ["hup 4242"]);
    }

    #[test]
    fn a_restart_without_effect_fails_after_the_restart_timeout() {
        let host = Scripted {
            pid: Some(4242),
            service: true,
            ..Scripted::default()
        };
        assert_eq!(
            reload(&host),
            Err("dockerd did not take https://zuul-jobs.buildset-registry:5000/ as its first registry mirror within 40ms after a reload; see the daemon's log".into())
        );
        assert_eq!(calls(&host), ["hup 4242", "restart"]);
    }

    #[test]
    fn a_failed_restart_is_the_error() {
        let host = Scripted {
            pid: Some(4242),
            service: true,
            restart_fails: true,
            ..Scripted::default()
        };
        assert_eq!(
            reload(&host),
            Err("systemctl restart docker failed (exit status: 1)".into())
        );
        assert_eq!(calls(&host), ["hup 4242"]);
    }

    #[test]
    fn no_daemon_and_no_service_is_not_running() {
        let host = Scripted::default();
        assert_eq!(reload(&host), Ok(Reload::NotRunning));
        assert!(calls(&host).is_empty());
    }

    #[test]
    fn an_active_service_without_a_visible_dockerd_is_restarted() {
        let host = Scripted {
            live_after: Some("restart"),
            service: true,
            ..Scripted::default()
        };
        assert_eq!(reload(&host), Ok(Reload::Restarted));
        assert_eq!(calls(&host), ["restart"]);
    }

    #[test]
    fn a_signal_that_cannot_be_sent_is_the_error() {
        let host = Scripted {
            pid: Some(4242),
            hup_errno: Some(libc::EPERM),
            service: true,
            ..Scripted::default()
        };
        assert_eq!(
            reload(&host),
            Err("sending SIGHUP to dockerd (pid 4242) to reload /etc/docker/daemon.json: Operation not permitted (os error 1)".into())
        );
        assert!(calls(&host).is_empty());
    }

    #[test]
    fn without_a_docker_cli_to_ask_the_signal_is_trusted() {
        let host = Scripted {
            pid: Some(4242),
            no_cli: true,
            service: true,
            ..Scripted::default()
        };
        assert_eq!(reload(&host), Ok(Reload::Signalled(4242)));
        assert_eq!(calls(&host), ["hup 4242"]);
    }
}
