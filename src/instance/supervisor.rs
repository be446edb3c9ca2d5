//! Running the server so that it outlives the module that started it.
//!
//! Ansible waits for a module's stdout and stderr to close and then deletes
//! the module's directory, so the server runs from its own copy of the
//! binary, in a session of its own, with every standard stream redirected.
//! Where systemd is the init system, it runs instead as a transient unit
//! that systemd restarts on failure.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};

use super::layout::{write_atomic, InstanceLayout};

/// How the server process is kept running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Supervisor {
    /// A detached process in its own session, tracked by a pid file.
    Detached,
    /// A transient systemd unit with `Restart=on-failure`.
    Systemd {
        /// The unit's name, derived from the root.
        unit: String,
    },
}

/// A server process this module run started.
#[derive(Debug)]
pub struct Started {
    /// Its pid.
    pub pid: u32,
    /// The child handle when we are its parent (detached mode), to notice
    /// at once that it exited.
    child: Option<Child>,
}

impl Started {
    /// `Some(description)` when the process has already exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.as_mut()?.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }
}

impl Supervisor {
    /// systemd when it is the init system (sd_booted's test), detached
    /// otherwise.
    pub fn for_host(layout: &InstanceLayout) -> Supervisor {
        if Path::new("/run/systemd/system").is_dir() {
            Supervisor::Systemd {
                unit: unit_name(layout.root()),
            }
        } else {
            Supervisor::Detached
        }
    }

    /// Start `<root>/bin/buildset-registry serve --config <root>/config.json`.
    pub fn start(&self, layout: &InstanceLayout) -> anyhow::Result<Started> {
        match self {
            Supervisor::Detached => start_detached(layout),
            Supervisor::Systemd { unit } => start_unit(layout, unit),
        }
    }

    /// The pid of this instance's server, if one is running.
    pub fn running_pid(&self, layout: &InstanceLayout) -> Option<u32> {
        if let Supervisor::Systemd { unit } = self {
            if let Some(pid) = unit_main_pid(unit).filter(|&p| is_server_of(p, layout)) {
                return Some(pid);
            }
        }
        let recorded = fs::read_to_string(layout.pid_file())
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        match recorded {
            Some(pid) if is_server_of(pid, layout) => Some(pid),
            // The pid file is stale or gone: look for the process itself.
            _ => find_server_of(layout),
        }
    }

    /// Stop this instance's server; returns whether one was running.
    pub fn stop(&self, layout: &InstanceLayout) -> anyhow::Result<bool> {
        let mut stopped = false;
        if let Supervisor::Systemd { unit } = self {
            if unit_main_pid(unit).is_some() {
                stopped = true;
            }
            let _ = Command::new("systemctl").args(["stop", unit]).output();
            let _ = Command::new("systemctl")
                .args(["reset-failed", unit])
                .output();
        }
        while let Some(pid) = self.running_pid(layout) {
            stopped = true;
            terminate(pid, layout)?;
        }
        let _ = fs::remove_file(layout.pid_file());
        Ok(stopped)
    }
}

fn start_detached(layout: &InstanceLayout) -> anyhow::Result<Started> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(layout.log())
        .with_context(|| format!("opening {}", layout.log().display()))?;
    let mut cmd = Command::new(layout.binary());
    cmd.arg("serve")
        .arg("--config")
        .arg(layout.config())
        .current_dir(layout.root())
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("duplicating the log handle")?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; nothing else runs between fork
    // and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", layout.binary().display()))?;
    let pid = child.id();
    write_atomic(&layout.pid_file(), format!("{pid}\n").as_bytes(), 0o644)?;
    Ok(Started {
        pid,
        child: Some(child),
    })
}

fn start_unit(layout: &InstanceLayout, unit: &str) -> anyhow::Result<Started> {
    // A unit left failed by an earlier run keeps its name taken.
    let _ = Command::new("systemctl")
        .args(["reset-failed", unit])
        .output();
    let log = layout.log();
    let out = Command::new("systemd-run")
        .arg(format!("--unit={unit}"))
        .arg("--description=speculative.images buildset registry")
        .arg("--property=Restart=on-failure")
        .arg(format!(
            "--property=StandardOutput=append:{}",
            log.display()
        ))
        .arg(format!("--property=StandardError=append:{}", log.display()))
        .arg(format!("--working-directory={}", layout.root().display()))
        .arg(layout.binary())
        .arg("serve")
        .arg("--config")
        .arg(layout.config())
        .output()
        .context("running systemd-run")?;
    anyhow::ensure!(
        out.status.success(),
        "systemd-run {unit} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let pid = unit_main_pid(unit).unwrap_or(0);
    Ok(Started { pid, child: None })
}

/// `buildset-registry-<12 hex of sha256(root)>`: one unit per root.
fn unit_name(root: &Path) -> String {
    let hash = Sha256::digest(root.as_os_str().as_encoded_bytes());
    format!("buildset-registry-{}", &hex::encode(hash)[..12])
}

fn unit_main_pid(unit: &str) -> Option<u32> {
    let out = Command::new("systemctl")
        .args(["show", "--property=MainPID", "--value", unit])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|&p| p != 0)
}

/// Whether `pid` is a live (not zombie) `serve --config <root>/config.json`.
fn is_server_of(pid: u32, layout: &InstanceLayout) -> bool {
    let proc_dir = Path::new("/proc").join(pid.to_string());
    let Ok(cmdline) = fs::read(proc_dir.join("cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let config = layout.config();
    let wanted: [&[u8]; 3] = [b"serve", b"--config", config.as_os_str().as_encoded_bytes()];
    if args.len() < 4 || args[1..4] != wanted {
        return false;
    }
    // A zombie keeps its pid until reaped, but serves nothing.
    ProcessStat::read(pid).is_some_and(|stat| !matches!(stat.state, 'Z' | 'X'))
}

fn find_server_of(layout: &InstanceLayout) -> Option<u32> {
    fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|&pid| is_server_of(pid, layout))
}

/// SIGTERM (and SIGCONT, so a stopped server handles it at once), wait up
/// to 10 s, then SIGKILL, and return only once the process has exited.
///
/// Its command line is no proof: the kernel empties it when the process
/// drops its memory, before it closes its files, so the port can still be
/// held. The process is told apart from a later one with the same pid by
/// its start time, and never signalled once that differs.
fn terminate(pid: u32, layout: &InstanceLayout) -> anyhow::Result<()> {
    let pid_t = libc::pid_t::try_from(pid).context("pid out of range")?;
    let Some(started) = ProcessStat::read(pid).map(|stat| stat.start_time) else {
        return Ok(());
    };
    if !is_server_of(pid, layout) {
        return Ok(());
    }
    for (signals, wait) in [
        (&[libc::SIGTERM, libc::SIGCONT][..], Duration::from_secs(10)),
        (&[libc::SIGKILL][..], Duration::from_secs(5)),
    ] {
        if has_exited(pid, started) {
            return Ok(());
        }
        for &signal in signals {
            // SAFETY: kill has no memory-safety preconditions.
            if unsafe { libc::kill(pid_t, signal) } == -1 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::ESRCH) {
                    return Ok(());
                }
                return Err(err).with_context(|| format!("signalling the registry server {pid}"));
            }
        }
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if has_exited(pid, started) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    anyhow::bail!("the registry server {pid} did not stop after SIGKILL")
}

/// Whether the process `pid` that started at `started` has exited: gone,
/// replaced by another with its pid, or a zombie (whose files, sockets
/// included, the kernel has closed).
fn has_exited(pid: u32, started: u64) -> bool {
    match ProcessStat::read(pid) {
        None => true,
        Some(stat) => stat.start_time != started || matches!(stat.state, 'Z' | 'X'),
    }
}

/// The fields of `/proc/<pid>/stat` that tell a process's life.
struct ProcessStat {
    /// R, S, D, T, Z, X...
    state: char,
    /// Clock ticks after boot (field 22).
    start_time: u64,
}

impl ProcessStat {
    fn read(pid: u32) -> Option<ProcessStat> {
        let stat =
            fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
        // The name (field 2) is in parentheses and may hold anything.
        let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
        let state = fields.next()?.chars().next()?;
        let start_time = fields.nth(18)?.parse().ok()?;
        Some(ProcessStat { state, start_time })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_are_stable_per_root() {
        let a = unit_name(Path::new("/root/buildset_registry"));
        assert_eq!(a, unit_name(Path::new("/root/buildset_registry")));
        assert_ne!(a, unit_name(Path::new("/tmp/other")));
        assert!(a.starts_with("buildset-registry-") && a.len() == 30, "{a}");
    }

    #[test]
    fn a_process_with_another_command_line_is_not_ours() {
        let dir = tempfile::tempdir().unwrap();
        let layout = InstanceLayout::new(dir.path());
        assert!(!is_server_of(std::process::id(), &layout));
        assert_eq!(Supervisor::Detached.running_pid(&layout), None);
        assert!(!Supervisor::Detached.stop(&layout).unwrap());
    }
}
