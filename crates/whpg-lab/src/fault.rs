//! Fault injection: link loss, nftables drops inside a host namespace (VRRP only, or all IP traffic
//! from a peer), partitions between two hosts, and process crashes.
//!
//! Each nftables fault is its own `inet` table in the affected host's namespace, named after the
//! fault and the peer, so faults stack and are removed independently. Blocking twice is the same as
//! once; unblocking what is not blocked is a no-op. Tables vanish with the namespace when the lab
//! is dropped.

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::cmd::lock;
use crate::host::Host;
use crate::lab::{write_lab_file, Lab};
use crate::process::Process;

#[derive(Clone, Copy)]
enum Kind {
    Vrrp,
    AllIp,
}

fn table_name(kind: Kind, peer: &IpAddr) -> String {
    let tag = match kind {
        Kind::Vrrp => "vrrp",
        Kind::AllIp => "ip",
    };
    let peer: String = peer
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("whpg_lab_{tag}_{peer}")
}

/// A filter chain on `hook` (accepting by default) holding one rule.
fn chain(hook: &str, rule: &str) -> String {
    format!(
        "  chain {hook} {{\n    \
         type filter hook {hook} priority 0; policy accept;\n    \
         {rule}\n  }}\n"
    )
}

impl Lab {
    fn check_host(&self, host: &Host) -> Result<()> {
        if !Arc::ptr_eq(&host.lab, &self.shared) {
            bail!(
                "host {} does not belong to lab {}",
                host.name(),
                self.name()
            );
        }
        Ok(())
    }

    /// Takes the host's `eth0` down: it loses its link to the switch.
    pub fn link_down(&self, host: &Host) -> Result<()> {
        self.check_host(host)?;
        host.exec_ok(&["ip", "link", "set", "eth0", "down"])?;
        Ok(())
    }

    /// Brings the host's `eth0` back up (its addresses were kept).
    pub fn link_up(&self, host: &Host) -> Result<()> {
        self.check_host(host)?;
        host.exec_ok(&["ip", "link", "set", "eth0", "up"])?;
        Ok(())
    }

    fn apply_nft(&self, host: &Host, kind: Kind, peer: &str, block: bool) -> Result<()> {
        self.check_host(host)?;
        let peer: IpAddr = peer
            .parse()
            .with_context(|| format!("{peer:?} is not an IP address"))?;
        let table = table_name(kind, &peer);
        let fam = if peer.is_ipv4() { "ip" } else { "ip6" };
        // Declaring then deleting the table makes the delete succeed whether or not it existed.
        let mut script = format!("table inet {table}\ndelete table inet {table}\n");
        if block {
            let chains = match kind {
                Kind::Vrrp => {
                    let proto = if peer.is_ipv4() {
                        "ip protocol 112"
                    } else {
                        "meta l4proto 112"
                    };
                    chain("input", &format!("{fam} saddr {peer} {proto} drop"))
                }
                Kind::AllIp => {
                    chain("input", &format!("{fam} saddr {peer} drop"))
                        + &chain("output", &format!("{fam} daddr {peer} drop"))
                }
            };
            script.push_str(&format!("table inet {table} {{\n{chains}}}\n"));
            lock(&self.shared.nft_used).insert(host.netns().to_string());
        }
        let file = write_lab_file(
            &self.shared.dir,
            &format!("{}.nft", host.unique_stem(&table)),
            &script,
        )?;
        host.exec_ok(&["nft".as_ref(), "-f".as_ref(), file.as_os_str()])?;
        Ok(())
    }

    /// Drops VRRP (IP protocol 112) arriving at `host` from `peer`: a one-way VRRP partition.
    pub fn block_vrrp_from(&self, host: &Host, peer: &str) -> Result<()> {
        self.apply_nft(host, Kind::Vrrp, peer, true)
    }

    /// Removes [`Lab::block_vrrp_from`].
    pub fn unblock_vrrp_from(&self, host: &Host, peer: &str) -> Result<()> {
        self.apply_nft(host, Kind::Vrrp, peer, false)
    }

    /// Drops all IP traffic between `host` and `peer`, in both directions, at `host`.
    pub fn block_traffic_from(&self, host: &Host, peer: &str) -> Result<()> {
        self.apply_nft(host, Kind::AllIp, peer, true)
    }

    /// Removes [`Lab::block_traffic_from`].
    pub fn unblock_traffic_from(&self, host: &Host, peer: &str) -> Result<()> {
        self.apply_nft(host, Kind::AllIp, peer, false)
    }

    /// Cuts all IP traffic between `a` and `b` (blocked at both ends).
    pub fn partition(&self, a: &Host, b: &Host) -> Result<()> {
        self.block_traffic_from(a, b.address())?;
        self.block_traffic_from(b, a.address())
    }

    /// Undoes [`Lab::partition`].
    pub fn heal(&self, a: &Host, b: &Host) -> Result<()> {
        self.unblock_traffic_from(a, b.address())?;
        self.unblock_traffic_from(b, a.address())
    }

    /// Crashes `process`: SIGKILL to its whole process group, like [`Process::kill9`].
    pub fn kill9(&self, process: &Process) {
        process.kill9();
    }
}
