//! The resolved configuration the daemon runs on: typed values, defaults filled, this node chosen.
//!
//! Everything here has passed validation; code that consumes a [`Config`] never re-checks ranges.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::error::ConfigError;

/// The whole configuration as seen from this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This host's entry in `[nodes]`.
    pub local: Node,
    /// Every other entry in `[nodes]`, sorted by name (one in a coordinator pair).
    pub peers: Vec<Node>,
    pub vrrp: Vrrp,
    /// Virtual addresses moved with the mastership, in file order.
    pub vips: Vec<Vip>,
    pub database: Database,
    pub health: Health,
    pub failover: Failover,
    pub replication: Replication,
    pub commands: Commands,
    pub witness: Witness,
    pub api: Api,
    pub journal: Journal,
    /// `[arbiter]`: the etcd lease that decides who may hold the VIP; `None`: no arbiter.
    pub arbiter: Option<Arbiter>,
    /// Legal but suspicious settings (e.g. priority 255); `check-config` prints them.
    pub warnings: Vec<ConfigError>,
}

impl Config {
    /// The peer of a pair (the first other node by name). Validation guarantees there is one.
    pub fn peer(&self) -> Option<&Node> {
        self.peers.first()
    }

    /// All nodes, sorted by name.
    pub fn nodes(&self) -> Vec<&Node> {
        let mut all: Vec<&Node> = std::iter::once(&self.local).chain(&self.peers).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The node with this name.
    pub fn node(&self, name: &str) -> Option<&Node> {
        std::iter::once(&self.local)
            .chain(&self.peers)
            .find(|n| n.name == name)
    }

    /// `commands.promote` is the flavor's default, not an argv of the operator's own.
    pub fn promote_is_default(&self) -> bool {
        let db = &self.database;
        let default =
            super::defaults::command(super::CommandKind::Promote, db.flavor, db.bin_dir.is_some());
        self.commands.promote.argv == default.argv
    }

    /// Source address of our adverts: this node's address.
    pub fn vrrp_source(&self) -> Ipv4Addr {
        self.local.address
    }

    /// Where our adverts go: the peers' addresses (unicast) or 224.0.0.18 (multicast).
    pub fn vrrp_destinations(&self) -> Vec<Ipv4Addr> {
        match self.vrrp.transport {
            Transport::Unicast => self.peers.iter().map(|p| p.address).collect(),
            Transport::Multicast => vec![VRRP_MULTICAST_GROUP],
        }
    }

    /// Values of the placeholders known from the file alone (see [`PLACEHOLDERS`]); the caller adds
    /// `primary_host` and `standby_host`, which depend on the roles at run time.
    ///
    /// [`PLACEHOLDERS`]: super::template::PLACEHOLDERS
    pub fn template_vars(&self) -> BTreeMap<&'static str, String> {
        let db = &self.database;
        let mut vars = BTreeMap::new();
        vars.insert("data_directory", db.data_directory.display().to_string());
        vars.insert("port", db.port.to_string());
        vars.insert("user", db.user.clone());
        vars.insert("dbname", db.dbname.clone());
        vars.insert("os_user", db.os_user.clone());
        vars.insert("node", self.local.name.clone());
        vars.insert("node_address", self.local.address.to_string());
        if let Some(bin_dir) = &db.bin_dir {
            vars.insert("bin_dir", bin_dir.display().to_string());
        }
        if let Some(peer) = self.peer() {
            vars.insert("peer", peer.name.clone());
            vars.insert("peer_address", peer.address.to_string());
        }
        vars
    }
}

/// One entry of `[nodes]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// The node's address on `vrrp.interface`: unicast source/peer, tie-break, where its database is probed.
    pub address: Ipv4Addr,
    /// VRRP priority 1..=255 (255 = address owner).
    pub priority: u8,
    /// The `application_name` its WAL receiver connects with, when the primary does not see it
    /// at `address` (replication over another network): how `pg_stat_replication` names it.
    pub application_name: Option<String>,
}

/// The multicast group of VRRP over IPv4.
pub const VRRP_MULTICAST_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VrrpVersion {
    /// RFC 3768: advert interval in whole seconds, optional PASS authentication.
    V2,
    /// RFC 5798: advert interval in centiseconds, no authentication.
    V3,
}

impl VrrpVersion {
    pub fn number(self) -> u8 {
        match self {
            VrrpVersion::V2 => 2,
            VrrpVersion::V3 => 3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Adverts go to each peer's address, from this node's address.
    Unicast,
    /// Adverts go to 224.0.0.18.
    Multicast,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Unicast => "unicast",
            Transport::Multicast => "multicast",
        }
    }
}

/// How the VRRPv3 checksum over IPv4 is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V3Checksum {
    /// Include the IPv4 pseudo-header (keepalived's default).
    PseudoHeader,
    /// VRRP message only (the RFC 9568 reading).
    VrrpOnly,
}

impl V3Checksum {
    pub fn as_str(self) -> &'static str {
        match self {
            V3Checksum::PseudoHeader => "pseudo-header",
            V3Checksum::VrrpOnly => "vrrp-only",
        }
    }
}

/// A value that is never printed: `Debug` and `Display` show `********`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// What is shown instead of a secret.
    pub const MASK: &'static str = "********";

    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it (the wire).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", Self::MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::MASK)
    }
}

/// `[vrrp]`: one VRRP instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vrrp {
    pub interface: String,
    pub vrid: u8,
    pub version: VrrpVersion,
    /// Whole seconds for v2, a multiple of 10 ms for v3.
    pub advert_interval: Duration,
    pub transport: Transport,
    /// PASS authentication (v2 only), 1..=8 bytes.
    pub auth_pass: Option<Secret>,
    /// Whether a higher-priority backup takes the mastership from a lower-priority master.
    pub preempt: bool,
    pub preempt_delay: Duration,
    pub v3_checksum: V3Checksum,
    /// Accept v3 adverts whose checksum matches either computation.
    pub accept_either_checksum: bool,
    pub garp: Garp,
}

impl Vrrp {
    /// The PASS authentication data as sent on the wire: the password padded with zero bytes.
    pub fn auth_data(&self) -> Option<[u8; 8]> {
        self.auth_pass.as_ref().map(|secret| {
            let mut data = [0u8; 8];
            for (slot, byte) in data.iter_mut().zip(secret.expose().bytes()) {
                *slot = byte;
            }
            data
        })
    }
}

/// `[vrrp.garp]`: gratuitous ARP announcements of the VIPs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Garp {
    /// ARPs per burst.
    pub repeat: u32,
    /// Pause between the ARPs of a burst.
    pub interval: Duration,
    /// Second burst this long after becoming master; zero = none.
    pub master_delay: Duration,
    /// Periodic burst while master; zero = off.
    pub refresh: Duration,
    /// Burst again when, as master, an advert of lower priority is seen (a split has healed).
    pub on_lower_priority: bool,
}

/// One `[[vip]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vip {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub device: String,
    pub label: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// WarehousePG (Greenplum 7) coordinator pair: gpactivatestandby / gpinitstandby.
    WarehousePg,
    /// Plain PostgreSQL streaming pair: pg_ctl promote / pg_basebackup.
    Postgres,
}

impl Flavor {
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::WarehousePg => "warehousepg",
            Flavor::Postgres => "postgres",
        }
    }
}

/// How the local database is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbEndpoint {
    /// TCP to a host name or address.
    Host(String),
    /// Unix socket in this directory (`.s.PGSQL.<port>`).
    SocketDir(PathBuf),
}

/// `[database]`: the local coordinator / PostgreSQL server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub flavor: Flavor,
    pub endpoint: DbEndpoint,
    /// Port of the database on both nodes (the peer's database is probed at its node address and this port).
    pub port: u16,
    pub user: String,
    pub dbname: String,
    /// File holding the password; its content is read when needed and never printed.
    pub password_file: Option<PathBuf>,
    pub data_directory: PathBuf,
    /// OS user that runs the commands.
    pub os_user: String,
    /// WarehousePG only: the environment script of the installation.
    pub greenplum_path: Option<PathBuf>,
    /// Directory of pg_ctl and friends; for WarehousePG defaults to `bin` next to `greenplum_path.sh`.
    pub bin_dir: Option<PathBuf>,
    /// Whether the daemon watches and manages the database. `false` makes whpg-ha a plain VRRP
    /// daemon: the VIP follows the mastership alone, as with keepalived without scripts.
    pub monitor: bool,
}

/// `[health]`: probing the local database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failures before the database counts as failed.
    pub fall: u32,
    /// Consecutive successes before it counts as healthy again.
    pub rise: u32,
    /// Keep one monitoring session open per watched database and query it each interval,
    /// instead of new connections for every probe.
    pub held_session: bool,
    /// With a held session: how often a new connection (the startup-packet probe) is still
    /// opened to each database, to see that it takes new connections and to notice a shutdown.
    pub connect_interval: Duration,
}

/// A failure that may start an automatic failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Trigger {
    /// The master host is gone: no adverts and its database does not answer.
    NodeLoss,
    /// The master is unreachable over the network (adverts stop) while we still see our witnesses.
    NetworkLoss,
    /// The master's database failed its health check (the master resigns).
    DatabaseFailure,
}

impl Trigger {
    pub const ALL: [Trigger; 3] = [
        Trigger::NodeLoss,
        Trigger::NetworkLoss,
        Trigger::DatabaseFailure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::NodeLoss => "node-loss",
            Trigger::NetworkLoss => "network-loss",
            Trigger::DatabaseFailure => "database-failure",
        }
    }
}

/// `[failover]`: when to promote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover {
    /// Failures that start a failover, in file order; empty = never automatic.
    pub triggers: Vec<Trigger>,
    /// How long a silent master must stay unreachable before promotion (zero = at once).
    pub confirmation: Duration,
    /// A WAL receiver message newer than this proves the old primary alive: no promotion.
    pub wal_freshness: Duration,
    /// An isolated node (no peer, no witness quorum) drops the VIP and stops its database.
    pub fence_when_isolated: bool,
    /// Bytes the standby may be behind the primary at the last observation and be promoted.
    pub maximum_lag: u64,
    /// WAL the primary had this long ago must be on the standby, or it is not promotable.
    pub maximum_lag_time: Duration,
}

/// `[replication] mode`: who waits for the standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicationMode {
    /// The daemon never touches `synchronous_standby_names`.
    Async,
    /// The primary's daemon names the streaming standby in `synchronous_standby_names`;
    /// commits alone on evidence the standby cannot be promoted, or after `sync_timeout`.
    Sync,
    /// Like `sync`, but never alone while the standby's host does not answer.
    SyncStrict,
}

impl ReplicationMode {
    pub const ALL: [ReplicationMode; 3] = [
        ReplicationMode::Async,
        ReplicationMode::Sync,
        ReplicationMode::SyncStrict,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReplicationMode::Async => "async",
            ReplicationMode::Sync => "sync",
            ReplicationMode::SyncStrict => "sync-strict",
        }
    }
}

/// `[replication]`: synchronous replication managed by the primary's daemon (postgres flavor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    pub mode: ReplicationMode,
    /// `sync`: how long the standby's host may not answer before the primary commits alone.
    pub sync_timeout: Duration,
}

impl Failover {
    pub fn triggers_on(&self, trigger: Trigger) -> bool {
        self.triggers.contains(&trigger)
    }
}

/// An argv template (see [`super::template`]) with a time limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    pub argv: Vec<String>,
    pub timeout: Duration,
}

/// `[commands.*]`: what the daemon runs, as `database.os_user`, never through a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commands {
    /// Turn the local standby into the primary.
    pub promote: CommandSpec,
    /// Stop the local database at once (isolation, older timeline).
    pub fence: CommandSpec,
    /// Stop the local database cleanly (planned switchover).
    pub stop: CommandSpec,
    /// Rebuild a standby: on WarehousePG run on the active coordinator, on PostgreSQL on the new standby.
    pub rejoin: CommandSpec,
    /// Start the local database (after a rejoin rebuilt it as a standby).
    pub start: CommandSpec,
}

/// `[witness]`: hosts that tell "the peer is gone" from "I am cut off".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witness {
    pub hosts: Vec<IpAddr>,
    /// How many hosts must answer for this node to count as connected; 0 only when there are none.
    pub quorum: usize,
    pub interval: Duration,
    pub timeout: Duration,
}

impl Witness {
    pub fn enabled(&self) -> bool {
        !self.hosts.is_empty()
    }
}

/// `[api]`: the HTTP API used by the CLI and the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Api {
    pub listen: Vec<SocketAddr>,
    /// Bearer token for mutating endpoints; without it they are refused.
    pub token_file: Option<PathBuf>,
    /// TLS on every listen address (and for the CLI's requests); `None`: plain HTTP.
    pub tls: Option<ApiTls>,
    /// Connections served at once on each listen address; one more is accepted and closed at once.
    pub max_connections: u32,
    /// How long a client may take to send a request's header (and the TLS handshake, and a
    /// mutating request's body).
    pub header_timeout: Duration,
    /// How long a connection may move no byte while no request is being answered.
    pub idle_timeout: Duration,
}

/// `[api] tls_*`: the daemon's certificate, the CA the CLI verifies daemons with, and optionally
/// the CA client certificates must be signed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTls {
    /// PEM certificate chain of this node (leaf first); with the node's address as a SAN.
    pub cert_file: PathBuf,
    /// PEM private key of `cert_file`.
    pub key_file: PathBuf,
    /// PEM CA certificate(s) the CLI verifies the daemons' certificates against.
    pub ca_file: PathBuf,
    /// When set, clients must present a certificate signed by one of these CAs; the CLI presents
    /// `cert_file` / `key_file`.
    pub client_ca_file: Option<PathBuf>,
}

impl Api {
    /// The port the peer's API is reached on (the first listen address; the file is the same on both nodes).
    pub fn port(&self) -> Option<u16> {
        self.listen.first().map(SocketAddr::port)
    }
}

/// `[journal]`: the append-only record of transitions, decisions and actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    pub path: PathBuf,
}

/// `[arbiter]`: an etcd v3 cluster whose leader key (on a lease) decides which node may hold the
/// VIP and be primary (design invariant 10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arbiter {
    /// Client URLs of the etcd members (`http://host:2379` or `https://...`), in file order.
    pub endpoints: Vec<String>,
    /// Keys live under this prefix; the leader key is `<prefix>/leader`.
    pub key_prefix: String,
    /// TTL asked for the leader key's lease (etcd may raise it to its minimum).
    pub lease_ttl: Duration,
    /// Each etcd request (connect, grant, put, keep-alive) gives up after this: the answer is
    /// then unknown, never "the peer holds the key".
    pub timeout: Duration,
    /// How often the holder refreshes its lease (a third of the TTL unless set).
    pub keepalive_interval: Duration,
    /// What a master whose lease ran out does besides dropping the VIP.
    pub on_lease_loss: LeaseLoss,
    /// Keep serving through an etcd outage while the peer confirms it is not taking over.
    pub failsafe: bool,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub tls: Option<ArbiterTls>,
}

impl Arbiter {
    /// The key whose holder may hold the VIP.
    pub fn leader_key(&self) -> String {
        format!("{}/leader", self.key_prefix.trim_end_matches('/'))
    }

    /// `<prefix>/sync`: in a sync mode, the standby the primary's daemon names as synchronous.
    pub fn sync_key(&self) -> String {
        format!("{}/sync", self.key_prefix.trim_end_matches('/'))
    }
}

/// `[arbiter] tls_*`: the CA that signed the etcd members' certificates, and an optional client
/// certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArbiterTls {
    pub ca_file: PathBuf,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// `arbiter.on_lease_loss`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseLoss {
    /// Drop the VIP and stop the database (the fence command).
    Fence,
    /// Drop the VIP only; the database keeps running for whoever reaches it directly.
    RemoveVip,
}

impl LeaseLoss {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseLoss::Fence => "fence",
            LeaseLoss::RemoveVip => "remove-vip",
        }
    }
}
