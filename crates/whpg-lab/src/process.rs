//! Handles to processes started in a lab host: signals, bounded exit waits, and their log files.
//!
//! Each process runs in its own process group (its pid is the group id), so [`Process::kill9`] and
//! drop take down everything it forked too, like a crash of the whole service.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::cmd::{kill_group, lock};

/// Signals the lab sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Kill,
    Int,
    Hup,
    Usr1,
    Usr2,
    Stop,
    Cont,
}

impl Signal {
    /// The raw signal number.
    pub fn raw(self) -> i32 {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
            Signal::Int => libc::SIGINT,
            Signal::Hup => libc::SIGHUP,
            Signal::Usr1 => libc::SIGUSR1,
            Signal::Usr2 => libc::SIGUSR2,
            Signal::Stop => libc::SIGSTOP,
            Signal::Cont => libc::SIGCONT,
        }
    }
}

struct State {
    child: Child,
    status: Option<ExitStatus>,
}

/// A spawned process. Killed with SIGKILL (its whole process group) and reaped when dropped.
pub struct Process {
    pid: u32,
    label: String,
    log: PathBuf,
    state: Mutex<State>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.pid)
            .field("label", &self.label)
            .field("log", &self.log)
            .finish()
    }
}

impl Process {
    pub(crate) fn new(child: Child, label: String, log: PathBuf) -> Process {
        Process {
            pid: child.id(),
            label,
            log,
            state: Mutex::new(State {
                child,
                status: None,
            }),
        }
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The command line it was started with.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Its exit status if it has exited (reaping it if needed).
    pub fn try_status(&self) -> Option<ExitStatus> {
        let mut st = lock(&self.state);
        if st.status.is_none() {
            if let Ok(Some(status)) = st.child.try_wait() {
                st.status = Some(status);
            }
        }
        st.status
    }

    /// True until the process has exited.
    pub fn is_running(&self) -> bool {
        self.try_status().is_none()
    }

    /// Sends `signal` to the process itself (not its children). A no-op once it has exited.
    pub fn kill(&self, signal: Signal) -> Result<()> {
        let st = lock(&self.state);
        if st.status.is_some() {
            return Ok(());
        }
        // SAFETY: plain syscall; the pid is our unreaped child, so it cannot have been reused.
        let rc = unsafe { libc::kill(self.pid as libc::pid_t, signal.raw()) };
        if rc != 0 {
            bail!(
                "kill({}, {signal:?}) on `{}`: {}",
                self.pid,
                self.label,
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// Graceful stop request: SIGTERM to the process.
    pub fn sigterm(&self) -> Result<()> {
        self.kill(Signal::Term)
    }

    /// Crash: SIGKILL to the whole process group (the process and everything it forked that stayed
    /// in its group, e.g. keepalived's VRRP child), without waiting.
    pub fn kill9(&self) {
        let st = lock(&self.state);
        if st.status.is_none() {
            kill_group(self.pid, libc::SIGKILL);
        }
    }

    /// Waits up to `timeout` for the process to exit and returns its status.
    pub fn wait_exit(&self, timeout: Duration) -> Result<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_status() {
                return Ok(status);
            }
            if start.elapsed() >= timeout {
                bail!(
                    "`{}` (pid {}) still running after {timeout:?}",
                    self.label,
                    self.pid
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Path of the file receiving its stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The log so far (lossy UTF-8; empty if unreadable).
    pub fn log_contents(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Waits up to `timeout` for `needle` to appear in the log; returns the time it took.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<Duration> {
        crate::wait_until(
            timeout,
            Duration::from_millis(20),
            &format!("`{needle}` in {}", self.log.display()),
            || self.log_contents().contains(needle),
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let mut st = lock(&self.state);
        if st.status.is_some() {
            return;
        }
        kill_group(self.pid, libc::SIGKILL);
        let _ = st.child.kill();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            match st.child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                _ => return,
            }
        }
        eprintln!(
            "whpg-lab: `{}` (pid {}) did not exit after SIGKILL",
            self.label, self.pid
        );
    }
}
