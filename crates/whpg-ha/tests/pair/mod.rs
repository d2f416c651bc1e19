//! A whole coordinator pair without root: two real [`Node`]s (VRRP instance + HA policy, the
//! daemon's own decision code) on a simulated LAN and clock, each with a fake database, a fake
//! witness and fake jobs. Probes, witness rounds, promotions and fences answer the way the
//! daemon's observers and jobs do, with the same timeouts, so every case is exact and repeatable.
//!
//! The checker looks at the whole pair after every step and records each breach of a safety
//! invariant with the time and the trace that led to it.

#![allow(dead_code)] // each test file uses a different part of the harness

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use whpg_ha::config::testing::TestConfig;
use whpg_ha::config::Config;
use whpg_ha::config::ReplicationMode;
use whpg_ha::node::{Effect, Node, NodeInput, NotPromotableRecord, Now, Request};
use whpg_policy::{
    ArbiterAction, ArbiterSample, Input, LocalSample, PeerSample, PrimaryPosition, StandbyRow,
    SyncRecord, SyncRecordWrite, SyncTarget, WalReceiver, WriteVerified,
};
use whpg_vrrp::receive::PacketMeta;
use whpg_vrrp::State;

pub const A: usize = 0;
pub const B: usize = 1;
const LATENCY: Duration = Duration::from_micros(200);
/// pidfd: the exit of a postmaster is seen within a few milliseconds.
const PIDFD_DELAY: Duration = Duration::from_millis(5);
const PROMOTE_TAKES: Duration = Duration::from_millis(40);
const FENCE_TAKES: Duration = Duration::from_millis(50);
/// The jobs' verification bounds (daemon/jobs.rs): after a promote command that "succeeded",
/// the write check keeps trying this long.
const VERIFY_AFTER_SUCCESS: Duration = Duration::from_secs(30);
/// Clients commit on a writable primary all the time: its WAL grows this much per millisecond
/// (10 kB/s: a 3 s cut stays under `failover.maximum_lag`, so only the lag time can notice it).
const WAL_BYTES_PER_MS: u64 = 10;
/// `failover.maximum_lag` of the simulated pair (the WarehousePG default).
const MAXIMUM_LAG: u64 = 64 << 10;
/// What the primary writes in `failover.maximum_lag_time` (1 s): the most a standby may lag by
/// and still count as in step.
/// Plus what is written while a probe's answer travels (the guard times a position from when
/// the snapshot arrives, about 1 ms after the primary took it; WAL advances in whole ms).
const LAG_TIME_BYTES: u64 = (1000 + 2) * WAL_BYTES_PER_MS;
/// Commits waiting for a synchronous standby that does not answer: the WAL of the commits in
/// flight (the clients wait for them, so they write no more).
const IN_FLIGHT: u64 = 200;
/// The job that sets `synchronous_standby_names` (ALTER SYSTEM and a reload).
const SYNC_SET_TAKES: Duration = Duration::from_millis(5);

/// The pair's configuration (the shared test builder's lab pair, with the database monitor on,
/// 100 ms probes and one witness), with `failover.confirmation` as given.
pub fn configs(confirmation: &str) -> [Config; 2] {
    configs_with(confirmation, "async", "10s")
}

/// [`configs`] with `[replication] mode` and `sync_timeout` as given.
pub fn configs_with(confirmation: &str, mode: &str, sync_timeout: &str) -> [Config; 2] {
    let pair = TestConfig::pair()
        .version(3)
        .advert_interval("100ms")
        .unicast()
        .database("bin_dir", "/usr/bin")
        .monitor(true)
        .health("100ms", "300ms", 2, 2)
        .witness(&["10.77.0.1"], 1, "500ms", "200ms")
        .set("failover", "confirmation", confirmation)
        .set("replication", "mode", mode)
        .set("replication", "sync_timeout", sync_timeout);
    ["a", "b"].map(|name| pair.parse(name))
}

/// [`configs`] with an `[arbiter]`: a 2 s lease refreshed every 500 ms, 200 ms timeouts.
pub fn configs_with_arbiter(confirmation: &str) -> [Config; 2] {
    configs_with_arbiter_and(confirmation, "async", "10s")
}

/// [`configs_with_arbiter`] in `[replication] mode` with `sync_timeout`.
pub fn configs_with_arbiter_and(confirmation: &str, mode: &str, sync_timeout: &str) -> [Config; 2] {
    let text = |name: &str| {
        let pair = TestConfig::pair()
            .version(3)
            .advert_interval("100ms")
            .unicast()
            .database("bin_dir", "/usr/bin")
            .monitor(true)
            .health("100ms", "300ms", 2, 2)
            .witness(&["10.77.0.1"], 1, "500ms", "200ms")
            .set("failover", "confirmation", confirmation)
            .set("replication", "mode", mode)
            .set("replication", "sync_timeout", sync_timeout)
            .section(
                "[arbiter]",
                "kind = \"etcd\"\nendpoints = [\"http://10.77.0.11:2379\", \"http://10.77.0.12:2379\", \
                 \"http://10.77.0.1:2379\"]\nlease_ttl = \"2s\"\ntimeout = \"200ms\"\n\
                 keepalive_interval = \"500ms\"",
            );
        pair.parse(name)
    };
    [text("a"), text("b")]
}

/// A fake etcd cluster: one leader key on a lease, as etcd keeps it. A member sits on each host
/// and one with the witness, so a partition between the hosts leaves both with the quorum; a
/// host whose link is down reaches none.
#[derive(Debug, Clone)]
pub struct FakeEtcd {
    /// The key's holder and when its lease runs out.
    pub holder: Option<(usize, Instant)>,
    /// The whole cluster is down (or has no quorum).
    pub down: bool,
    /// Host `i`'s side of the network has lost the quorum: its client gets no answer.
    pub cut: [bool; 2],
    /// `<prefix>/sync`: absent (`None`), "none" (`Some(None)`), or naming host `i`.
    pub record: Option<Option<usize>>,
    /// For the checker's own test: etcd acknowledges sync record writes without storing them,
    /// and every read of it names the reader.
    pub lies: bool,
    /// What each node's client was last asked.
    wanted: [Option<ArbiterAction>; 2],
    /// When each client acts next.
    next: [Instant; 2],
    ttl: Duration,
    timeout: Duration,
    keepalive: Duration,
}

/// How often a client that wants the key and does not hold it looks again (src/arbiter.rs).
const CAMPAIGN_POLL: Duration = Duration::from_millis(200);

fn address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, 11 + i as u8)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Standby,
}

/// How the promote command behaves on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromoteMode {
    Succeeds,
    /// Exits 1, the database stays a standby.
    Fails,
    /// Never returns: the job's timeout ends it.
    Hangs,
    /// Exits 0, the database stays in recovery.
    Lies,
}

#[derive(Debug, Clone)]
pub struct FakeDb {
    pub up: bool,
    pub role: Role,
    pub timeline: u32,
    /// When it last became a running primary (for the checker).
    pub primary_since: Option<Instant>,
    /// The WAL position: written on a primary, received and flushed on a standby.
    pub wal: u64,
    /// On a primary: the WAL of commits acknowledged to clients. Without a synchronous standby
    /// that is all it wrote; with one, only what the standby has too.
    pub acked: u64,
    /// `synchronous_standby_names` names the peer (kept in the data directory, like
    /// `postgresql.auto.conf`): commits wait for it.
    pub sync_standby: bool,
    /// Up, but refusing new logins (e.g. "too many clients"): the monitor sees it fail, the
    /// database itself stays what it is.
    pub refusing: bool,
}

/// The WAL stream from the primary to the standby.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Flows whenever both databases are up and the hosts reach each other.
    Connected,
    /// Broken at the standby (its WAL receiver stopped): the primary lists no walsender.
    Broken,
    /// Cut silently (a dropped connection): both ends still say "streaming", nothing flows.
    SilentlyCut,
}

impl FakeDb {
    fn writable(&self) -> bool {
        self.up && self.role == Role::Primary
    }
}

enum Pending {
    Packet {
        src: usize,
        payload: Vec<u8>,
    },
    Observe(Input),
    /// The promotion job ends; its verdict depends on the database at that moment.
    PromotionEnds {
        mode: PromoteMode,
    },
    FenceEnds,
    /// The job that sets `synchronous_standby_names` ends.
    SyncSetEnds {
        target: SyncTarget,
    },
}

struct Timed {
    at: Instant,
    seq: u64,
    to: usize,
    what: Pending,
}

pub struct Host {
    pub config: Config,
    /// `None` while the daemon is not running.
    pub node: Option<Node>,
    pub db: FakeDb,
    pub link_up: bool,
    pub promote_mode: PromoteMode,
    /// The kernel's view: the VIP is on this host (it outlives a killed daemon).
    pub vip: bool,
    /// Probes fail for a local reason (descriptor exhaustion) until then.
    pub local_failure_until: Option<Instant>,
    next_local_probe: Instant,
    next_peer_probe: Instant,
    next_witness: Instant,
    pub promotions: u32,
    pub fences: u32,
    /// Peer probes the node asked for after an accepted advert (`Effect::ObservePeer`).
    pub peer_nudges: u32,
    /// The daemon's state file: maintenance mode as last remembered.
    pub remembered_maintenance: bool,
    /// The daemon's state file: the not-promotable mark as last remembered.
    pub remembered_not_promotable: Option<NotPromotableRecord>,
    /// The primary's WAL position when this host's peer probe last saw it, and this host's own
    /// then (for the checker).
    pub peer_primary_wal_seen: Option<(u64, u64)>,
    /// When the daemon last started (for the checker: a fresh daemon cannot yet tell how long
    /// WAL has been missing).
    pub daemon_since: Instant,
}

#[derive(Debug, Clone)]
pub struct Violation {
    pub at_ms: u64,
    pub rule: &'static str,
    pub detail: String,
}

pub struct Pair {
    pub t0: Instant,
    pub now: Instant,
    pub hosts: [Host; 2],
    /// Traffic between the two hosts is cut (both still reach the witness).
    pub partitioned: bool,
    queue: Vec<Timed>,
    seq: u64,
    /// Since when the two hosts have reached each other without a break.
    connected_since: Option<Instant>,
    /// Since when both hold the VIP.
    both_vip_since: Option<Instant>,
    /// Since when each VIP holder's database has not been writable.
    unwritable_holder_since: [Option<Instant>; 2],
    /// Since when each holder serves beside a newer timeline.
    stale_holder_since: [Option<Instant>; 2],
    pub violations: Vec<Violation>,
    pub trace: VecDeque<String>,
    /// Whether the protocol can prevent two VIP holders: false while partitioned.
    pub check_single_holder: bool,
    pub stream: Stream,
    /// When the WAL positions were last advanced.
    wal_at: Instant,
    /// The operator accepted data loss for the next promotion on this host.
    pub loss_accepted: [bool; 2],
    /// Acknowledged commits (bytes of WAL) lost by each promotion, in order.
    pub lost_bytes: Vec<u64>,
    /// Where each host's acknowledged WAL was when it last set `synchronous_standby_names` to
    /// empty while the hosts could not reach each other (`sync`: after `sync_timeout`).
    relaxed_unreachable_at: [Option<u64>; 2],
    /// A primary that required its standby when the hosts lost each other: its acknowledged
    /// WAL then.
    acked_at_cut: [Option<u64>; 2],
    /// The arbiter, when configured: then two VIP holders are a violation at any time, the
    /// symmetric partition included.
    pub etcd: Option<FakeEtcd>,
}

/// How long a double VIP may last once the hosts reach each other (an election takes a few
/// adverts; a healed partition resolves within one Master_Down_Interval).
const DOUBLE_VIP_GRACE: Duration = Duration::from_millis(1000);
/// How long a holder's database may be unwritable before the node drops the VIP (the pidfd
/// delay plus one probe round and the removal).
const UNWRITABLE_GRACE: Duration = Duration::from_millis(400);
/// How long a probe needs to see the peer: interval + timeout.
const PEER_SEEN_WITHIN: Duration = Duration::from_millis(410);

impl Pair {
    /// A settled-to-be pair: `a` primary on timeline 1, `b` its streaming standby, both daemons
    /// started at the same instant, with `failover.confirmation` as given.
    pub fn new(confirmation: &str) -> Pair {
        Pair::from_configs(configs(confirmation))
    }

    /// A pair in `[replication] mode` (`async`, `sync`, `sync-strict`) with `sync_timeout`.
    pub fn with_replication(confirmation: &str, mode: &str, sync_timeout: &str) -> Pair {
        Pair::from_configs(configs_with(confirmation, mode, sync_timeout))
    }

    /// [`Pair::new`] with an etcd arbiter ([`configs_with_arbiter`]).
    pub fn with_arbiter(confirmation: &str) -> Pair {
        Pair::from_configs(configs_with_arbiter(confirmation))
    }

    /// An etcd arbiter and `[replication] mode` with `sync_timeout`.
    pub fn with_arbiter_and_replication(
        confirmation: &str,
        mode: &str,
        sync_timeout: &str,
    ) -> Pair {
        Pair::from_configs(configs_with_arbiter_and(confirmation, mode, sync_timeout))
    }

    fn from_configs([ca, cb]: [Config; 2]) -> Pair {
        let t0 = Instant::now();
        let etcd = ca.arbiter.as_ref().map(|a| FakeEtcd {
            holder: None,
            down: false,
            cut: [false; 2],
            record: None,
            lies: false,
            wanted: [None; 2],
            next: [t0; 2],
            ttl: a.lease_ttl,
            timeout: a.timeout,
            keepalive: a.keepalive_interval,
        });
        let host = |config: Config, role: Role| Host {
            config,
            node: None,
            db: FakeDb {
                up: true,
                role,
                timeline: 1,
                primary_since: (role == Role::Primary).then_some(t0),
                wal: 0x300_0000,
                acked: 0x300_0000,
                sync_standby: false,
                refusing: false,
            },
            link_up: true,
            promote_mode: PromoteMode::Succeeds,
            vip: false,
            local_failure_until: None,
            next_local_probe: t0,
            next_peer_probe: t0,
            next_witness: t0,
            promotions: 0,
            fences: 0,
            peer_nudges: 0,
            remembered_maintenance: false,
            remembered_not_promotable: None,
            peer_primary_wal_seen: None,
            daemon_since: t0,
        };
        let mut pair = Pair {
            t0,
            now: t0,
            hosts: [host(ca, Role::Primary), host(cb, Role::Standby)],
            partitioned: false,
            queue: Vec::new(),
            seq: 0,
            connected_since: Some(t0),
            both_vip_since: None,
            unwritable_holder_since: [None; 2],
            stale_holder_since: [None; 2],
            violations: Vec::new(),
            trace: VecDeque::new(),
            check_single_holder: true,
            stream: Stream::Connected,
            wal_at: t0,
            loss_accepted: [false; 2],
            lost_bytes: Vec::new(),
            relaxed_unreachable_at: [None; 2],
            acked_at_cut: [None; 2],
            etcd,
        };
        pair.start_daemon(A);
        pair.start_daemon(B);
        pair
    }

    pub fn ms(&self) -> u64 {
        self.now.saturating_duration_since(self.t0).as_millis() as u64
    }

    fn now_of(&self) -> Now {
        Now {
            at: self.now,
            unix_ms: 1_700_000_000_000 + self.ms(),
        }
    }

    fn note(&mut self, text: String) {
        if self.trace.len() == 400 {
            self.trace.pop_front();
        }
        let line = format!("{:>7} ms  {text}", self.ms());
        self.trace.push_back(line);
    }

    pub fn reachable(&self) -> bool {
        !self.partitioned && self.hosts[A].link_up && self.hosts[B].link_up
    }

    fn push(&mut self, after: Duration, to: usize, what: Pending) {
        self.seq += 1;
        self.queue.push(Timed {
            at: self.now + after,
            seq: self.seq,
            to,
            what,
        });
    }

    // ---- faults and operator actions ----------------------------------------------------

    pub fn crash_db(&mut self, i: usize) {
        if !self.hosts[i].db.up {
            return;
        }
        self.note(format!("host {i}: database crashes"));
        self.hosts[i].db.up = false;
        self.hosts[i].db.primary_since = None;
        if self.hosts[i].node.is_some() {
            self.push(PIDFD_DELAY, i, Pending::Observe(Input::PostmasterExited));
        }
    }

    /// The database starts again as what its data directory says (an old primary stays one).
    pub fn restart_db(&mut self, i: usize) {
        if self.hosts[i].db.up {
            return;
        }
        self.note(format!(
            "host {i}: database starts ({:?})",
            self.hosts[i].db.role
        ));
        let db = &mut self.hosts[i].db;
        db.up = true;
        if db.role == Role::Primary {
            db.primary_since = Some(self.now);
        }
    }

    pub fn set_link(&mut self, i: usize, up: bool) {
        self.note(format!("host {i}: link {}", if up { "up" } else { "down" }));
        self.hosts[i].link_up = up;
        let fault = (!up).then(|| "interface eth0: link down".to_string());
        self.input(i, |node, now| node.handle(NodeInput::Interface(fault), now));
    }

    pub fn set_partition(&mut self, on: bool) {
        self.note(format!("partition {}", if on { "on" } else { "healed" }));
        self.partitioned = on;
    }

    /// SIGKILL: nothing is said, the VIP stays in the kernel.
    pub fn kill_daemon(&mut self, i: usize) {
        if let Some(etcd) = &mut self.etcd {
            // Its lease runs on until its TTL; nobody refreshes it.
            etcd.wanted[i] = None;
        }
        if self.hosts[i].node.take().is_some() {
            self.note(format!("host {i}: daemon killed"));
            self.queue.retain(|t| t.to != i);
        }
    }

    /// Start the daemon: stale VIPs are removed first, as `daemon::run` does.
    pub fn start_daemon(&mut self, i: usize) {
        if self.hosts[i].node.is_some() {
            return;
        }
        self.note(format!("host {i}: daemon starts"));
        self.hosts[i].vip = false;
        let now = self.now_of();
        let host = &mut self.hosts[i];
        host.node = Some(Node::new(&host.config, now));
        host.daemon_since = self.now;
        host.next_local_probe = self.now;
        host.next_peer_probe = self.now;
        host.next_witness = self.now;
        let link_up = host.link_up;
        if let Some(record) = host.remembered_not_promotable.clone() {
            self.input(i, |node, now| {
                node.handle(NodeInput::RestoredNotPromotable(record), now)
            });
        }
        let host = &self.hosts[i];
        if host.remembered_maintenance {
            self.input(i, |node, now| {
                node.handle(
                    NodeInput::RestoredMaintenance {
                        since_unix_ms: None,
                    },
                    now,
                )
            });
        }
        self.input(i, |node, now| node.handle(NodeInput::Start, now));
        if !link_up {
            let fault = Some("interface eth0: link down".to_string());
            self.input(i, |node, now| node.handle(NodeInput::Interface(fault), now));
        }
    }

    pub fn request(&mut self, i: usize, request: Request) -> Option<Result<(), String>> {
        let now = self.now_of();
        let node = self.hosts[i].node.as_mut()?;
        let (answer, effects) = node.request(request, now);
        self.carry_out(i, effects);
        Some(answer.map(|_| ()).map_err(|e| e.to_string()))
    }

    pub fn set_stream(&mut self, stream: Stream) {
        self.note(format!("WAL stream: {stream:?}"));
        self.stream = stream;
    }

    /// `whpg-ha promote --accept-data-loss` on host `i`.
    pub fn promote_accepting_loss(&mut self, i: usize) -> Option<Result<(), String>> {
        self.note(format!("host {i}: operator promotes, accepting data loss"));
        self.loss_accepted[i] = true;
        self.request(i, Request::PromoteAcceptingDataLoss)
    }

    /// The stream flows from `from` (a writable primary) to `to` (an up standby) now.
    fn streaming(&self, from: usize, to: usize) -> bool {
        self.stream == Stream::Connected
            && self.reachable()
            && self.hosts[from].db.writable()
            && self.hosts[to].db.up
            && self.hosts[to].db.role == Role::Standby
    }

    /// The walsender row that primary `from` lists for standby `to`.
    fn walsender_row(&self, from: usize, to: usize) -> Option<StandbyRow> {
        let standby = &self.hosts[to].db;
        let connected = self.reachable() && standby.up && standby.role == Role::Standby;
        match self.stream {
            Stream::Broken => None,
            _ if !connected => None,
            Stream::Connected | Stream::SilentlyCut => Some(StandbyRow {
                streaming: true,
                synchronous: self.hosts[from].db.sync_standby,
                flush: Some(standby.wal),
            }),
        }
        .filter(|_| self.hosts[from].db.writable())
    }

    /// Clients commit on every writable primary; the stream carries it to the standby. A
    /// primary whose `synchronous_standby_names` names its standby acknowledges only WAL the
    /// standby has; while the standby does not take it, its clients wait (one commit each in
    /// flight) instead of writing more.
    fn advance_wal(&mut self) {
        let ms = self.now.saturating_duration_since(self.wal_at).as_millis() as u64;
        self.wal_at = self.now;
        for i in [A, B] {
            if !self.hosts[i].db.writable() {
                continue;
            }
            let waits = self.hosts[i].db.sync_standby && !self.streaming(i, 1 - i);
            let db = &mut self.hosts[i].db;
            if waits {
                db.wal = db.wal.max(db.acked + IN_FLIGHT);
            } else {
                db.wal += ms * WAL_BYTES_PER_MS;
            }
        }
        for (from, to) in [(A, B), (B, A)] {
            if self.streaming(from, to) {
                let primary = self.hosts[from].db.wal;
                let standby = &mut self.hosts[to].db;
                standby.wal = standby.wal.max(primary);
            }
        }
        for i in [A, B] {
            if !self.hosts[i].db.writable() {
                continue;
            }
            let peer = &self.hosts[1 - i].db;
            let standby_has = (peer.role == Role::Standby).then_some(peer.wal);
            let db = &mut self.hosts[i].db;
            db.acked = if db.sync_standby {
                db.acked.max(standby_has.map_or(0, |has| has.min(db.wal)))
            } else {
                db.wal
            };
        }
    }

    /// What host `i` acknowledged alone since it stopped waiting for an unreachable standby
    /// (`sync` after `sync_timeout`): in a partition, commits the promoted standby never gets.
    pub fn acknowledged_alone(&self, i: usize) -> Option<u64> {
        self.relaxed_unreachable_at[i].map(|at| self.hosts[i].db.acked.saturating_sub(at))
    }

    /// The host's `[replication] mode`.
    pub fn mode(&self, i: usize) -> ReplicationMode {
        self.hosts[i].config.replication.mode
    }

    pub fn set_promote_mode(&mut self, i: usize, mode: PromoteMode) {
        self.hosts[i].promote_mode = mode;
    }

    pub fn fail_probes_locally(&mut self, i: usize, for_: Duration) {
        self.note(format!(
            "host {i}: probes fail locally (EMFILE) for {for_:?}"
        ));
        self.hosts[i].local_failure_until = Some(self.now + for_);
    }

    // ---- the event loop -------------------------------------------------------------------

    fn input(&mut self, i: usize, f: impl FnOnce(&mut Node, Now) -> Vec<Effect>) {
        let now = self.now_of();
        let Some(node) = self.hosts[i].node.as_mut() else {
            return;
        };
        let effects = f(node, now);
        self.carry_out(i, effects);
    }

    fn carry_out(&mut self, i: usize, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Send { payload, .. } => {
                    if self.reachable() {
                        self.push(LATENCY, 1 - i, Pending::Packet { src: i, payload });
                    }
                }
                Effect::InstallVips => {
                    if !self.hosts[i].vip {
                        self.note(format!("host {i}: VIP installed"));
                    }
                    self.hosts[i].vip = true;
                }
                Effect::RemoveVips => {
                    if self.hosts[i].vip {
                        self.note(format!("host {i}: VIP removed"));
                    }
                    self.hosts[i].vip = false;
                }
                Effect::Promote { attempt } => {
                    self.check_promotion(i);
                    self.hosts[i].promotions += 1;
                    let mode = self.hosts[i].promote_mode;
                    self.note(format!("host {i}: promote attempt {attempt} ({mode:?})"));
                    let takes = match mode {
                        PromoteMode::Succeeds => PROMOTE_TAKES,
                        PromoteMode::Fails => PROMOTE_TAKES + Duration::from_secs(2),
                        PromoteMode::Hangs => {
                            self.hosts[i].config.commands.promote.timeout + Duration::from_secs(2)
                        }
                        PromoteMode::Lies => PROMOTE_TAKES + VERIFY_AFTER_SUCCESS,
                    };
                    if mode == PromoteMode::Succeeds {
                        // The database leaves recovery while the command runs.
                        self.push(PROMOTE_TAKES / 2, i, Pending::PromotionEnds { mode });
                    } else {
                        self.push(takes, i, Pending::PromotionEnds { mode });
                    }
                }
                Effect::Fence(reason) => {
                    self.note(format!("host {i}: fence ({reason:?})"));
                    self.hosts[i].fences += 1;
                    self.push(FENCE_TAKES, i, Pending::FenceEnds);
                }
                Effect::CheckWitnesses => self.witness_round(i),
                Effect::ObserveLocal => self.local_probe(i),
                Effect::ObservePeer => {
                    self.hosts[i].peer_nudges += 1;
                    self.peer_probe(i);
                }
                Effect::Arbiter(action) => {
                    self.note(format!("host {i}: arbiter {action:?}"));
                    if let Some(etcd) = &mut self.etcd {
                        etcd.wanted[i] = Some(action);
                        etcd.next[i] = self.now;
                    }
                }
                Effect::RememberMaintenance { on } => self.hosts[i].remembered_maintenance = on,
                Effect::RememberNotPromotable(record) => {
                    self.hosts[i].remembered_not_promotable = record
                }
                Effect::WriteSyncRecord(record) => self.write_sync_record(i, record),
                Effect::SetSynchronousStandby(target) => {
                    self.note(format!(
                        "host {i}: set synchronous_standby_names ({target:?})"
                    ));
                    self.push(SYNC_SET_TAKES, i, Pending::SyncSetEnds { target });
                }
                Effect::Garp { .. }
                | Effect::Journal(_)
                | Effect::Log { .. }
                | Effect::Measure(_) => {}
            }
        }
    }

    /// Host `i`'s etcd client writes the sync record as `src/arbiter.rs` does: only while the
    /// leader key is on its lease (etcd's transaction compares it).
    fn write_sync_record(&mut self, i: usize, record: SyncRecordWrite) {
        let now = self.now;
        let reaches = self.hosts[i].link_up;
        let Some(etcd) = &mut self.etcd else { return };
        let result = if etcd.down || etcd.cut[i] || !reaches {
            Err("etcd sync record write gave no answer".to_string())
        } else if etcd.lies {
            Ok(())
        } else if etcd.holder.is_some_and(|(h, until)| h == i && now < until) {
            etcd.record = Some(match record {
                SyncRecordWrite::Standby => Some(1 - i),
                SyncRecordWrite::None => None,
            });
            Ok(())
        } else {
            Err("the leader key is no longer on this node's lease".to_string())
        };
        let after = if result.is_ok() {
            LATENCY * 2
        } else {
            etcd.timeout
        };
        self.note(format!("host {i}: etcd sync record {record:?}: {result:?}"));
        self.push(
            after,
            i,
            Pending::Observe(Input::SyncRecordWritten { record, result }),
        );
    }

    /// The sync record as host `i`'s client reads it.
    fn sync_record_for(&self, i: usize) -> SyncRecord {
        if self.etcd.as_ref().is_some_and(|e| e.lies) {
            return SyncRecord::NamesThisNode;
        }
        match self.etcd.as_ref().and_then(|e| e.record) {
            None => SyncRecord::Absent,
            Some(None) => SyncRecord::NamesNone {
                since_unix_ms: None,
            },
            Some(Some(h)) if h == i => SyncRecord::NamesThisNode,
            Some(Some(h)) => SyncRecord::NamesOther {
                node: h.to_string(),
            },
        }
    }

    /// Host `i`'s etcd client does what it was asked, and reports as `src/arbiter.rs` does.
    fn etcd_client(&mut self, i: usize) {
        let now = self.now;
        let reaches = self.hosts[i].link_up && !self.etcd.as_ref().is_some_and(|e| e.cut[i]);
        let sync_mode = self.mode(i) != ReplicationMode::Async;
        let Some(etcd) = &mut self.etcd else { return };
        if etcd.holder.is_some_and(|(_, until)| now >= until) {
            etcd.holder = None;
        }
        let action = etcd.wanted[i];
        let (sample, after, next) = if etcd.down || !reaches {
            let sample = ArbiterSample::Unknown {
                reason: "etcd gave no answer".into(),
            };
            let next = if action == Some(ArbiterAction::Campaign) {
                CAMPAIGN_POLL
            } else {
                etcd.keepalive
            };
            (sample, etcd.timeout, next)
        } else {
            match action {
                Some(ArbiterAction::Campaign) => match etcd.holder {
                    Some((h, _)) if h != i => (
                        ArbiterSample::HeldByOther {
                            holder: h.to_string(),
                        },
                        LATENCY * 2,
                        CAMPAIGN_POLL,
                    ),
                    _ => {
                        etcd.holder = Some((i, now + etcd.ttl));
                        let valid_until = now + etcd.ttl - etcd.timeout;
                        (
                            ArbiterSample::Held { valid_until },
                            LATENCY * 2,
                            etcd.keepalive,
                        )
                    }
                },
                Some(ArbiterAction::Release) | None => {
                    if action == Some(ArbiterAction::Release)
                        && etcd.holder.is_some_and(|(h, _)| h == i)
                    {
                        etcd.holder = None;
                        etcd.wanted[i] = None;
                    }
                    let sample = match etcd.holder {
                        Some((h, _)) => ArbiterSample::HeldByOther {
                            holder: h.to_string(),
                        },
                        None => ArbiterSample::Free,
                    };
                    (sample, LATENCY * 2, etcd.keepalive)
                }
            }
        };
        etcd.next[i] = now + next;
        let read = match sample {
            ArbiterSample::Held { .. } => Some(true),
            ArbiterSample::HeldByOther { .. } | ArbiterSample::Free => Some(false),
            ArbiterSample::Unknown { .. } => None,
        };
        self.push(after, i, Pending::Observe(Input::Arbiter(sample)));
        // In a sync mode the client reads the record after each answer (under the key once the
        // key is confirmed ours).
        if let Some(under_key) = read.filter(|_| sync_mode) {
            let record = self.sync_record_for(i);
            self.push(
                after + LATENCY * 2,
                i,
                Pending::Observe(Input::SyncRecord { record, under_key }),
            );
        }
    }

    /// Host `i`'s side loses the etcd quorum (`true`) or gets it back; the other side keeps it.
    pub fn set_etcd_cut(&mut self, i: usize, cut: bool) {
        self.note(format!(
            "host {i}: etcd {}",
            if cut { "quorum lost" } else { "reachable" }
        ));
        if let Some(etcd) = &mut self.etcd {
            etcd.cut[i] = cut;
        }
    }

    /// The whole etcd cluster stops answering (`true`) or comes back.
    pub fn set_etcd_down(&mut self, down: bool) {
        self.note(format!("etcd {}", if down { "down" } else { "up" }));
        if let Some(etcd) = &mut self.etcd {
            etcd.down = down;
        }
    }

    fn witness_round(&mut self, i: usize) {
        let sent = self.now;
        let quorum = self.hosts[i].link_up;
        let timeout = self.hosts[i].config.witness.timeout;
        if self.local_failure(i) {
            return;
        }
        let after = if quorum { LATENCY * 2 } else { timeout };
        self.push(
            after,
            i,
            Pending::Observe(Input::Witness {
                quorum,
                round_sent_at: sent,
            }),
        );
    }

    fn local_failure(&self, i: usize) -> bool {
        self.hosts[i]
            .local_failure_until
            .is_some_and(|until| self.now < until)
    }

    fn local_probe(&mut self, i: usize) {
        let peer = &self.hosts[1 - i];
        let peer_primary = peer.db.writable() && self.reachable();
        let host = &self.hosts[i];
        let sample = if self.local_failure(i) {
            LocalSample::Unknown
        } else if !host.db.up {
            LocalSample::Down
        } else if host.db.refusing {
            LocalSample::NotAccepting
        } else if host.db.role == Role::Primary {
            LocalSample::Primary {
                timeline: Some(host.db.timeline),
                position: Some(PrimaryPosition {
                    current: host.db.wal,
                    standby: self.walsender_row(i, 1 - i),
                }),
            }
        } else {
            LocalSample::Standby {
                timeline: Some(host.db.timeline),
                wal_receiver: Some(WalReceiver {
                    streaming: peer_primary,
                    last_message_age: Some(Duration::from_millis(if peer_primary {
                        20
                    } else {
                        30_000
                    })),
                }),
                received: Some(host.db.wal),
            }
        };
        self.push(
            Duration::from_millis(1),
            i,
            Pending::Observe(Input::Local(sample)),
        );
    }

    fn peer_probe(&mut self, i: usize) {
        let timeout = self.hosts[i].config.health.timeout;
        if self.local_failure(i) {
            self.push(
                Duration::from_millis(1),
                i,
                Pending::Observe(Input::Peer(PeerSample::Unknown)),
            );
            return;
        }
        let peer = self.hosts[1 - i].db.clone();
        let (sample, after) = if !self.reachable() {
            (PeerSample::Unreachable, timeout)
        } else if !peer.up {
            (PeerSample::DatabaseDown, LATENCY * 2)
        } else if peer.refusing {
            (PeerSample::AcceptingUnknownRole, LATENCY * 2)
        } else if peer.role == Role::Primary {
            self.hosts[i].peer_primary_wal_seen = Some((peer.wal, self.hosts[i].db.wal));
            (
                PeerSample::Primary {
                    timeline: Some(peer.timeline),
                    position: Some(PrimaryPosition {
                        current: peer.wal,
                        standby: self.walsender_row(1 - i, i),
                    }),
                },
                LATENCY * 4,
            )
        } else {
            (PeerSample::Standby, LATENCY * 4)
        };
        self.push(after, i, Pending::Observe(Input::Peer(sample)));
    }

    fn deliver(&mut self, to: usize, what: Pending) {
        match what {
            Pending::Packet { src, payload } => {
                if !self.reachable() {
                    return;
                }
                let meta = PacketMeta {
                    src: IpAddr::V4(address(src)),
                    dst: IpAddr::V4(address(to)),
                    ttl: 255,
                };
                self.input(to, |node, now| {
                    node.handle(
                        NodeInput::Packet {
                            meta,
                            payload: &payload,
                        },
                        now,
                    )
                });
            }
            Pending::Observe(input) => {
                self.input(to, |node, now| node.handle(NodeInput::Observe(input), now))
            }
            Pending::PromotionEnds { mode } => {
                let db = &mut self.hosts[to].db;
                let result = if !db.up {
                    Err("the database is down".to_string())
                } else if mode == PromoteMode::Succeeds {
                    if db.role == Role::Standby {
                        db.role = Role::Primary;
                        db.timeline += 1;
                        db.primary_since = Some(self.now);
                        // Nothing is acknowledged beyond what it has.
                        db.acked = db.wal;
                    }
                    Ok(WriteVerified::assertion(Some(db.timeline)))
                } else {
                    Err(format!(
                        "promote {mode:?}: the database did not accept a write"
                    ))
                };
                self.note(format!("host {to}: promotion ends: {result:?}"));
                self.input(to, |node, now| {
                    node.handle(NodeInput::Observe(Input::PromotionFinished(result)), now)
                });
            }
            Pending::FenceEnds => {
                let db = &mut self.hosts[to].db;
                db.up = false;
                db.primary_since = None;
                self.note(format!("host {to}: database fenced (stopped)"));
            }
            Pending::SyncSetEnds { target } => {
                let reachable = self.reachable();
                let record = self.etcd.as_ref().map(|e| e.record);
                let sync_arbiter = record.is_some() && self.mode(to) != ReplicationMode::Async;
                if sync_arbiter && target == SyncTarget::Alone && self.hosts[to].db.writable() {
                    if let Some(record) = record.filter(|r| *r != Some(None)) {
                        let detail =
                            format!("host {to} commits alone; etcd's record is {record:?}");
                        self.violation(
                            "with an arbiter, a primary commits alone only after etcd's record says none",
                            detail,
                        );
                    }
                }
                let db = &mut self.hosts[to].db;
                let result = if db.writable() {
                    db.sync_standby = target == SyncTarget::Standby;
                    if target == SyncTarget::Alone && !reachable {
                        self.relaxed_unreachable_at[to] = Some(db.acked);
                    }
                    Ok(if target == SyncTarget::Standby {
                        "\"standby\"".to_string()
                    } else {
                        String::new()
                    })
                } else {
                    Err("the database is not a running primary".to_string())
                };
                self.note(format!(
                    "host {to}: synchronous_standby_names set: {result:?}"
                ));
                self.input(to, |node, now| {
                    node.handle(
                        NodeInput::Observe(Input::SynchronousStandbySet { target, result }),
                        now,
                    )
                });
            }
        }
    }

    /// The next time something happens, up to `limit`.
    fn next_event(&self, limit: Instant) -> Instant {
        let mut next = limit;
        for t in &self.queue {
            next = next.min(t.at);
        }
        for host in &self.hosts {
            let Some(node) = &host.node else { continue };
            if let Some(d) = node.next_deadline() {
                next = next.min(d);
            }
            if let Some(etcd) = &self.etcd {
                let i = if std::ptr::eq(host, &self.hosts[A]) {
                    A
                } else {
                    B
                };
                next = next.min(etcd.next[i]);
            }
            next = next
                .min(host.next_local_probe)
                .min(host.next_peer_probe)
                .min(host.next_witness);
        }
        next.max(self.now)
    }

    /// Run the pair until `ms` after its start.
    pub fn run_until(&mut self, ms: u64) {
        let limit = self.t0 + Duration::from_millis(ms);
        let mut guard = 0u64;
        while self.now < limit {
            guard += 1;
            assert!(guard < 5_000_000, "the simulation does not advance");
            let next = self.next_event(limit);
            self.now = next;
            self.step_at_now();
            self.check();
            if next == limit {
                break;
            }
        }
        self.now = limit;
    }

    fn step_at_now(&mut self) {
        self.advance_wal();
        // Queued deliveries due now, in order.
        loop {
            let due = self
                .queue
                .iter()
                .enumerate()
                .filter(|(_, t)| t.at <= self.now)
                .min_by_key(|(_, t)| (t.at, t.seq))
                .map(|(k, _)| k);
            let Some(k) = due else { break };
            let timed = self.queue.swap_remove(k);
            self.deliver(timed.to, timed.what);
        }
        for i in [A, B] {
            if self.hosts[i].node.is_none() {
                continue;
            }
            if self.hosts[i].next_local_probe <= self.now {
                self.hosts[i].next_local_probe = self.now + self.hosts[i].config.health.interval;
                self.local_probe(i);
            }
            if self.hosts[i].next_peer_probe <= self.now {
                // A probe that times out holds the next one back (the observer skips ticks).
                let interval = self.hosts[i].config.health.interval;
                let wait = if self.reachable() {
                    interval
                } else {
                    interval.max(self.hosts[i].config.health.timeout)
                };
                self.hosts[i].next_peer_probe = self.now + wait;
                self.peer_probe(i);
            }
            if self.etcd.as_ref().is_some_and(|e| e.next[i] <= self.now) {
                self.etcd_client(i);
            }
            if self.hosts[i].next_witness <= self.now {
                self.hosts[i].next_witness = self.now + self.hosts[i].config.witness.interval;
                self.witness_round(i);
            }
            let due = self.hosts[i]
                .node
                .as_ref()
                .and_then(Node::next_deadline)
                .is_some_and(|d| d <= self.now);
            if due {
                self.input(i, |node, now| node.handle(NodeInput::Timer, now));
            }
        }
    }

    // ---- the invariants -------------------------------------------------------------------

    fn violation(&mut self, rule: &'static str, detail: String) {
        let at_ms = self.ms();
        // One report per rule and episode is enough.
        if self
            .violations
            .last()
            .is_some_and(|v| v.rule == rule && at_ms.saturating_sub(v.at_ms) < 1000)
        {
            return;
        }
        self.note(format!("VIOLATION {rule}: {detail}"));
        self.violations.push(Violation {
            at_ms,
            rule,
            detail,
        });
    }

    /// Invariant 2 at the moment a promotion starts: the peer's primary must not be answering.
    /// Invariant 11: the promoted standby misses no acknowledged commit beyond what asynchronous
    /// replication allows — what the old primary wrote after this host last saw it, plus its lag
    /// then within `maximum_lag` and `maximum_lag_time` — unless the operator accepted the loss.
    fn check_promotion(&mut self, i: usize) {
        if let Some(record) = self.etcd.as_ref().map(|e| e.record) {
            if self.mode(i) != ReplicationMode::Async
                && record != Some(Some(i))
                && !self.loss_accepted[i]
            {
                self.violation(
                    "with an arbiter, a standby the sync record does not name is never promoted",
                    format!("host {i} promotes; etcd's record is {record:?}"),
                );
            }
        }
        let old = &self.hosts[1 - i].db;
        if old.role == Role::Primary {
            let lost = old.acked.saturating_sub(self.hosts[i].db.wal);
            let (unseen, lag) = self.hosts[i]
                .peer_primary_wal_seen
                .map_or((old.acked, 0), |(seen, had)| {
                    (old.acked.saturating_sub(seen), seen.saturating_sub(had))
                });
            // Synchronous modes: nothing, except (`sync`) what the old primary acknowledged
            // alone after `sync_timeout` in a partition.
            // `maximum_lag_time` bounds the lag only once the daemon has watched for that long
            // (plus the probe that starts the watch): a daemon started during a silent cut
            // cannot know since when WAL has been missing (`maximum_lag` still applies).
            let watched = self
                .now
                .saturating_duration_since(self.hosts[i].daemon_since);
            let lag_time_bound = if watched >= Duration::from_millis(1000) + PEER_SEEN_WITHIN {
                LAG_TIME_BYTES
            } else {
                MAXIMUM_LAG
            };
            let allowed = match self.mode(1 - i) {
                ReplicationMode::Async => unseen + lag.min(MAXIMUM_LAG).min(lag_time_bound),
                // With an arbiter, nothing: the record says none before the primary commits alone.
                ReplicationMode::Sync if self.etcd.is_some() => 0,
                ReplicationMode::Sync => {
                    self.relaxed_unreachable_at[1 - i].map_or(0, |at| old.acked.saturating_sub(at))
                }
                ReplicationMode::SyncStrict => 0,
            };
            self.lost_bytes.push(lost);
            if lost > allowed && !self.loss_accepted[i] {
                self.violation(
                    "no acknowledged commit lost beyond the mode's allowance",
                    format!(
                        "host {i} promotes missing {lost} bytes of the old primary's \
                         acknowledged WAL (allowed {allowed}); it saw all but {unseen} of them"
                    ),
                );
            }
        }
        self.loss_accepted[i] = false;
        let peer = &self.hosts[1 - i];
        let connected_long = self
            .connected_since
            .is_some_and(|since| self.now.saturating_duration_since(since) >= PEER_SEEN_WITHIN);
        let primary_long = peer.db.writable()
            && peer
                .db
                .primary_since
                .is_some_and(|since| self.now.saturating_duration_since(since) >= PEER_SEEN_WITHIN);
        if connected_long && primary_long && self.hosts[i].local_failure_until.is_none() {
            self.violation(
                "no promotion while the peer's primary answers",
                format!("host {i} promotes while host {} serves as primary", 1 - i),
            );
        }
    }

    fn check(&mut self) {
        let now = self.now;
        self.connected_since = if self.reachable() {
            self.connected_since.or(Some(now))
        } else {
            None
        };
        // Invariant 1: two holders only where the protocol cannot prevent it. A host whose
        // daemon was killed keeps its VIP in the kernel until the daemon is started again
        // (systemd restarts it; start-up removes stale VIPs): nothing runs there to act.
        let both = self.hosts.iter().all(|h| h.vip && h.node.is_some());
        self.both_vip_since = if both {
            self.both_vip_since.or(Some(now))
        } else {
            None
        };
        // Invariant 10: with an arbiter, never two holders, whether they reach each other or not.
        if both && self.etcd.is_some() {
            self.violation(
                "one VIP holder with an arbiter, the partition included",
                "both hosts hold the VIP".into(),
            );
        }
        if let (Some(both_since), Some(connected)) = (self.both_vip_since, self.connected_since) {
            let since = both_since.max(connected);
            if self.check_single_holder && now.saturating_duration_since(since) > DOUBLE_VIP_GRACE {
                self.violation(
                    "one VIP holder",
                    "both hosts hold the VIP while they reach each other".into(),
                );
            }
        }
        // A sync-strict primary that required its standby when the hosts lost each other never
        // acknowledges a commit its standby lacks until they meet again (or it is promoted over:
        // then its peer is no standby).
        for i in [A, B] {
            let db = &self.hosts[i].db;
            let peer = &self.hosts[1 - i].db;
            if self.reachable() || !db.writable() {
                self.acked_at_cut[i] = None;
                continue;
            }
            if self.acked_at_cut[i].is_none() && db.sync_standby {
                self.acked_at_cut[i] = Some(db.acked);
            }
            if let Some(at_cut) = self.acked_at_cut[i] {
                let alone = db.acked > at_cut.max(peer.wal) && peer.role == Role::Standby;
                if alone && self.mode(i) == ReplicationMode::SyncStrict {
                    let detail = format!(
                        "host {i} acknowledged WAL up to {:#x}, its standby has {:#x}",
                        db.acked, peer.wal
                    );
                    self.violation("a sync-strict primary never acknowledges alone", detail);
                }
            }
        }
        let newest = self
            .hosts
            .iter()
            .filter(|h| h.db.writable())
            .map(|h| h.db.timeline)
            .max();
        for i in [A, B] {
            let host = &self.hosts[i];
            // Invariant 1: never the VIP on a database that is not writable. A killed daemon
            // cannot remove anything; it is not judged.
            let unwritable = host.vip && host.node.is_some() && !host.db.writable();
            self.unwritable_holder_since[i] = if unwritable {
                self.unwritable_holder_since[i].or(Some(now))
            } else {
                None
            };
            if self.unwritable_holder_since[i]
                .is_some_and(|since| now.saturating_duration_since(since) > UNWRITABLE_GRACE)
            {
                let db = self.hosts[i].db.clone();
                self.violation(
                    "the VIP only on a writable database",
                    format!("host {i} holds the VIP on {db:?}"),
                );
            }
            // Invariant 4: an old primary never serves once a newer timeline is up beside it.
            let host = &self.hosts[i];
            let stale = host.vip
                && host.node.is_some()
                && self.connected_since.is_some()
                && newest.is_some_and(|t| t > host.db.timeline);
            self.stale_holder_since[i] = if stale {
                self.stale_holder_since[i].or(Some(now))
            } else {
                None
            };
            if self.stale_holder_since[i]
                .is_some_and(|since| now.saturating_duration_since(since) > PEER_SEEN_WITHIN)
            {
                self.violation(
                    "an old primary never serves after a newer timeline",
                    format!(
                        "host {i} holds the VIP on timeline {}",
                        self.hosts[i].db.timeline
                    ),
                );
            }
        }
    }

    // ---- what tests look at -----------------------------------------------------------------

    pub fn vip_holders(&self) -> Vec<usize> {
        (0..2).filter(|&i| self.hosts[i].vip).collect()
    }

    pub fn state(&self, i: usize) -> Option<State> {
        self.hosts[i].node.as_ref().map(Node::state)
    }

    pub fn assert_safe(&self) {
        assert!(
            self.violations.is_empty(),
            "{:#?}\ntrace:\n{}",
            self.violations,
            self.trace.iter().cloned().collect::<Vec<_>>().join("\n")
        );
    }

    pub fn trace_text(&self) -> String {
        self.trace.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}
