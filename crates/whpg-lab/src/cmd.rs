//! Bounded command execution: every command the lab runs goes through here, with a timeout, its own
//! process group (so a timeout kills everything it started) and a `PATH` that includes the sbin
//! directories.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Timeout used by `exec`-style calls that do not take one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long to wait for output pipes to close after the command exited. A command that leaves a
/// daemon holding its stdout (e.g. `pg_ctl start` without `-l`) returns the output read so far
/// after this.
const PIPE_GRACE: Duration = Duration::from_millis(300);

const EXTRA_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// The result of a finished (or timed-out and killed) command.
#[derive(Debug, Clone)]
pub struct Output {
    /// The command line, for messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// True when the command hit its timeout and was killed.
    pub timed_out: bool,
}

impl Output {
    /// Exited with status 0 before its timeout.
    pub fn success(&self) -> bool {
        self.status.success() && !self.timed_out
    }

    /// `Ok(self)` on success, otherwise an error naming the command, status and stderr.
    pub fn ok(self) -> Result<Output> {
        if self.success() {
            return Ok(self);
        }
        let how = if self.timed_out {
            "timed out".to_string()
        } else {
            format!("failed ({})", self.status)
        };
        bail!(
            "`{}` {how}: {}{}",
            self.command,
            self.stderr.trim(),
            if self.stdout.trim().is_empty() {
                String::new()
            } else {
                format!(" (stdout: {})", self.stdout.trim())
            }
        )
    }
}

/// `PATH` for child processes: the current one plus the sbin/bin directories if absent.
pub(crate) fn child_path() -> String {
    let current = std::env::var("PATH").unwrap_or_default();
    let mut parts: Vec<&str> = current.split(':').filter(|p| !p.is_empty()).collect();
    for dir in EXTRA_DIRS {
        if !parts.contains(dir) {
            parts.push(dir);
        }
    }
    parts.join(":")
}

/// Locates an executable by name in `PATH`, the sbin directories and PostgreSQL 15's bin directory.
pub fn find_command(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    let path = child_path();
    path.split(':')
        .chain(std::iter::once("/usr/lib/postgresql/15/bin"))
        .map(|dir| PathBuf::from(dir).join(name))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Builds a command for `argv` with the lab's `PATH`, its own process group and no stdin.
pub(crate) fn command<S: AsRef<OsStr>>(argv: &[S]) -> Result<Command> {
    let Some((prog, args)) = argv.split_first() else {
        bail!("empty command line");
    };
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .env("PATH", child_path())
        .stdin(Stdio::null())
        .process_group(0);
    Ok(cmd)
}

pub(crate) fn describe<S: AsRef<OsStr>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `argv` in the current (root) namespace with a timeout. Use [`crate::Host::exec`] for lab
/// hosts.
pub fn run<S: AsRef<OsStr>>(argv: &[S], timeout: Duration) -> Result<Output> {
    let cmd = command(argv)?;
    run_command(cmd, describe(argv), timeout)
}

fn reader<R: Read + Send + 'static>(
    mut pipe: R,
) -> (Arc<Mutex<Vec<u8>>>, std::sync::mpsc::Receiver<()>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = Arc::clone(&buf);
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => lock(&sink).extend_from_slice(&chunk[..n]),
            }
        }
        let _ = tx.send(());
    });
    (buf, rx)
}

/// Locks a mutex, ignoring poisoning (teardown must keep working after a panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends `signal` to the process group `pgid`.
pub(crate) fn kill_group(pgid: u32, signal: i32) {
    if pgid > 1 {
        // SAFETY: plain syscall with integer arguments.
        unsafe {
            libc::kill(-(pgid as libc::pid_t), signal);
        }
    }
}

pub(crate) fn run_command(mut cmd: Command, command: String, timeout: Duration) -> Result<Output> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{command}`"))?;
    let (out, out_done) = reader(child.stdout.take().expect("piped stdout"));
    let (err, err_done) = reader(child.stderr.take().expect("piped stderr"));
    let start = Instant::now();
    let mut timed_out = false;
    let mut poll = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() >= timeout {
            timed_out = true;
            kill_group(child.id(), libc::SIGKILL);
            let _ = child.kill();
            break child.wait()?;
        }
        std::thread::sleep(poll.min(timeout.saturating_sub(start.elapsed())));
        poll = (poll * 2).min(Duration::from_millis(20));
    };
    let grace_end = Instant::now() + PIPE_GRACE;
    for done in [&out_done, &err_done] {
        let _ = done.recv_timeout(grace_end.saturating_duration_since(Instant::now()));
    }
    let stdout = String::from_utf8_lossy(&lock(&out)).into_owned();
    let stderr = String::from_utf8_lossy(&lock(&err)).into_owned();
    Ok(Output {
        command,
        status,
        stdout,
        stderr,
        timed_out,
    })
}
