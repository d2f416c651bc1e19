//! The benchmark's lab: n1 (primary), n2 (streaming standby), a client, a witness host `gw` (the
//! gateway a real pair would ping), a VIP, and helpers to read the state of a whpg-ha daemon and of
//! the databases.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use whpg_lab::{Host, Lab, PgNode};

use crate::netns;

pub const N1: &str = "10.77.0.11/24";
pub const N2: &str = "10.77.0.12/24";
pub const CLIENT: &str = "10.77.0.99/24";
/// The witness: a plain host that only answers ping, as a gateway does.
pub const WITNESS_CIDR: &str = "10.77.0.1/24";
pub const VIP: &str = "10.77.0.100";
pub const VIP_CIDR: &str = "10.77.0.100/24";
pub const PG_PORT: u16 = 5432;
/// whpg-ha's API port (the bench reads `/status` on each host's loopback).
pub const API_PORT: u16 = 8008;

/// `--synchronous`: n1 waits for n2 to confirm every commit.
static SYNCHRONOUS: AtomicBool = AtomicBool::new(false);

/// Makes every lab built after this replicate synchronously (default: asynchronously).
pub fn set_synchronous(on: bool) {
    SYNCHRONOUS.store(on, Ordering::Relaxed);
}

/// The replication mode of the labs, for the report.
pub fn replication() -> &'static str {
    if SYNCHRONOUS.load(Ordering::Relaxed) {
        "synchronous (n1: synchronous_standby_names = '*')"
    } else {
        "asynchronous"
    }
}

/// The hosts and databases of one trial. The lab goes last, so it outlives everything in it.
pub struct Topology {
    pub n1: Host,
    pub n2: Host,
    pub client: Host,
    pub gw: Host,
    pub primary: PgNode,
    pub standby: PgNode,
    pub lab: Lab,
}

impl Topology {
    /// A fresh lab with a PostgreSQL 15 primary on n1 and its streaming standby on n2.
    pub fn build(name: &str) -> Result<Topology> {
        let lab = Lab::new(name)?;
        let n1 = lab.add_host("n1", N1)?;
        let n2 = lab.add_host("n2", N2)?;
        let client = lab.add_host("cl", CLIENT)?;
        let gw = lab.add_host("gw", WITNESS_CIDR)?;
        let primary = PgNode::init_primary(&lab, &n1, PG_PORT)?;
        // Overlapping attempts from the writer plus the HA daemons' probes need headroom.
        primary.set("max_connections", "200")?;
        primary.start()?;
        primary
            .psql("CREATE TABLE writes (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")?;
        let standby = PgNode::init_standby_from(&lab, &n2, &primary, PG_PORT)?;
        standby.start()?;
        standby.wait_for_sql(
            "SELECT status FROM pg_stat_wal_receiver",
            "streaming",
            Duration::from_secs(20),
        )?;
        if SYNCHRONOUS.load(Ordering::Relaxed) {
            // Set on n1 only, after n2 was copied from it: once promoted, n2 has no standby to
            // wait for and must not block its own commits.
            primary.psql("ALTER SYSTEM SET synchronous_standby_names = '*'")?;
            primary.psql("SELECT pg_reload_conf()")?;
            primary.wait_for_sql(
                "SELECT sync_state FROM pg_stat_replication",
                "sync",
                Duration::from_secs(20),
            )?;
        }
        Ok(Topology {
            n1,
            n2,
            client,
            gw,
            primary,
            standby,
            lab,
        })
    }
}

/// `pg_is_in_recovery()` of a node, `None` when it does not answer.
pub fn in_recovery(node: &PgNode) -> Option<bool> {
    match node.psql("SELECT pg_is_in_recovery()").ok()?.as_str() {
        "t" => Some(true),
        "f" => Some(false),
        _ => None,
    }
}

/// Ids present in the `writes` table of `node`.
pub fn stored_ids(node: &PgNode) -> Result<Vec<i64>> {
    let out = node.psql("SELECT id FROM writes")?;
    out.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.parse::<i64>().with_context(|| format!("id {l:?}")))
        .collect()
}

/// whpg-ha's `/status` on `host`, `None` while it does not answer.
pub fn whpg_ha_status(host: &Host) -> Option<serde_json::Value> {
    let body = netns::run_in(host.netns(), || -> Option<String> {
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], API_PORT));
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(300)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream
            .write_all(b"GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        if response.split(' ').nth(1)? != "200" {
            return None;
        }
        Some(response.split_once("\r\n\r\n")?.1.to_string())
    })
    .ok()??;
    serde_json::from_str(&body).ok()
}
