//! Running a builder's command with its output streamed, line by line as
//! it comes, into a log, keeping the last lines for the error message.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use super::BuildError;

/// How many lines of a failed command's output the error carries.
pub const TAIL_LINES: usize = 20;

/// Run `cmd` with stdin closed, copying its stdout and stderr (interleaved
/// as they arrive) into `log`. `what` names the command in errors (for
/// example `docker build`); it must not hold secrets.
pub fn run_streamed(cmd: &mut Command, what: &str, log: &mut dyn Write) -> Result<(), BuildError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| BuildError::Spawn { program, source })?;
    let (sender, lines) = mpsc::channel::<String>();
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|stream| {
        let sender = sender.clone();
        std::thread::spawn(move || forward_lines(stream, &sender))
    })
    .collect();
    drop(sender);

    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    let _ = writeln!(log, "$ {what}");
    for line in lines {
        // A log that cannot be written must not stop the build.
        let _ = writeln!(log, "{line}");
        let _ = log.flush();
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    for reader in readers {
        let _ = reader.join();
    }
    let status = child.wait().map_err(|source| BuildError::Spawn {
        program: what.to_string(),
        source,
    })?;
    if status.success() {
        return Ok(());
    }
    let _ = writeln!(log, "({what}: {status})");
    Err(BuildError::Failed {
        command: what.to_string(),
        status,
        tail: Vec::from(tail).join("\n"),
    })
}

/// Run `cmd` quietly and return its trimmed stdout, or the same error as
/// [`run_streamed`] with its stderr as the tail.
pub fn run_captured(cmd: &mut Command, what: &str) -> Result<String, BuildError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| BuildError::Spawn { program, source })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    Err(BuildError::Failed {
        command: what.to_string(),
        status: out.status,
        tail: lines[start..].join("\n"),
    })
}

fn forward_lines(stream: Box<dyn Read + Send>, sender: &mpsc::Sender<String>) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']);
                if sender.send(line.to_string()).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_logged_and_the_tail_kept() {
        let mut log = Vec::new();
        let err = run_streamed(
            Command::new("sh").args([
                "-c",
                "for i in $(seq 1 30); do echo line $i; done; sleep 0.2; echo oops >&2; exit 3",
            ]),
            "sh demo",
            &mut log,
        )
        .unwrap_err();
        let log = String::from_utf8(log).unwrap();
        // Two pipes: order holds within a stream (the sleep orders them here).
        assert!(log.starts_with("$ sh demo\nline 1\n"), "{log}");
        assert!(log.contains("line 30\n") && log.contains("oops\n"), "{log}");
        let BuildError::Failed { tail, status, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(status.code(), Some(3));
        assert_eq!(tail.lines().count(), TAIL_LINES);
        assert!(tail.contains("oops"), "{tail}");
        assert!(!tail.contains("line 10\n"), "{tail}");
        assert!(err
            .to_string()
            .starts_with("`sh demo` failed (exit status: 3); last lines of its output:\n"));
    }

    #[test]
    fn a_missing_program_is_named() {
        let err = run_streamed(
            &mut Command::new("no-such-builder-here"),
            "x",
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("running no-such-builder-here: "),
            "{err}"
        );
    }
}
