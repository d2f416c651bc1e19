//! The lab itself: unique namespace names, the switch namespace with its bridge, host creation, the
//! lab directory, guaranteed teardown on drop, and cleanup of namespaces left behind by dead test
//! processes.
//!
//! Names: a lab is `wl<pid>x<n>` (pid of the test process, per-process counter); its namespaces are
//! `wl<pid>x<n>-sw` and `wl<pid>x<n>-<host>`. Interface names never derive from those, so they stay
//! short: `br0` in the switch, `eth0` in each host and `v<i><host>` (truncated to 15 bytes) for
//! switch ports.

use std::collections::HashSet;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cmd::{lock, run};
use crate::host::Host;

/// Timeout for the short `ip`/`nft` commands the lab runs itself.
pub(crate) const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
const NAME_PREFIX: &str = "wl";
static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);
static STALE_CLEANUP: Once = Once::new();

/// State shared by a lab and its hosts.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) test: String,
    pub(crate) dir: PathBuf,
    pub(crate) switch: String,
    /// Host namespaces where fault tables were installed.
    pub(crate) nft_used: Mutex<HashSet<String>>,
    /// Counter for unique file names in the lab directory.
    pub(crate) seq: AtomicU32,
}

/// One test's network: a switch namespace with bridge `br0` and host namespaces attached to it.
///
/// Dropping it kills every process in its namespaces, deletes them (with their veths and nftables
/// tables) and removes its directory, unless the thread is panicking or `WHPG_LAB_KEEP` is set, in
/// which case the directory and its logs are kept and their paths printed.
#[derive(Debug)]
pub struct Lab {
    pub(crate) shared: Arc<Shared>,
    hosts: Mutex<Vec<Host>>,
}

fn ip(args: &[&str]) -> Result<()> {
    let mut argv = vec!["ip"];
    argv.extend_from_slice(args);
    run(&argv, SETUP_TIMEOUT)?.ok()?;
    Ok(())
}

fn sanitize(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(max)
        .collect()
}

fn make_dir(path: &Path, mode: u32) -> Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// Names of all network namespaces on the machine (`ip netns list`).
pub fn netns_list() -> Result<Vec<String>> {
    let out = run(&["ip", "netns", "list"], SETUP_TIMEOUT)?.ok()?;
    Ok(out
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// SIGKILLs every process in `ns` until none is left (bounded); returns whether it is empty.
pub(crate) fn kill_netns_processes(ns: &str, within: Duration) -> bool {
    let me = std::process::id();
    let start = Instant::now();
    loop {
        let pids: Vec<u32> = match run(&["ip", "netns", "pids", ns], SETUP_TIMEOUT) {
            Ok(out) if out.success() => out
                .stdout
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .filter(|&p| p != me && p > 1)
                .collect(),
            _ => return false,
        };
        if pids.is_empty() {
            return true;
        }
        for pid in pids {
            // SAFETY: plain syscall with integer arguments.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
        if start.elapsed() >= within {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the processes of `ns`, flushes its nftables ruleset if asked, and deletes it. Never
/// panics.
fn destroy_netns(ns: &str, flush_nft: bool) {
    if !kill_netns_processes(ns, Duration::from_secs(5)) {
        eprintln!("whpg-lab: processes still running in namespace {ns}");
    }
    if flush_nft {
        let _ = run(
            &["ip", "netns", "exec", ns, "nft", "flush", "ruleset"],
            SETUP_TIMEOUT,
        );
    }
    match run(&["ip", "netns", "del", ns], SETUP_TIMEOUT).and_then(|o| o.ok()) {
        Ok(_) => {}
        Err(e) => eprintln!("whpg-lab: cannot delete namespace {ns}: {e:#}"),
    }
}

/// Parses `wl<pid>x<n>-...` and returns the pid.
fn owner_pid(ns: &str) -> Option<u32> {
    let rest = ns.strip_prefix(NAME_PREFIX)?;
    let (lab, _host) = rest.split_once('-')?;
    let (pid, n) = lab.split_once('x')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

impl Lab {
    /// Creates the switch namespace, its bridge and the lab directory for the test `test_name`.
    ///
    /// The first lab of a process also removes namespaces left by dead test processes.
    pub fn new(test_name: &str) -> Result<Lab> {
        STALE_CLEANUP.call_once(|| {
            if let Err(e) = Lab::cleanup_stale() {
                eprintln!("whpg-lab: stale namespace cleanup failed: {e:#}");
            }
        });
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{NAME_PREFIX}{}x{n}", std::process::id());
        let base = std::env::temp_dir().join("whpg-lab");
        make_dir(&base, 0o755)?;
        let dir = base.join(format!("{name}-{}", sanitize(test_name, 60)));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        make_dir(&dir, 0o755)?;
        let lab = Lab {
            shared: Arc::new(Shared {
                switch: format!("{name}-sw"),
                name,
                test: test_name.to_string(),
                dir,
                nft_used: Mutex::new(HashSet::new()),
                seq: AtomicU32::new(0),
            }),
            hosts: Mutex::new(Vec::new()),
        };
        // From here on, a failure drops `lab`, which deletes whatever was created.
        let sw = lab.shared.switch.as_str();
        ip(&["netns", "add", sw])?;
        ip(&["-n", sw, "link", "set", "lo", "up"])?;
        ip(&["-n", sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", sw, "link", "set", "br0", "up"])?;
        Ok(lab)
    }

    /// The lab's unique name (`wl<pid>x<n>`), also the prefix of all its namespaces.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The test name given to [`Lab::new`].
    pub fn test_name(&self) -> &str {
        &self.shared.test
    }

    /// The lab directory (mode 0755) for configuration files, logs and pid files.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The switch namespace holding bridge `br0`.
    pub fn switch_netns(&self) -> &str {
        &self.shared.switch
    }

    /// Every namespace of this lab that currently exists.
    pub fn netns_names(&self) -> Result<Vec<String>> {
        let prefix = format!("{}-", self.shared.name);
        Ok(netns_list()?
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .collect())
    }

    /// The hosts added so far.
    pub fn hosts(&self) -> Vec<Host> {
        lock(&self.hosts).clone()
    }

    /// Adds host `name` with address `cidr` (e.g. `10.77.0.11/24`) on its `eth0`, plugged into the
    /// bridge.
    ///
    /// The veth pair is created from inside the switch namespace with its peer placed directly in
    /// the host namespace, so it never exists in the root namespace.
    pub fn add_host(&self, name: &str, cidr: &str) -> Result<Host> {
        if name.is_empty()
            || name.len() > 24
            || name == "sw"
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            bail!("invalid host name {name:?} (1-24 of [A-Za-z0-9_-], not \"sw\")");
        }
        let (addr, prefix) = cidr
            .split_once('/')
            .with_context(|| format!("{cidr:?} is not address/prefix"))?;
        let ip_addr: IpAddr = addr
            .parse()
            .with_context(|| format!("{addr:?} is not an IP address"))?;
        let max = if ip_addr.is_ipv4() { 32 } else { 128 };
        match prefix.parse::<u8>() {
            Ok(p) if p <= max => {}
            _ => bail!("{cidr:?} has an invalid prefix length"),
        }
        let mut hosts = lock(&self.hosts);
        if hosts.iter().any(|h| h.name() == name) {
            bail!("host {name} already exists in lab {}", self.shared.name);
        }
        let ns = format!("{}-{name}", self.shared.name);
        let port: String = format!("v{}{name}", hosts.len()).chars().take(15).collect();
        let sw = self.shared.switch.as_str();
        ip(&["netns", "add", &ns])?;
        let host = Host::new(
            Arc::clone(&self.shared),
            name,
            &ns,
            ip_addr.to_string(),
            cidr,
        );
        hosts.push(host.clone());
        ip(&[
            "-n", sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
        ip(&["-n", sw, "link", "set", &port, "master", "br0", "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&["-n", &ns, "addr", "add", cidr, "dev", "eth0"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        Ok(host)
    }

    /// Writes `contents` to `name` in the lab directory (mode 0644) and returns its path.
    pub fn write_file(&self, name: &str, contents: &str) -> Result<PathBuf> {
        write_lab_file(&self.shared.dir, name, contents)
    }

    /// Creates directory `name` in the lab directory owned by OS user `user` (mode 0700), e.g. a
    /// PostgreSQL data directory for `postgres`.
    pub fn user_dir(&self, user: &str, name: &str) -> Result<PathBuf> {
        let path = self.shared.dir.join(name);
        make_dir(&path, 0o700)?;
        let (uid, gid) = user_ids(user)?;
        std::os::unix::fs::chown(&path, Some(uid), Some(gid))
            .with_context(|| format!("chown {user} {}", path.display()))?;
        Ok(path)
    }

    /// Removes namespaces named like a lab's whose creating process no longer exists, killing
    /// anything still running in them. Safe to call at any time; returns how many namespaces were
    /// removed.
    pub fn cleanup_stale() -> Result<usize> {
        let me = std::process::id();
        let mut removed = 0;
        for ns in netns_list()? {
            let Some(pid) = owner_pid(&ns) else { continue };
            if pid == me || Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            eprintln!("whpg-lab: removing stale namespace {ns} (pid {pid} is gone)");
            destroy_netns(&ns, false);
            removed += 1;
        }
        Ok(removed)
    }
}

pub(crate) fn write_lab_file(dir: &Path, name: &str, contents: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("chmod {}", path.display()))?;
    Ok(path)
}

/// uid and gid of an OS user.
pub(crate) fn user_ids(user: &str) -> Result<(u32, u32)> {
    let c = std::ffi::CString::new(user)?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid value for getpwnam_r to overwrite.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to live, correctly sized storage owned by this frame
    // (getpwnam_r is the reentrant variant, safe with parallel tests).
    let rc =
        unsafe { libc::getpwnam_r(c.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() {
        bail!("no OS user {user:?}");
    }
    Ok((pw.pw_uid, pw.pw_gid))
}

impl Drop for Lab {
    fn drop(&mut self) {
        let shared = &self.shared;
        let mut namespaces: Vec<String> = lock(&self.hosts)
            .iter()
            .map(|h| h.netns().to_string())
            .collect();
        if let Ok(all) = self.netns_names() {
            for ns in all {
                if !namespaces.contains(&ns) {
                    namespaces.push(ns);
                }
            }
        }
        // Hosts first, then the switch (its ports disappear with the host ends).
        namespaces.retain(|n| n != &shared.switch);
        namespaces.push(shared.switch.clone());
        let nft_used = lock(&shared.nft_used).clone();
        for ns in &namespaces {
            destroy_netns(ns, nft_used.contains(ns));
        }
        let keep = std::thread::panicking() || std::env::var_os("WHPG_LAB_KEEP").is_some();
        if keep {
            eprintln!(
                "whpg-lab: kept files of {} ({}) in {}:",
                shared.test,
                shared.name,
                shared.dir.display()
            );
            if let Ok(entries) = std::fs::read_dir(&shared.dir) {
                let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
                paths.sort();
                for p in paths {
                    eprintln!("  {}", p.display());
                }
            }
        } else if let Err(e) = std::fs::remove_dir_all(&shared.dir) {
            eprintln!("whpg-lab: cannot remove {}: {e}", shared.dir.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_parses_lab_names_only() {
        assert_eq!(owner_pid("wl1234x0-sw"), Some(1234));
        assert_eq!(owner_pid("wl99x12-node-1"), Some(99));
        assert_eq!(owner_pid("wlan0-sw"), None);
        assert_eq!(owner_pid("wl12x-sw"), None);
        assert_eq!(owner_pid("wl12x3"), None);
        assert_eq!(owner_pid("sw"), None);
    }
}
