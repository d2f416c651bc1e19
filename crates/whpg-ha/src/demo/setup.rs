//! The demo's lab: a PostgreSQL 15 primary/standby pair in hosts `n1` and `n2`, a client host,
//! the daemon configuration for each node, and reading a daemon's `/status` from inside its
//! namespace.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Deserialize;
use whpg_lab::postgres::{PG_BIN_DIR, PG_OS_USER, PG_SUPERUSER};
use whpg_lab::{Host, Lab, PgNode, Process};

pub const PG_PORT: u16 = 5432;
pub const VIP: &str = "10.77.0.100";
pub const VIP_CIDR: &str = "10.77.0.100/24";
/// Where each daemon serves its API, on its host's loopback.
pub const API_PORT: u16 = 8008;

/// A node of the pair: name, host address, VRRP priority.
#[derive(Debug, Clone, Copy)]
pub struct NodeSpec {
    pub name: &'static str,
    pub address: &'static str,
    pub priority: u8,
}

pub const N1: NodeSpec = NodeSpec {
    name: "n1",
    address: "10.77.0.11",
    priority: 100,
};
pub const N2: NodeSpec = NodeSpec {
    name: "n2",
    address: "10.77.0.12",
    priority: 98,
};
pub const CLIENT_NAME: &str = "client";
pub const CLIENT_ADDRESS: &str = "10.77.0.99";

/// The table the client writes into.
pub const CREATE_TABLE: &str =
    "CREATE TABLE writes (id bigint PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())";

/// The configuration of one node of the demo pair (identical for both apart from the data
/// directory, which is where each node's own cluster lives in the lab).
pub fn daemon_config(data_directory: &Path) -> String {
    let mut text = String::from(
        "# whpg-ha demo: a PostgreSQL 15 pair in network namespaces\n\
         [vrrp]\ninterface = \"eth0\"\nvrid = 51\nversion = 3\nadvert_interval = \"100ms\"\n\
         transport = \"multicast\"\n\n[vrrp.garp]\nrepeat = 2\nmaster_delay = \"0s\"\n",
    );
    text += &format!("\n[[vip]]\naddress = \"{VIP_CIDR}\"\nlabel = \"eth0:vip\"\n");
    for node in [N1, N2] {
        text += &format!(
            "\n[nodes.{}]\naddress = \"{}\"\npriority = {}\n",
            node.name, node.address, node.priority
        );
    }
    text += &format!(
        "\n[database]\nflavor = \"postgres\"\nhost = \"127.0.0.1\"\nport = {PG_PORT}\n\
         user = \"{PG_SUPERUSER}\"\ndbname = \"postgres\"\ndata_directory = \"{}\"\n\
         os_user = \"{PG_OS_USER}\"\nbin_dir = \"{PG_BIN_DIR}\"\n",
        data_directory.display()
    );
    text += "\n[health]\ninterval = \"100ms\"\ntimeout = \"500ms\"\nfall = 3\nrise = 2\n";
    text += "\n[failover]\ntriggers = [\"node-loss\", \"network-loss\", \"database-failure\"]\n\
             confirmation = \"3s\"\nwal_freshness = \"1s\"\n";
    text += &format!("\n[api]\nlisten = [\"127.0.0.1:{API_PORT}\"]\n");
    text
}

/// Starts `whpg-ha run` (this very binary) on `host` as `node`, logging to `<node>.whpg-ha-<node>.log`
/// in the lab directory.
pub fn start_daemon(lab: &Lab, host: &Host, node: &str, config: &str) -> Result<Process> {
    // The demo's daemons journal into the lab directory, which the teardown removes.
    let journal = lab.dir().join(format!("{node}.journal"));
    let config = format!("{config}\n[journal]\npath = \"{}\"\n", journal.display());
    let path = lab.write_file(&format!("{node}.toml"), &config)?;
    let binary = std::env::current_exe().context("locating the whpg-ha binary")?;
    let binary = binary.to_string_lossy().into_owned();
    let path = path.to_string_lossy().into_owned();
    // The timeline reads the daemon's timestamped log; under systemd (JOURNAL_STREAM) the
    // daemon would leave the timestamps to the journal.
    host.spawn(
        &[
            "env",
            "-u",
            "JOURNAL_STREAM",
            binary.as_str(),
            "run",
            "--config",
            &path,
            "--node",
            node,
        ],
        &format!("whpg-ha-{node}"),
    )
}

/// Initialises and starts the primary on `n1` with the demo table.
pub fn start_primary(lab: &Lab, n1: &Host) -> Result<PgNode> {
    let primary = PgNode::init_primary(lab, n1, PG_PORT).context("initdb on n1")?;
    primary.start().context("starting the primary on n1")?;
    primary
        .psql(CREATE_TABLE)
        .context("creating the demo table")?;
    Ok(primary)
}

/// Clones the primary into a standby on `n2`, starts it and waits until it streams.
pub fn start_standby(lab: &Lab, n2: &Host, primary: &PgNode) -> Result<PgNode> {
    let standby =
        PgNode::init_standby_from(lab, n2, primary, PG_PORT).context("pg_basebackup on n2")?;
    standby.start().context("starting the standby on n2")?;
    standby
        .wait_for_sql(
            "SELECT status FROM pg_stat_wal_receiver",
            "streaming",
            Duration::from_secs(20),
        )
        .context("waiting for the standby to stream")?;
    Ok(standby)
}

/// Runs `f` on a new thread that has joined network namespace `ns`; the demo process itself
/// stays where it is.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    whpg_lab::netns::run_in(ns, f)
}

/// What the demo reads from a daemon's `/status` (unknown fields are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct NodeView {
    pub node: String,
    pub address: String,
    pub vrrp: VrrpView,
    pub holds_vips: bool,
    #[serde(default)]
    pub database: Option<DatabaseView>,
    #[serde(default)]
    pub transitions: Vec<TransitionView>,
    #[serde(default)]
    pub events: Vec<EventView>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct VrrpView {
    pub state: String,
    pub priority: u8,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseView {
    pub role: String,
    #[serde(default)]
    pub healthy: bool,
    #[serde(default)]
    pub needs_rejoin: bool,
    #[serde(default)]
    pub fenced: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TransitionView {
    pub at_unix_ms: u64,
    pub from: String,
    pub to: String,
    pub reason: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventView {
    pub at_unix_ms: u64,
    pub kind: String,
    pub detail: String,
}

/// `GET /status` of the daemon in `host`, or `None` while it does not answer.
pub fn status(host: &Host) -> Option<NodeView> {
    let body = in_netns(host.netns(), || http_get("/status")).ok()??;
    serde_json::from_str(&body).ok()
}

/// A minimal HTTP/1.1 GET on the local API; the body of a 200 answer.
fn http_get(path: &str) -> Option<String> {
    let address = SocketAddr::from(([127, 0, 0, 1], API_PORT));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(300)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code: u16 = response.split(' ').nth(1)?.parse().ok()?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    (code == 200).then(|| body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_both_nodes_and_the_data_directory() {
        let text = daemon_config(Path::new("/tmp/x/n1.pg5432"));
        assert!(text.contains("[nodes.n1]\naddress = \"10.77.0.11\"\npriority = 100"));
        assert!(text.contains("[nodes.n2]\naddress = \"10.77.0.12\"\npriority = 98"));
        assert!(text.contains("data_directory = \"/tmp/x/n1.pg5432\""));
        assert!(text.contains("address = \"10.77.0.100/24\""));
        let parsed: toml::Table = text.parse().expect("valid TOML");
        assert_eq!(parsed["api"]["listen"][0].as_str(), Some("127.0.0.1:8008"));
    }

    #[test]
    fn status_json_parses() {
        let json = r#"{"node":"n1","address":"10.77.0.11","vrrp":{"state":"MASTER","priority":100,
            "extra":1},"holds_vips":true,"vips":["10.77.0.100/24"],
            "transitions":[{"at_unix_ms":5,"from":"BACKUP","to":"MASTER","reason":"x"}],
            "database":{"role":"primary","healthy":true,"needs_rejoin":false,"fenced":null},
            "events":[{"at_unix_ms":6,"kind":"vip","detail":"virtual addresses installed"}]}"#;
        let view: NodeView = serde_json::from_str(json).unwrap();
        assert_eq!(view.vrrp.state, "MASTER");
        assert_eq!(view.database.unwrap().role, "primary");
        assert_eq!(view.transitions[0].to, "MASTER");
        assert_eq!(view.events[0].kind, "vip");
    }
}
