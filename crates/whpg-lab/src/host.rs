//! A host of the lab: one network namespace with `lo` and `eth0`. Runs bounded commands and
//! long-lived processes inside it (optionally as another OS user), and answers address and
//! reachability queries.

use std::ffi::{OsStr, OsString};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cmd::{command, describe, run_command, Output, DEFAULT_TIMEOUT};
use crate::lab::Shared;
use crate::process::Process;

/// A host namespace. Cheap to clone; all clones refer to the same namespace, which lives as long as
/// its [`crate::Lab`].
#[derive(Debug, Clone)]
pub struct Host {
    pub(crate) lab: Arc<Shared>,
    name: String,
    netns: String,
    address: String,
    cidr: String,
}

impl Host {
    pub(crate) fn new(
        lab: Arc<Shared>,
        name: &str,
        netns: &str,
        address: String,
        cidr: &str,
    ) -> Host {
        Host {
            lab,
            name: name.to_string(),
            netns: netns.to_string(),
            address,
            cidr: cidr.to_string(),
        }
    }

    /// The host name given to [`crate::Lab::add_host`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its network namespace name.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// Its address without prefix length, e.g. `10.77.0.11`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Its address with prefix length, e.g. `10.77.0.11/24`.
    pub fn cidr(&self) -> &str {
        &self.cidr
    }

    /// Its interface towards the switch: always `eth0`.
    pub fn interface(&self) -> &str {
        "eth0"
    }

    /// The lab directory.
    pub fn lab_dir(&self) -> &Path {
        &self.lab.dir
    }

    fn argv<S: AsRef<OsStr>>(&self, user: Option<&str>, argv: &[S]) -> Vec<OsString> {
        let mut full: Vec<OsString> = ["ip", "netns", "exec", self.netns.as_str()]
            .iter()
            .map(OsString::from)
            .collect();
        if let Some(user) = user {
            full.extend(["runuser", "-u", user, "--"].iter().map(OsString::from));
        }
        full.extend(argv.iter().map(|a| a.as_ref().to_os_string()));
        full
    }

    fn exec_inner<S: AsRef<OsStr>>(
        &self,
        user: Option<&str>,
        argv: &[S],
        timeout: Duration,
    ) -> Result<Output> {
        let full = self.argv(user, argv);
        let mut cmd = command(&full)?;
        cmd.current_dir(&self.lab.dir);
        let what = format!("[{}] {}", self.name, describe(argv));
        run_command(cmd, what, timeout)
    }

    /// Runs `argv` in the namespace with [`DEFAULT_TIMEOUT`]; any exit status is returned, not an
    /// error.
    pub fn exec<S: AsRef<OsStr>>(&self, argv: &[S]) -> Result<Output> {
        self.exec_inner(None, argv, DEFAULT_TIMEOUT)
    }

    /// Like [`Host::exec`] with an explicit timeout (the command is killed when it expires).
    pub fn exec_timeout<S: AsRef<OsStr>>(&self, argv: &[S], timeout: Duration) -> Result<Output> {
        self.exec_inner(None, argv, timeout)
    }

    /// Runs `argv` and fails with its stderr unless it exits 0.
    pub fn exec_ok<S: AsRef<OsStr>>(&self, argv: &[S]) -> Result<Output> {
        self.exec(argv)?.ok()
    }

    /// Runs `argv` as OS user `user` (`runuser -u USER --`) in the namespace.
    pub fn exec_as<S: AsRef<OsStr>>(&self, user: &str, argv: &[S]) -> Result<Output> {
        self.exec_inner(Some(user), argv, DEFAULT_TIMEOUT)
    }

    /// Like [`Host::exec_as`] with an explicit timeout.
    pub fn exec_as_timeout<S: AsRef<OsStr>>(
        &self,
        user: &str,
        argv: &[S],
        timeout: Duration,
    ) -> Result<Output> {
        self.exec_inner(Some(user), argv, timeout)
    }

    /// Runs `argv` as `user` and fails with its stderr unless it exits 0.
    pub fn exec_as_ok<S: AsRef<OsStr>>(&self, user: &str, argv: &[S]) -> Result<Output> {
        self.exec_as(user, argv)?.ok()
    }

    /// Path of log `log_name` of this host in the lab directory: `<dir>/<host>.<log_name>.log`.
    pub fn log_path(&self, log_name: &str) -> PathBuf {
        self.lab.dir.join(format!("{}.{log_name}.log", self.name))
    }

    fn spawn_inner<S: AsRef<OsStr>>(
        &self,
        user: Option<&str>,
        argv: &[S],
        log_name: &str,
    ) -> Result<Process> {
        let log = self.log_path(log_name);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let full = self.argv(user, argv);
        let mut cmd = command(&full)?;
        cmd.current_dir(&self.lab.dir)
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file));
        let label = format!("[{}] {}", self.name, describe(argv));
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start `{label}`"))?;
        Ok(Process::new(child, label, log))
    }

    /// Starts `argv` in the namespace, stdout and stderr appended to
    /// [`Host::log_path`]`(log_name)`.
    pub fn spawn<S: AsRef<OsStr>>(&self, argv: &[S], log_name: &str) -> Result<Process> {
        self.spawn_inner(None, argv, log_name)
    }

    /// Starts `argv` as OS user `user` (`runuser -u USER --`) in the namespace.
    pub fn spawn_as<S: AsRef<OsStr>>(
        &self,
        user: &str,
        argv: &[S],
        log_name: &str,
    ) -> Result<Process> {
        self.spawn_inner(Some(user), argv, log_name)
    }

    /// A name unique within the lab, for files of repeated starts (`<host>-<stem>-<n>`).
    pub(crate) fn unique_stem(&self, stem: &str) -> String {
        let n = self.lab.seq.fetch_add(1, Ordering::Relaxed);
        format!("{}-{stem}-{n}", self.name)
    }

    /// Addresses on the host's interfaces as `address/prefix` (from `ip -o addr show`).
    pub fn addresses(&self) -> Result<Vec<String>> {
        let out = self
            .exec_timeout(&["ip", "-o", "addr", "show"], Duration::from_secs(5))?
            .ok()?;
        let mut addrs = Vec::new();
        for line in out.stdout.lines() {
            let mut words = line.split_whitespace();
            while let Some(w) = words.next() {
                if w == "inet" || w == "inet6" {
                    if let Some(a) = words.next() {
                        addrs.push(a.to_string());
                    }
                }
            }
        }
        Ok(addrs)
    }

    /// Whether `ip` (`10.77.0.100`, or `10.77.0.100/24` to also match the prefix) is on one of its
    /// interfaces. False if the namespace cannot be queried.
    pub fn has_address(&self, ip: &str) -> bool {
        let Ok(addrs) = self.addresses() else {
            return false;
        };
        addrs.iter().any(|a| {
            if ip.contains('/') {
                a == ip
            } else {
                a.split('/').next() == Some(ip)
            }
        })
    }

    /// Whether `ip` answers an ICMP echo from this host within `timeout` (retrying every 200 ms).
    pub fn ping(&self, ip: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return false;
            }
            let wait = left.min(Duration::from_millis(500));
            let wait_arg = format!("{:.3}", wait.as_secs_f64().max(0.001));
            let ok = self
                .exec_timeout(
                    &["ping", "-n", "-q", "-c", "1", "-W", &wait_arg, ip],
                    wait + Duration::from_secs(2),
                )
                .map(|o| o.success())
                .unwrap_or(false);
            if ok {
                return true;
            }
            let pause = Duration::from_millis(200).min(timeout.saturating_sub(start.elapsed()));
            std::thread::sleep(pause);
        }
    }

    /// Captures packets matching the tcpdump `filter` on `eth0` into pcap file `path` (relative
    /// paths are in the lab directory). Returns once tcpdump is listening; stop it with
    /// [`Process::kill`]`(Signal::Int)` (packets are written unbuffered, so dropping the process
    /// also leaves a complete file).
    pub fn capture(&self, filter: &str, path: impl AsRef<Path>) -> Result<Process> {
        let path = self.lab.dir.join(path.as_ref());
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "capture".into());
        let mut argv: Vec<OsString> = ["tcpdump", "-i", "eth0", "-nn", "-U", "-Z", "root", "-w"]
            .iter()
            .map(OsString::from)
            .collect();
        argv.push(path.into_os_string());
        if !filter.trim().is_empty() {
            argv.push(filter.into());
        }
        let proc = self.spawn(&argv, &format!("tcpdump-{stem}"))?;
        let ready = crate::wait_until(
            Duration::from_secs(5),
            Duration::from_millis(10),
            &format!("tcpdump on {} to listen", self.name),
            || proc.log_contents().contains("listening on") || !proc.is_running(),
        );
        if ready.is_err() || !proc.is_running() {
            anyhow::bail!(
                "tcpdump on {} did not start: {}",
                self.name,
                proc.log_contents().trim()
            );
        }
        Ok(proc)
    }
}
