//! Running Debian's keepalived (2.2.x) inside a lab host, and a small builder for VRRP instance
//! configs.
//!
//! Several instances coexist on one machine because each runs in its own network namespace and gets
//! its own config, parent/VRRP/checker/BFD pid files in the lab directory (`-p -r -c -b`). Without
//! `--namespace` keepalived keeps no other state under `/run`. It runs VRRP only (`-P`), in the
//! foreground (`-n`), logging to the console (`-l -D`, captured in the process log) and not to
//! syslog (`-G`), with `-i <host>` as config id so `@<host>` lines in a shared config apply to one
//! host only.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::host::Host;
use crate::lab::write_lab_file;
use crate::process::Process;

impl Host {
    /// Writes `conf` to the lab directory and starts keepalived on it inside this host. Returns
    /// once keepalived reports `Startup complete` (at most 10 s); fails if it exits or rejects the
    /// config first.
    pub fn spawn_keepalived(&self, conf: &str) -> Result<Process> {
        let stem = self.unique_stem("keepalived");
        let dir = self.lab_dir().to_path_buf();
        let conf_path = write_lab_file(&dir, &format!("{stem}.conf"), conf)?;
        let pid = |kind: &str| dir.join(format!("{stem}.{kind}.pid"));
        let check = self.exec_timeout(
            &[
                "keepalived".as_ref(),
                "--config-test".as_ref(),
                "-f".as_ref(),
                conf_path.as_os_str(),
            ],
            Duration::from_secs(10),
        )?;
        if !check.success() {
            bail!(
                "keepalived rejects {}: {}{}",
                conf_path.display(),
                check.stderr.trim(),
                check.stdout.trim()
            );
        }
        let argv = [
            "keepalived".into(),
            "-P".into(),
            "-n".into(),
            "-l".into(),
            "-D".into(),
            "-G".into(),
            "-i".into(),
            self.name().into(),
            "-f".into(),
            conf_path.into_os_string(),
            "-p".into(),
            pid("main").into_os_string(),
            "-r".into(),
            pid("vrrp").into_os_string(),
            "-c".into(),
            pid("checkers").into_os_string(),
            "-b".into(),
            pid("bfd").into_os_string(),
        ];
        let argv: Vec<std::ffi::OsString> = argv.to_vec();
        let proc = self.spawn(&argv, &stem)?;
        crate::wait_until(
            Duration::from_secs(10),
            Duration::from_millis(10),
            &format!("keepalived on {} to start", self.name()),
            || proc.log_contents().contains("Startup complete") || !proc.is_running(),
        )?;
        if !proc.is_running() {
            bail!(
                "keepalived on {} exited at startup: {}",
                self.name(),
                proc.log_contents().trim()
            );
        }
        Ok(proc)
    }
}

/// Builder for a single-instance VRRP keepalived config on `eth0`.
///
/// ```
/// let conf = whpg_lab::KeepalivedConf::new(51, 100, "10.77.0.100/24")
///     .unicast("10.77.0.11", &["10.77.0.12"])
///     .auth_pass("secret")
///     .render();
/// assert!(conf.contains("virtual_router_id 51"));
/// ```
#[derive(Debug, Clone)]
pub struct KeepalivedConf {
    instance: String,
    vrid: u8,
    priority: u8,
    vips: Vec<String>,
    interface: String,
    state: String,
    version: u8,
    advert_int: Duration,
    unicast: Option<(String, Vec<String>)>,
    auth_pass: Option<String>,
    nopreempt: bool,
    global_lines: Vec<String>,
    instance_lines: Vec<String>,
}

impl KeepalivedConf {
    /// Instance `VI_1` on `eth0`, VRRPv2, state BACKUP, advert interval 1 s, multicast, no auth.
    pub fn new(vrid: u8, priority: u8, vip: &str) -> KeepalivedConf {
        KeepalivedConf {
            instance: "VI_1".into(),
            vrid,
            priority,
            vips: vec![vip.into()],
            interface: "eth0".into(),
            state: "BACKUP".into(),
            version: 2,
            advert_int: Duration::from_secs(1),
            unicast: None,
            auth_pass: None,
            nopreempt: false,
            global_lines: Vec::new(),
            instance_lines: Vec::new(),
        }
    }

    /// Instance name (default `VI_1`).
    pub fn instance(mut self, name: &str) -> Self {
        self.instance = name.into();
        self
    }

    /// Another virtual address.
    pub fn vip(mut self, vip: &str) -> Self {
        self.vips.push(vip.into());
        self
    }

    /// Interface (default `eth0`).
    pub fn interface(mut self, name: &str) -> Self {
        self.interface = name.into();
        self
    }

    /// Initial state: `MASTER` or `BACKUP` (default).
    pub fn state(mut self, state: &str) -> Self {
        self.state = state.into();
        self
    }

    /// VRRP version 2 (default) or 3; sub-second advert intervals need 3.
    pub fn version(mut self, version: u8) -> Self {
        self.version = version;
        self
    }

    /// Advertisement interval (rendered in seconds, e.g. `0.2`).
    pub fn advert_int(mut self, interval: Duration) -> Self {
        self.advert_int = interval;
        self
    }

    /// Unicast adverts from `src` to `peers` instead of multicast.
    pub fn unicast(mut self, src: &str, peers: &[&str]) -> Self {
        self.unicast = Some((src.into(), peers.iter().map(|p| p.to_string()).collect()));
        self
    }

    /// `auth_type PASS` with this password (VRRPv2 only).
    pub fn auth_pass(mut self, pass: &str) -> Self {
        self.auth_pass = Some(pass.into());
        self
    }

    /// Do not preempt a lower-priority master.
    pub fn nopreempt(mut self) -> Self {
        self.nopreempt = true;
        self
    }

    /// An extra line in `global_defs`.
    pub fn global_line(mut self, line: &str) -> Self {
        self.global_lines.push(line.into());
        self
    }

    /// An extra line in the `vrrp_instance` block (e.g. `notify_master "/path/script"`).
    pub fn instance_line(mut self, line: &str) -> Self {
        self.instance_lines.push(line.into());
        self
    }

    /// The config text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "global_defs {{");
        let _ = writeln!(s, "    vrrp_version {}", self.version);
        for l in &self.global_lines {
            let _ = writeln!(s, "    {l}");
        }
        let _ = writeln!(s, "}}\n");
        let _ = writeln!(s, "vrrp_instance {} {{", self.instance);
        let _ = writeln!(s, "    state {}", self.state);
        let _ = writeln!(s, "    interface {}", self.interface);
        let _ = writeln!(s, "    virtual_router_id {}", self.vrid);
        let _ = writeln!(s, "    priority {}", self.priority);
        let secs = self.advert_int.as_secs_f64();
        let _ = writeln!(s, "    advert_int {}", format_secs(secs));
        if self.nopreempt {
            let _ = writeln!(s, "    nopreempt");
        }
        if let Some((src, peers)) = &self.unicast {
            let _ = writeln!(s, "    unicast_src_ip {src}");
            let _ = writeln!(s, "    unicast_peer {{");
            for p in peers {
                let _ = writeln!(s, "        {p}");
            }
            let _ = writeln!(s, "    }}");
        }
        if let Some(pass) = &self.auth_pass {
            let _ = writeln!(s, "    authentication {{");
            let _ = writeln!(s, "        auth_type PASS");
            let _ = writeln!(s, "        auth_pass {pass}");
            let _ = writeln!(s, "    }}");
        }
        let _ = writeln!(s, "    virtual_ipaddress {{");
        for v in &self.vips {
            let _ = writeln!(s, "        {v} dev {}", self.interface);
        }
        let _ = writeln!(s, "    }}");
        for l in &self.instance_lines {
            let _ = writeln!(s, "    {l}");
        }
        let _ = writeln!(s, "}}");
        s
    }
}

fn format_secs(secs: f64) -> String {
    let s = format!("{secs:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_unicast_v2_with_auth() {
        let conf = KeepalivedConf::new(51, 98, "10.77.0.100/24")
            .unicast("10.77.0.12", &["10.77.0.11"])
            .auth_pass("pw")
            .render();
        for needle in [
            "vrrp_version 2",
            "virtual_router_id 51",
            "priority 98",
            "advert_int 1\n",
            "unicast_src_ip 10.77.0.12",
            "        10.77.0.11\n",
            "auth_type PASS",
            "10.77.0.100/24 dev eth0",
        ] {
            assert!(conf.contains(needle), "{needle:?} missing in\n{conf}");
        }
    }

    #[test]
    fn sub_second_interval() {
        assert_eq!(format_secs(0.2), "0.2");
        assert_eq!(format_secs(1.0), "1");
    }
}
