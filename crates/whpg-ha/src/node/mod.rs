//! The node: this host's VRRP instance and (with the database monitor) its HA policy, joined,
//! with the gratuitous-ARP schedule and whether the virtual addresses are held.
//!
//! Sans-IO, like the two cores it joins: it reads no clock, opens nothing and spawns nothing.
//! The daemon feeds it [`NodeInput`]s (packets, deadlines, observations, job results, operator
//! requests) with the current time and carries out the [`Effect`]s it returns, in order. So
//! every rule that joins the cores — the VIP follows a verified writable database rather than
//! the mastership, GARP only while the VIP is held, a demote only of a healthy primary, what is
//! journalled and measured — is decided here and proven by the pair simulation
//! (`tests/pair_simulation.rs`) without root.
//!
//! Call order: [`Node::handle`] (or [`Node::request`]) with an input, carry out the effects,
//! then sleep until [`Node::next_deadline`] or the next input, whichever comes first, and feed
//! [`NodeInput::Timer`] when the deadline is reached.

pub mod garp_schedule;
pub mod policy_setup;
pub mod vrrp_setup;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tracing::Level;
use whpg_policy::replication::{bytes_text, lsn_text};
use whpg_policy::{
    DbRole, Decision, FenceReason, Hold, Input, Mark, Notice, PlannedRefusal, Policy, PolicyStatus,
    SyncTarget, Unpromotable,
};
use whpg_vrrp::{Action, Event, FaultSource, Instance, State};

use crate::config::Config;
use crate::journal::{Entry, Kind};
use crate::status::{describe_reason, NodeStatus, WalReceiverStatus};
use garp_schedule::{GarpSchedule, GarpTiming};

/// At most one log line per reason per this period for dropped packets (counters see them all).
const DROP_LOG_PERIOD: Duration = Duration::from_secs(10);

/// The time of an input: the monotonic instant the cores run on and the wall clock that the
/// journal and `/status` show. The caller reads both once per input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub at: Instant,
    pub unix_ms: u64,
}

impl Now {
    /// The clocks read now (for the daemon; simulations build their own).
    pub fn read() -> Now {
        Now {
            at: Instant::now(),
            unix_ms: crate::status::unix_ms(std::time::SystemTime::now()),
        }
    }
}

/// What happens to a node.
#[derive(Debug)]
pub enum NodeInput<'a> {
    /// Leave Initialize (after the policy's start-up decisions).
    Start,
    /// An IPv4 datagram from the VRRP socket.
    Datagram(&'a [u8]),
    /// A VRRP payload with the IP fields already parsed (simulations, IPv6).
    Packet {
        meta: whpg_vrrp::receive::PacketMeta,
        payload: &'a [u8],
    },
    /// [`Node::next_deadline`] was reached.
    Timer,
    /// An observation or a job's result for the policy (probes, witnesses, the postmaster's
    /// exit, a finished promotion).
    Observe(Input),
    /// The VRRP interface lost its link or address (`Some`, with what happened) or has both
    /// again (`None`).
    Interface(Option<String>),
    /// A reload changed the configured priority.
    SetPriority(u8),
    /// A reload changed a peer's priority: the priorities its adverts may carry (`None`: any).
    SetAcceptedPriorities(Option<Vec<u8>>),
    /// A reload changed the GARP timing.
    SetGarpTiming(GarpTiming),
    /// A job (fencing) finished and wants its result recorded.
    Job(JobReport),
    /// SIGTERM or SIGINT: resign the mastership and release the addresses.
    Shutdown { signal: &'static str },
    /// An IPv4 address appeared on (`present`) or left the VRRP interface, as netlink reports
    /// it: a virtual address removed by someone else (`ip addr del`, NetworkManager, `ifup`)
    /// while this node holds it is put back at once.
    Address {
        address: std::net::Ipv4Addr,
        present: bool,
    },
    /// Maintenance mode was on when the daemon last ran (fed before [`NodeInput::Start`]).
    RestoredMaintenance { since_unix_ms: Option<u64> },
    /// The standby was marked not promotable when the daemon last ran (fed before
    /// [`NodeInput::Start`]).
    RestoredNotPromotable(NotPromotableRecord),
}

/// The mark "this standby misses WAL the primary had", as kept on disk across restarts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NotPromotableRecord {
    pub since_unix_ms: u64,
    /// Why, in words (for the log after a restart).
    pub reason: String,
    /// The primary's WAL position then, and what the standby had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_lsn: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub had_lsn: Option<u64>,
}

/// What a finished job reports for the journal and `/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobReport {
    pub kind: &'static str,
    /// True when the job did all it had to.
    pub complete: bool,
    pub detail: String,
}

/// What the daemon must do, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send a VRRP advert.
    Send { dst: IpAddr, payload: Vec<u8> },
    /// Install every configured virtual address (idempotent).
    InstallVips,
    /// Remove every configured virtual address (idempotent).
    RemoveVips,
    /// Announce the held addresses with gratuitous ARP, this many bursts.
    Garp { rounds: usize },
    /// Run the promotion command and verify it with a real write; answer with
    /// `Input::PromotionFinished`.
    Promote { attempt: u32 },
    /// Stop the local database; answer with [`NodeInput::Job`].
    Fence(FenceReason),
    /// Start a witness round now; answer with `Input::Witness`.
    CheckWitnesses,
    /// Observe the local database now; answer with `Input::Local`.
    ObserveLocal,
    /// Observe the peer's database now (an advert from it was just accepted); answer with
    /// `Input::Peer`. The observer may skip it when its last round is recent.
    ObservePeer,
    /// Append to the journal.
    Journal(Entry),
    /// One log line.
    Log { level: Level, text: String },
    /// Count or time something for `/metrics`.
    Measure(Measure),
    /// Remember maintenance mode across restarts (on disk, before the request is answered).
    RememberMaintenance { on: bool },
    /// Campaign for / keep the arbiter's leader key, or release it; the etcd client answers
    /// with `Input::Arbiter`.
    Arbiter(whpg_policy::ArbiterAction),
    /// Remember that the standby is not promotable (`None`: it caught up), on disk, so a
    /// restarted daemon cannot forget it.
    RememberNotPromotable(Option<NotPromotableRecord>),
    /// Set `synchronous_standby_names` on the local primary (the standby's `application_name`
    /// as the primary lists it, or empty) and reload; answer with
    /// `Input::SynchronousStandbySet`.
    SetSynchronousStandby(SyncTarget),
    /// Write etcd's sync record (the standby's node name, or none) in a transaction that
    /// compares the leader key is still this node's; answer with `Input::SyncRecordWritten`.
    WriteSyncRecord(whpg_policy::SyncRecordWrite),
}

/// Metric events; the daemon keeps the counters and histograms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Measure {
    PromotionStarted,
    PromotionEnded {
        succeeded: bool,
        took: Duration,
    },
    /// From taking the mastership to the VIP on the promoted database.
    Failover {
        took: Duration,
    },
    /// A promotion was held because the standby may miss acknowledged commits.
    PromotionRefusedBehind,
}

/// A request of an operator (through the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Maintenance(bool),
    /// Planned switchover, old primary: leave the election.
    Demote,
    /// Planned switchover, new primary: promote now, once the old primary's shutdown checkpoint
    /// (`shutdown_checkpoint`) is within what this standby received (`received`), both LSNs.
    PlannedPromotion {
        shutdown_checkpoint: u64,
        received: u64,
    },
    /// Journal a step an API task carried out.
    Record(String),
    /// `whpg-ha promote --accept-data-loss`: promote now although the standby is not known to
    /// hold everything the primary acknowledged.
    PromoteAcceptingDataLoss,
}

/// What an accepted request reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Maintenance mode now in force.
    Maintenance(bool),
    Done,
}

/// Why a request was refused. Callers match on the variant, never on the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("database.monitor = false: there is no automatic failover to suspend")]
    NoMonitorForMaintenance,
    #[error("database.monitor = false: no database to hand over")]
    NoMonitorToDemote,
    #[error("database.monitor = false: nothing to promote")]
    NoMonitorToPromote,
    #[error("the local database is not a healthy primary")]
    NotHealthyPrimary,
    #[error("planned promotion refused: {0}")]
    Planned(PlannedRefusal),
    #[error(
        "nothing to promote here: this node is not the VRRP master over a healthy standby \
         database (the old primary's node may still hold the mastership, or this database is \
         fenced, a primary already, or down)"
    )]
    NotACandidate,
    #[error("not promoted: {0}")]
    Held(HoldText),
}

/// A [`Hold`] in words, for a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldText(pub Hold);

impl std::fmt::Display for HoldText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Hold::PeerPrimaryAlive | Hold::WalReceiverFresh => {
                "the old primary is alive (it answered within the alive window); stop it first"
            }
            Hold::Confirming { .. } => "the old primary's silence is still being confirmed",
            Hold::AwaitingWitnesses => "waiting for a witness round to answer",
            Hold::PeerUnknown => {
                "the old primary's state is unknown (our probe failed for a local reason)"
            }
            Hold::TriggerNotConfigured => "this failure is not in failover.triggers",
            Hold::Maintenance => "maintenance mode is on",
            Hold::NotPromotable(_) => "the standby is not known to hold every acknowledged commit",
            Hold::ArbiterKey(whpg_policy::KeyState::Campaigning) => {
                "asking the arbiter (etcd) for the leader key"
            }
            Hold::ArbiterKey(whpg_policy::KeyState::HeldByOther) => {
                "the other node holds the arbiter's leader key (its lease has not run out)"
            }
            Hold::ArbiterKey(whpg_policy::KeyState::Unknown) => {
                "the arbiter (etcd) does not answer: unknown is not free, no promotion"
            }
            Hold::SyncRecord(why) => return write!(f, "{}", sync_record_refusal(why)),
        })
    }
}

impl Refusal {
    /// The refusal goes away by itself soon: the mastership follows the old primary's exit, and
    /// its stop is seen at the next probe.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Refusal::Planned(PlannedRefusal::NotMaster | PlannedRefusal::OldPrimaryAnswers { .. })
        )
    }
}

pub struct Node {
    name: String,
    /// The configured virtual addresses (to recognise them in address events).
    vip_addresses: Vec<std::net::Ipv4Addr>,
    instance: Instance,
    /// `None` with `database.monitor = false`: the VIP then follows the mastership alone.
    policy: Option<Policy>,
    garp: GarpSchedule,
    garp_on_lower_priority: bool,
    holds_vips: bool,
    /// Policy inputs produced while carrying out the instance's actions.
    pending: VecDeque<Input>,
    effects: Vec<Effect>,
    now: Now,
    status: NodeStatus,
    wal_receiver: Option<WalReceiverStatus>,
    promotion_started: Option<Instant>,
    /// When the mastership that the running promotion serves began (Unix ms).
    failover_from_unix_ms: Option<u64>,
    drop_logged: HashMap<&'static str, Instant>,
    planned_refusal: Option<PlannedRefusal>,
    /// When the standby was marked not promotable (wall clock), while it is.
    not_promotable_since_unix_ms: Option<u64>,
}

impl Node {
    pub fn new(config: &Config, now: Now) -> Node {
        let policy = config
            .database
            .monitor
            .then(|| Policy::new(policy_setup::policy_config(config), now.at))
            .map(|policy| match policy_setup::arbiter_rules(config) {
                Some(rules) => policy.with_arbiter(rules),
                None => policy,
            });
        Node::with_policy(config, policy, now)
    }

    /// A node with a policy built by the caller (`None`: no database monitor).
    pub fn with_policy(config: &Config, policy: Option<Policy>, now: Now) -> Node {
        Node {
            name: config.local.name.clone(),
            vip_addresses: config.vips.iter().map(|v| v.address).collect(),
            instance: Instance::new(vrrp_setup::instance_config(config)),
            policy,
            garp: GarpSchedule::new(vrrp_setup::garp_timing(config)),
            garp_on_lower_priority: config.vrrp.garp.on_lower_priority,
            holds_vips: false,
            pending: VecDeque::new(),
            effects: Vec::new(),
            now,
            status: NodeStatus::initial(config, now.unix_ms),
            wal_receiver: None,
            promotion_started: None,
            failover_from_unix_ms: None,
            drop_logged: HashMap::new(),
            planned_refusal: None,
            not_promotable_since_unix_ms: None,
        }
    }

    pub fn status(&self) -> &NodeStatus {
        &self.status
    }

    pub fn state(&self) -> State {
        self.instance.state()
    }

    pub fn holds_vips(&self) -> bool {
        self.holds_vips
    }

    pub fn policy_status(&self) -> Option<PolicyStatus> {
        self.policy.as_ref().map(Policy::status)
    }

    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// The earliest time at which something is due with no new input.
    pub fn next_deadline(&self) -> Option<Instant> {
        let policy = self.policy.as_ref().and_then(Policy::next_wakeup);
        [self.instance.poll_timeout(), self.garp.next_due(), policy]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn handle(&mut self, input: NodeInput<'_>, now: Now) -> Vec<Effect> {
        self.now = now;
        match input {
            NodeInput::Start => self.start(),
            NodeInput::Datagram(datagram) => self.feed_advert(Event::Ipv4Datagram(datagram)),
            NodeInput::Packet { meta, payload } => {
                self.feed_advert(Event::Packet { meta, payload })
            }
            NodeInput::Timer => {
                self.feed(Event::Timeout);
                if self.policy.is_some() {
                    self.observe(Input::Tick);
                }
            }
            NodeInput::Observe(input) => self.observe(input),
            NodeInput::Interface(fault) => self.interface(fault),
            NodeInput::SetPriority(priority) => {
                self.status.vrrp.configured_priority = priority;
                if self.policy.is_some() {
                    // The policy owns the effective priority (it adds the primary's bonus).
                    self.observe(Input::BasePriority(priority));
                } else {
                    self.feed(Event::SetPriority(priority));
                }
            }
            NodeInput::SetAcceptedPriorities(set) => self.feed(Event::SetAcceptedPriorities(set)),
            NodeInput::SetGarpTiming(timing) => self.garp.set_timing(timing),
            NodeInput::Job(report) => {
                let kind = if report.complete {
                    Kind::Action
                } else {
                    Kind::Notice
                };
                let entry = self.entry(kind, report.detail.clone());
                self.record(Some((report.kind, &report.detail)), entry);
            }
            NodeInput::Address { address, present } => self.address_event(address, present),
            NodeInput::RestoredMaintenance { since_unix_ms } => {
                if self.policy.is_none() {
                    let text =
                        "maintenance mode was on before the restart, but database.monitor = \
                                false: there is no automatic failover to suspend";
                    self.log(Level::WARN, text);
                    let entry = self.entry(Kind::Notice, text);
                    self.record(None, entry);
                } else {
                    let text = "maintenance mode on (kept from before the restart): no automatic \
                                failover until it is turned off";
                    self.log(Level::WARN, text);
                    let mut entry = self.entry(Kind::Decision, text).with("maintenance", true);
                    if let Some(since) = since_unix_ms {
                        entry = entry.with("since_unix_ms", since);
                    }
                    self.record(Some(("maintenance", text)), entry);
                    self.observe(Input::Maintenance(true));
                }
            }
            NodeInput::RestoredNotPromotable(record) => {
                if self.policy.is_some() {
                    let text = format!(
                        "the standby was marked not promotable before the restart ({}, since {}): \
                         it stays so until it is streaming and caught up",
                        record.reason,
                        wall_clock(record.since_unix_ms)
                    );
                    self.log(Level::WARN, text.clone());
                    let entry = self
                        .entry(Kind::Decision, text.as_str())
                        .with("not_promotable", true);
                    self.record(Some(("replication", &text)), entry);
                    self.not_promotable_since_unix_ms = Some(record.since_unix_ms);
                    self.observe(Input::RestoredNotPromotable {
                        primary: record.primary_lsn,
                        had: record.had_lsn,
                    });
                }
            }
            NodeInput::Shutdown { signal } => {
                self.log(
                    Level::INFO,
                    "shutting down: resigning mastership and releasing the virtual addresses",
                );
                let entry = self
                    .entry(
                        Kind::Notice,
                        format!("{signal}: shutting down, resigning the mastership"),
                    )
                    .with("event", "shutdown")
                    .with("signal", signal);
                self.record(None, entry);
                self.feed(Event::Shutdown);
                // Whatever the policy decided, nothing may stay behind a stopped daemon.
                if self.holds_vips {
                    self.remove_vips();
                }
                let entry = self.entry(Kind::Notice, "stopped").with("event", "stopped");
                self.record(None, entry);
            }
        }
        self.finish()
    }

    /// An operator's request; the answer and what to do.
    pub fn request(
        &mut self,
        request: Request,
        now: Now,
    ) -> (Result<Accepted, Refusal>, Vec<Effect>) {
        self.now = now;
        let answer = self.answer(request);
        (answer, self.finish())
    }

    fn answer(&mut self, request: Request) -> Result<Accepted, Refusal> {
        match request {
            Request::Maintenance(on) => {
                if self.policy.is_none() {
                    return Err(Refusal::NoMonitorForMaintenance);
                }
                let text = if on {
                    "maintenance mode on: no automatic failover until it is turned off"
                } else {
                    "maintenance mode off: automatic failover enabled"
                };
                self.log(Level::WARN, format!("{text} (requested through the API)"));
                let entry = self.entry(Kind::Decision, text).with("maintenance", on);
                self.record(Some(("maintenance", text)), entry);
                self.observe(Input::Maintenance(on));
                self.effects.push(Effect::RememberMaintenance { on });
                let now_on = self.policy.as_ref().is_some_and(|p| p.status().maintenance);
                Ok(Accepted::Maintenance(now_on))
            }
            Request::Demote => {
                let Some(policy) = &self.policy else {
                    return Err(Refusal::NoMonitorToDemote);
                };
                let status = policy.status();
                if !status.local_healthy || status.local_role != Some(DbRole::Primary) {
                    return Err(Refusal::NotHealthyPrimary);
                }
                let text = "planned switchover: leaving the election, the database will be stopped";
                self.log(Level::WARN, format!("{text} (requested through the API)"));
                let entry = self
                    .entry(Kind::Decision, text)
                    .with("switchover", "demote");
                self.record(Some(("switchover", text)), entry);
                self.observe(Input::Demote);
                Ok(Accepted::Done)
            }
            Request::PlannedPromotion {
                shutdown_checkpoint,
                received,
            } => {
                if self.policy.is_none() {
                    return Err(Refusal::NoMonitorToPromote);
                }
                let text = "planned switchover: promote the local standby";
                let entry = self
                    .entry(Kind::Decision, text)
                    .with("switchover", "promote");
                self.record(Some(("switchover", text)), entry);
                self.planned_refusal = None;
                self.observe(Input::PlannedPromotion {
                    shutdown_checkpoint,
                    received,
                });
                match self.planned_refusal.take() {
                    Some(reason) => Err(Refusal::Planned(reason)),
                    None => Ok(Accepted::Done),
                }
            }
            Request::PromoteAcceptingDataLoss => {
                let Some(policy) = &self.policy else {
                    return Err(Refusal::NoMonitorToPromote);
                };
                let before = policy.status();
                let text = format!(
                    "promotion accepting data loss requested through the API ({})",
                    self.replication_summary(&before)
                );
                self.log(Level::WARN, text.clone());
                let entry = self
                    .entry(Kind::Decision, text.as_str())
                    .with("accept_data_loss", true);
                self.record(Some(("promotion", &text)), entry);
                self.observe(Input::AcceptDataLoss);
                let after = self.policy.as_ref().map(Policy::status);
                match after {
                    Some(s) if s.promoting => Ok(Accepted::Done),
                    Some(PolicyStatus {
                        hold: Some(hold), ..
                    }) => Err(Refusal::Held(HoldText(hold))),
                    _ => Err(Refusal::NotACandidate),
                }
            }
            Request::Record(detail) => {
                self.log(Level::INFO, detail.clone());
                let entry = self.entry(Kind::Action, detail.as_str());
                self.record(Some(("switchover", &detail)), entry);
                Ok(Accepted::Done)
            }
        }
    }

    /// Close one input: GARPs due, the status refreshed, the effects handed over.
    fn finish(&mut self) -> Vec<Effect> {
        self.send_due_garps();
        self.refresh_status();
        std::mem::take(&mut self.effects)
    }

    fn start(&mut self) {
        // The policy speaks first: its start-up gate must hold before the instance can elect.
        if let Some(policy) = &mut self.policy {
            let decisions = policy.start(self.now.at);
            for decision in decisions {
                self.decide(decision);
            }
        }
        self.feed(Event::Startup);
    }

    fn interface(&mut self, fault: Option<String>) {
        let active = fault.is_some();
        let detail = match fault {
            Some(what) => {
                self.log(Level::WARN, format!("{what}: entering FAULT"));
                what
            }
            None => {
                let text = "interface: link up and address present again".to_string();
                self.log(Level::INFO, format!("{text}: leaving FAULT"));
                text
            }
        };
        let entry = self.entry(Kind::Observation, detail).with("fault", active);
        self.record(None, entry);
        self.feed(Event::SetFault {
            source: FaultSource::Interface,
            active,
        });
    }

    /// Hand one event to the instance, carry out what it returns, then the policy's answer.
    /// A received packet. An advert accepted while backup came from the master, our peer:
    /// its database is probed right after it, so the probes keep the adverts' phase. After a
    /// cut, the probe then in flight times out before the master-down interval ends (its
    /// timeout is shorter than the interval's 3 adverts plus Skew_Time), instead of holding the
    /// promotion (invariant 2 counts an unanswered probe's primary as alive until it times out).
    fn feed_advert(&mut self, event: Event<'_>) {
        let accepted = self.instance.stats().adverts_received;
        self.feed(event);
        if self.instance.stats().adverts_received > accepted
            && self.instance.state() == State::Backup
            && self.policy.is_some()
        {
            self.effects.push(Effect::ObservePeer);
        }
    }

    fn feed(&mut self, event: Event<'_>) {
        let actions = self.instance.handle(event, self.now.at);
        self.carry_out(actions);
        self.drain_policy();
    }

    /// One observation for the policy.
    fn observe(&mut self, input: Input) {
        if let Input::PostmasterExited = input {
            self.log(Level::WARN, "the local postmaster exited");
            let entry = self.entry(Kind::Observation, "the local postmaster exited");
            self.record(Some(("database", "postmaster exited (pidfd)")), entry);
        }
        // An unknown sample says nothing: `/status` keeps what the last real answer said.
        if let Input::Local(sample) = &input {
            if *sample != whpg_policy::LocalSample::Unknown {
                self.wal_receiver = match sample {
                    whpg_policy::LocalSample::Standby {
                        wal_receiver: Some(wal),
                        ..
                    } => Some(WalReceiverStatus::from_sample(wal)),
                    _ => None,
                };
            }
        }
        self.pending.push_back(input);
        self.drain_policy();
    }

    fn carry_out(&mut self, actions: Vec<Action>) {
        let became_master = actions.iter().any(|a| {
            matches!(
                a,
                Action::Transition {
                    to: State::Master,
                    ..
                }
            )
        });
        // The instance lists a transition after the actions it brings (take the addresses,
        // advertise); the log and the journal tell it first, as the cause.
        for action in &actions {
            if let Action::Transition { from, to, reason } = action {
                let text = describe_reason(reason);
                self.log(Level::INFO, format!("VRRP {from} -> {to}: {text}"));
                self.status
                    .record_transition(*from, *to, reason, self.now.unix_ms);
                let entry = self
                    .entry(Kind::Transition, format!("VRRP {from} -> {to}: {text}"))
                    .with("from", from.to_string())
                    .with("to", to.to_string())
                    .with("reason", text.as_str());
                self.record(None, entry);
            }
        }
        for action in actions {
            self.execute(action, became_master);
        }
    }

    fn execute(&mut self, action: Action, became_master: bool) {
        let supervised = self.policy.is_some();
        match action {
            Action::Send(transmit) => self.effects.push(Effect::Send {
                dst: transmit.dst,
                payload: transmit.payload,
            }),
            // With a policy, the VIP follows its decisions (a writable database), not the
            // mastership.
            Action::TakeAddresses if !supervised => self.install_vips(),
            Action::ReleaseAddresses if !supervised => self.remove_vips(),
            Action::TakeAddresses | Action::ReleaseAddresses => {}
            Action::GratuitousArp => {
                if became_master && !supervised {
                    self.garp.announce(self.now.at);
                } else if self.garp_on_lower_priority {
                    self.garp.reannounce(self.now.at);
                }
            }
            Action::Transition { to, reason, .. } => {
                // Logged and recorded by `carry_out`, before the actions it explains.
                if to != State::Master {
                    self.garp.stop();
                }
                if supervised {
                    self.pending.push_back(Input::Vrrp { to, reason });
                }
            }
            // The loop asks for the deadline after every input.
            Action::ArmTimer(_) | Action::DisarmTimer => {}
            Action::Dropped { src, reason } => {
                let label = reason.label();
                let now = self.now.at;
                let due = self
                    .drop_logged
                    .get(label)
                    .is_none_or(|last| now.duration_since(*last) >= DROP_LOG_PERIOD);
                let from = src.map_or_else(|| "?".to_string(), |s| s.to_string());
                if due {
                    self.drop_logged.insert(label, now);
                    self.log(
                        Level::WARN,
                        format!(
                            "dropped VRRP packet from {from}: {reason} (further ones counted, \
                             logged at most every 10 s)"
                        ),
                    );
                } else {
                    self.log(
                        Level::DEBUG,
                        format!("dropped VRRP packet from {from}: {reason}"),
                    );
                }
            }
        }
    }

    /// Feed queued inputs to the policy and carry out its decisions until nothing is left.
    fn drain_policy(&mut self) {
        while let Some(input) = self.pending.pop_front() {
            let Some(policy) = &mut self.policy else {
                self.pending.clear();
                return;
            };
            let decisions = policy.handle(input, self.now.at);
            for decision in decisions {
                self.decide(decision);
            }
        }
    }

    fn decide(&mut self, decision: Decision) {
        self.measure(&decision);
        match decision {
            Decision::SetPriority(priority) => {
                self.log(Level::DEBUG, format!("policy: priority {priority}"));
                let entry = self
                    .entry(Kind::Decision, format!("priority {priority}"))
                    .with("priority", priority);
                self.record(None, entry);
                self.feed_instance(Event::SetPriority(priority));
            }
            Decision::SetPreempt(preempt) => {
                self.log(Level::DEBUG, format!("policy: preempt {preempt}"));
                let entry = self
                    .entry(Kind::Decision, format!("preempt {preempt}"))
                    .with("preempt", preempt);
                self.record(None, entry);
                self.feed_instance(Event::SetPreempt(preempt));
            }
            Decision::SetFault { source, active } => {
                let source_name = format!("{source:?}").to_lowercase();
                self.log(
                    Level::DEBUG,
                    format!("policy: fault {source_name} {active}"),
                );
                let detail = if active {
                    format!("enter FAULT ({source_name})")
                } else {
                    format!("clear the {source_name} fault")
                };
                let entry = self
                    .entry(Kind::Decision, detail)
                    .with("fault", source_name)
                    .with("active", active);
                self.record(None, entry);
                self.feed_instance(Event::SetFault { source, active });
            }
            Decision::Resign => {
                self.log(
                    Level::WARN,
                    "policy: releasing the mastership so the peer can act",
                );
                let entry =
                    self.entry(Kind::Decision, "release the mastership so the peer can act");
                self.record(None, entry);
                self.feed_instance(Event::Resign);
            }
            Decision::InstallVip => {
                let entry = self.entry(Kind::Decision, "install the virtual addresses");
                self.record(None, entry);
                self.install_vips();
                self.garp.announce(self.now.at);
                self.status
                    .record_event("vip", "virtual addresses installed", self.now.unix_ms);
            }
            Decision::RemoveVip => {
                let entry = self.entry(Kind::Decision, "remove the virtual addresses");
                self.record(None, entry);
                self.remove_vips();
                self.status
                    .record_event("vip", "virtual addresses removed", self.now.unix_ms);
            }
            Decision::Promote { attempt } => {
                self.log(
                    Level::WARN,
                    format!("policy: promoting the local standby (attempt {attempt})"),
                );
                let entry = self
                    .entry(
                        Kind::Decision,
                        format!("promote the local standby (attempt {attempt})"),
                    )
                    .with("attempt", attempt);
                let recent = format!("attempt {attempt} started");
                self.record(Some(("promotion", &recent)), entry);
                self.effects.push(Effect::Promote { attempt });
            }
            Decision::Fence(reason) => {
                self.log(
                    Level::ERROR,
                    format!("policy: fencing the local database: {reason:?}"),
                );
                let reason_text = format!("{reason:?}");
                let entry = self
                    .entry(
                        Kind::Decision,
                        format!("fence the local database: {reason_text}"),
                    )
                    .with("reason", reason_text.as_str());
                self.record(Some(("fence", &reason_text)), entry);
                self.effects.push(Effect::Fence(reason));
            }
            Decision::CheckWitnesses => {
                self.log(Level::DEBUG, "policy: probing the witnesses now");
                self.effects.push(Effect::CheckWitnesses);
            }
            Decision::ObserveLocal => {
                self.log(Level::DEBUG, "policy: observing the local database now");
                self.effects.push(Effect::ObserveLocal);
            }
            Decision::SetSynchronousStandby(target) => {
                let detail = match target {
                    SyncTarget::Standby => {
                        "commits wait for the standby: synchronous_standby_names = its \
                         application_name"
                    }
                    SyncTarget::Alone => "commit alone: synchronous_standby_names = ''",
                };
                self.log(Level::INFO, format!("policy: {detail}"));
                let entry = self
                    .entry(Kind::Decision, detail)
                    .with("synchronous_standby", target == SyncTarget::Standby);
                self.record(None, entry);
                self.effects.push(Effect::SetSynchronousStandby(target));
            }
            Decision::WriteSyncRecord(record) => {
                let text = match record {
                    whpg_policy::SyncRecordWrite::Standby => {
                        "policy: etcd's sync record names the standby (it is listed sync)"
                    }
                    whpg_policy::SyncRecordWrite::None => {
                        "policy: etcd's sync record to say none before committing alone"
                    }
                };
                self.log(Level::INFO, text);
                let entry = self.entry(Kind::Decision, text);
                self.record(Some(("arbiter", text)), entry);
                self.effects.push(Effect::WriteSyncRecord(record));
            }
            Decision::Arbiter(action) => {
                let text = match action {
                    whpg_policy::ArbiterAction::Campaign => {
                        "policy: campaign for the arbiter's leader key"
                    }
                    whpg_policy::ArbiterAction::Release => {
                        "policy: release the arbiter's leader key"
                    }
                };
                self.log(Level::INFO, text);
                let entry = self.entry(Kind::Decision, text);
                self.record(Some(("arbiter", text)), entry);
                self.effects.push(Effect::Arbiter(action));
            }
            Decision::Notice(notice) => self.notice(notice),
        }
    }

    /// The instance's answer to a policy decision; the policy sees the transitions it causes
    /// through `pending`.
    fn feed_instance(&mut self, event: Event<'_>) {
        let actions = self.instance.handle(event, self.now.at);
        self.carry_out(actions);
    }

    fn notice(&mut self, notice: Notice) {
        let text = match &notice {
            Notice::StartupChecksDone => "start-up checks done: joining the election".to_string(),
            Notice::PromotionHeld(Hold::NotPromotable(why)) => {
                self.effects
                    .push(Effect::Measure(Measure::PromotionRefusedBehind));
                let status = self.policy.as_ref().map(Policy::status);
                let summary = status
                    .as_ref()
                    .map(|s| self.replication_summary(s))
                    .unwrap_or_default();
                format!(
                    "not promoted: {why}; {summary}. To promote anyway and lose what is \
                     missing: whpg-ha promote --accept-data-loss"
                )
            }
            Notice::PromotionHeld(Hold::SyncRecord(why)) => {
                // Not yet read is the moment between taking the key and reading the record.
                if *why != whpg_policy::RecordRefusal::NotRead {
                    self.effects
                        .push(Effect::Measure(Measure::PromotionRefusedBehind));
                }
                format!(
                    "not promoted: {}; to promote anyway: whpg-ha promote --accept-data-loss",
                    sync_record_refusal(*why)
                )
            }
            Notice::PromotionHeld(hold) => format!("promotion held: {hold:?}"),
            Notice::StandbyMarkedBehind(mark) => {
                self.not_promotable_since_unix_ms = Some(self.now.unix_ms);
                let record = NotPromotableRecord {
                    since_unix_ms: self.now.unix_ms,
                    reason: mark.reason.to_string(),
                    primary_lsn: mark.primary,
                    had_lsn: mark.had,
                };
                self.effects
                    .push(Effect::RememberNotPromotable(Some(record)));
                format!(
                    "standby marked not promotable: {}{}; it stays so until it is streaming and \
                     caught up",
                    mark.reason,
                    mark_numbers(*mark)
                )
            }
            Notice::StandbyCaughtUp => {
                self.not_promotable_since_unix_ms = None;
                self.effects.push(Effect::RememberNotPromotable(None));
                "standby streaming and caught up: promotable again".to_string()
            }
            Notice::PromotionSucceeded { attempt } => {
                format!("promotion verified: the database is writable (attempt {attempt})")
            }
            Notice::PromotionFailed {
                attempt,
                error,
                giving_up,
            } => format!(
                "promotion attempt {attempt} failed: {error}{}",
                if *giving_up {
                    "; giving up and releasing the mastership"
                } else {
                    "; will retry"
                }
            ),
            Notice::NeedsRejoin {
                local_timeline,
                peer_timeline,
            } => format!(
                "this database is an old primary (timeline {local_timeline}, the peer's is \
                 {peer_timeline}): fenced, needs rejoin"
            ),
            Notice::PlannedPromotionRefused(reason) => {
                self.planned_refusal = Some(*reason);
                format!("planned promotion refused: {reason}")
            }
            Notice::Demoted => {
                "demoted for a planned switchover: out of the election until rebuilt as a standby"
                    .to_string()
            }
            Notice::Rejoined => {
                "the local database is a healthy standby again: back in the election".to_string()
            }
            Notice::Isolated => "isolated: neither the peer nor the witnesses answer".to_string(),
            Notice::IsolationEnded => "no longer isolated".to_string(),
            Notice::SynchronousStandbySet { target, reason } => {
                let why = reason.map(|r| format!(": {r}")).unwrap_or_default();
                match target {
                    SyncTarget::Standby => {
                        format!("commits now wait for the standby (synchronous){why}")
                    }
                    SyncTarget::Alone => format!(
                        "the primary commits alone now (synchronous_standby_names = ''){why}"
                    ),
                }
            }
            Notice::SynchronousStandbyFailed { target, error } => format!(
                "could not set synchronous_standby_names {}: {error}; trying again",
                match target {
                    SyncTarget::Standby => "to the standby",
                    SyncTarget::Alone => "to '' (commit alone)",
                }
            ),
            Notice::LeaseLost => "the arbiter's lease ran out (or the key went elsewhere) and the \
                                  peer did not confirm it stays a standby: the VIP goes"
                .to_string(),
            Notice::SyncRecordWritten(whpg_policy::SyncRecordWrite::Standby) => {
                "etcd's sync record names the standby: it may be promoted on it".to_string()
            }
            Notice::SyncRecordWritten(whpg_policy::SyncRecordWrite::None) => {
                "etcd's sync record says none (acknowledged): the primary may commit alone now"
                    .to_string()
            }
            Notice::SyncRecordFailed { record, error } => format!(
                "could not write etcd's sync record ({}): {error}; {}",
                match record {
                    whpg_policy::SyncRecordWrite::Standby => "naming the standby",
                    whpg_policy::SyncRecordWrite::None => "none",
                },
                match record {
                    whpg_policy::SyncRecordWrite::Standby => {
                        "the standby is not promotable until it succeeds; trying again"
                    }
                    whpg_policy::SyncRecordWrite::None => {
                        "the primary does not commit alone until it succeeds (writes wait); \
                         trying again"
                    }
                }
            ),
        };
        let level = match notice {
            Notice::PromotionFailed { .. }
            | Notice::NeedsRejoin { .. }
            | Notice::Isolated
            | Notice::SynchronousStandbyFailed { .. }
            | Notice::LeaseLost
            | Notice::SyncRecordFailed { .. }
            | Notice::PromotionHeld(Hold::NotPromotable(_)) => Level::ERROR,
            Notice::PromotionHeld(Hold::SyncRecord(why))
                if why != whpg_policy::RecordRefusal::NotRead =>
            {
                Level::ERROR
            }
            Notice::SynchronousStandbySet {
                target: SyncTarget::Standby,
                ..
            } => Level::INFO,
            Notice::PromotionHeld(_) | Notice::StartupChecksDone => Level::INFO,
            _ => Level::WARN,
        };
        self.log(level, text.clone());
        let entry = self.entry(Kind::Notice, text.as_str());
        self.record(Some(("policy", &text)), entry);
    }

    /// A virtual address that leaves while held was not removed by us (our own removals clear
    /// `holds_vips` first): put it back, announce it again, and say so. While it is missing,
    /// `/status` lists it, so `/primary` answers 503.
    fn address_event(&mut self, address: std::net::Ipv4Addr, present: bool) {
        if !self.vip_addresses.contains(&address) {
            return;
        }
        let missing = &mut self.status.vips_missing;
        let shown = address.to_string();
        if present {
            missing.retain(|a| *a != shown);
            return;
        }
        if !self.holds_vips {
            return;
        }
        if !missing.contains(&shown) {
            missing.push(shown);
        }
        self.status.vrrp.counters.vips_restored += 1;
        let text = format!(
            "virtual address {address} was removed from the interface by something other than \
             whpg-ha: putting it back"
        );
        self.log(Level::ERROR, text.clone());
        let entry = self
            .entry(Kind::Observation, text.as_str())
            .with("vip", address.to_string())
            .with("event", "vip_restored");
        self.record(Some(("vip", &text)), entry);
        self.effects.push(Effect::InstallVips);
        self.garp.reannounce(self.now.at);
    }

    fn install_vips(&mut self) {
        self.holds_vips = true;
        self.effects.push(Effect::InstallVips);
    }

    fn remove_vips(&mut self) {
        self.garp.stop();
        self.holds_vips = false;
        self.status.vips_missing.clear();
        self.effects.push(Effect::RemoveVips);
    }

    fn send_due_garps(&mut self) {
        let rounds = self.garp.take_due(self.now.at);
        if rounds > 0 && self.holds_vips {
            self.effects.push(Effect::Garp { rounds });
        }
    }

    /// Promotion and failover metrics from the policy's decisions.
    fn measure(&mut self, decision: &Decision) {
        let now = self.now.at;
        match decision {
            Decision::Promote { attempt } => {
                self.effects
                    .push(Effect::Measure(Measure::PromotionStarted));
                self.promotion_started = Some(now);
                if *attempt == 1 && self.instance.state() == State::Master {
                    self.failover_from_unix_ms = Some(self.status.vrrp.since_unix_ms);
                }
            }
            Decision::Notice(
                Notice::PromotionSucceeded { .. } | Notice::PromotionFailed { .. },
            ) => {
                let succeeded = matches!(
                    decision,
                    Decision::Notice(Notice::PromotionSucceeded { .. })
                );
                if let Some(started) = self.promotion_started.take() {
                    let took = now.saturating_duration_since(started);
                    self.effects
                        .push(Effect::Measure(Measure::PromotionEnded { succeeded, took }));
                }
            }
            Decision::InstallVip => {
                if let Some(from) = self.failover_from_unix_ms.take() {
                    let took = Duration::from_millis(self.now.unix_ms.saturating_sub(from));
                    self.effects
                        .push(Effect::Measure(Measure::Failover { took }));
                }
            }
            Decision::RemoveVip | Decision::Resign => self.failover_from_unix_ms = None,
            _ => {}
        }
    }

    /// Record what happened: in the journal and, with `recent` (kind and detail as `/status`
    /// shows them), among the recent events of `/status`.
    fn record(&mut self, recent: Option<(&str, &str)>, entry: Entry) {
        if let Some((kind, detail)) = recent {
            self.status.record_event(kind, detail, self.now.unix_ms);
        }
        self.effects.push(Effect::Journal(entry));
    }

    fn entry(&self, kind: Kind, detail: impl Into<String>) -> Entry {
        Entry::at(self.now.unix_ms, &self.name, kind, detail)
    }

    fn log(&mut self, level: Level, text: impl Into<String>) {
        self.effects.push(Effect::Log {
            level,
            text: text.into(),
        });
    }

    /// "3.1 MB behind the last known primary position 0/5A3F2C8 (seen 2026-…Z), not promotable
    /// since 2026-…Z", as far as it is known.
    fn replication_summary(&self, status: &PolicyStatus) -> String {
        let r = &status.replication;
        let mut parts = Vec::new();
        match (r.lag_bytes, r.primary) {
            (Some(lag), Some(primary)) => parts.push(format!(
                "{} behind the last known primary position {}",
                bytes_text(lag),
                lsn_text(primary)
            )),
            (None, Some(primary)) => parts.push(format!(
                "last known primary position {}, what this standby has is unknown",
                lsn_text(primary)
            )),
            _ => parts.push("the primary's WAL position was never seen".to_string()),
        }
        if let Some(at) = r.primary_seen_at {
            let age = self.now.at.saturating_duration_since(at);
            parts.push(format!(
                "primary last seen {}",
                wall_clock(self.now.unix_ms.saturating_sub(age.as_millis() as u64))
            ));
        }
        if let Some(since) = self.not_promotable_since_unix_ms {
            parts.push(format!("not promotable since {}", wall_clock(since)));
        }
        if let Err(Unpromotable::Behind(Mark { reason, .. })) = status.promotable {
            parts.push(format!("marked because {reason}"));
        }
        parts.join(", ")
    }

    fn refresh_status(&mut self) {
        self.status
            .update_from(&self.instance, self.holds_vips, self.now.at);
        if let Some(policy) = &self.policy {
            let status = policy.status();
            let replication = crate::status::ReplicationView::new(
                &status,
                self.now.at,
                self.not_promotable_since_unix_ms,
            );
            self.status.arbiter = status
                .arbiter
                .as_ref()
                .map(|a| crate::status::ArbiterView::new(a, &self.name, self.now.at));
            self.status
                .update_database(&status, self.wal_receiver.clone(), replication);
        }
    }
}

/// A wall-clock time as the journal shows it (RFC 3339, UTC, seconds).
fn wall_clock(unix_ms: u64) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_millis(unix_ms);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// " (primary at 0/5A3F2C8, this standby had 0/5A10000)", as far as known.
fn mark_numbers(mark: Mark) -> String {
    match (mark.primary, mark.had) {
        (Some(p), Some(h)) => format!(
            " (primary at {}, this standby had {}: {} behind)",
            lsn_text(p),
            lsn_text(h),
            bytes_text(p.saturating_sub(h))
        ),
        (Some(p), None) => format!(" (primary at {})", lsn_text(p)),
        _ => String::new(),
    }
}

/// Why etcd's sync record does not let this standby promote, in words.
fn sync_record_refusal(why: whpg_policy::RecordRefusal) -> String {
    match why {
        whpg_policy::RecordRefusal::NamesNone {
            since_unix_ms: Some(since),
        } => format!(
            "etcd's sync record names none since {}: the primary committed alone",
            wall_clock(since)
        ),
        other => other.to_string(),
    }
}
