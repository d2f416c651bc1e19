//! Fault injection: link loss, nftables drops inside a host namespace (VRRP only, all IP traffic
//! from a peer, or everything through `eth0`), partitions between two hosts, rejected new TCP
//! connections to a local port, and process crashes.
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

fn reject_table(ip: &IpAddr, port: u16) -> String {
    let ip: String = ip
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("whpg_lab_reject_{ip}_{port}")
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
        let peer: IpAddr = peer
            .parse()
            .with_context(|| format!("{peer:?} is not an IP address"))?;
        let table = table_name(kind, &peer);
        let fam = if peer.is_ipv4() { "ip" } else { "ip6" };
        let chains = block.then(|| match kind {
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
        });
        self.apply_table(host, &table, chains.as_deref())
    }

    /// Replaces table `table` in `host`'s namespace by one holding `chains`, or removes it (`None`).
    fn apply_table(&self, host: &Host, table: &str, chains: Option<&str>) -> Result<()> {
        self.check_host(host)?;
        // Declaring then deleting the table makes the delete succeed whether or not it existed.
        let mut script = format!("table inet {table}\ndelete table inet {table}\n");
        if let Some(chains) = chains {
            script.push_str(&format!("table inet {table} {{\n{chains}}}\n"));
            lock(&self.shared.nft_used).insert(host.netns().to_string());
        }
        let file = write_lab_file(
            &self.shared.dir,
            &format!("{}.nft", host.unique_stem(table)),
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

    /// Isolates `host` from every other host: all IP traffic in or out through its `eth0` is
    /// dropped, while the link stays up (carrier, addresses and ARP untouched) and loopback keeps
    /// working. Unlike [`Lab::link_down`], the host's own software sees a healthy interface.
    pub fn isolate(&self, host: &Host) -> Result<()> {
        let chains =
            chain("input", "iifname \"eth0\" drop") + &chain("output", "oifname \"eth0\" drop");
        self.apply_table(host, "whpg_lab_isolate", Some(&chains))
    }

    /// Undoes [`Lab::isolate`].
    pub fn unisolate(&self, host: &Host) -> Result<()> {
        self.apply_table(host, "whpg_lab_isolate", None)
    }

    /// Inside `host`, answers every new TCP connection to `address:port` with a reset, as if
    /// nothing listened there; established connections go on. With `127.0.0.1` it fails the
    /// local health checks of a server that stays up and keeps serving clients from elsewhere.
    pub fn reject_new_tcp(&self, host: &Host, address: &str, port: u16) -> Result<()> {
        let ip: IpAddr = address
            .parse()
            .with_context(|| format!("{address:?} is not an IP address"))?;
        let fam = if ip.is_ipv4() { "ip" } else { "ip6" };
        // Only a SYN without ACK opens a connection; a loopback SYN passes `input` once.
        let rule = format!(
            "{fam} daddr {ip} tcp dport {port} tcp flags & (syn | ack) == syn reject with tcp reset"
        );
        self.apply_table(host, &reject_table(&ip, port), Some(&chain("input", &rule)))
    }

    /// Undoes [`Lab::reject_new_tcp`].
    pub fn unreject_new_tcp(&self, host: &Host, address: &str, port: u16) -> Result<()> {
        let ip: IpAddr = address
            .parse()
            .with_context(|| format!("{address:?} is not an IP address"))?;
        self.apply_table(host, &reject_table(&ip, port), None)
    }

    /// Crashes `process`: SIGKILL to its whole process group, like [`Process::kill9`].
    pub fn kill9(&self, process: &Process) {
        process.kill9();
    }
}
