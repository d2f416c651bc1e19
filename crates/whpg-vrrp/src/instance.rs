//! One VRRP virtual router instance: the RFC 5798 §6 state machine, extended the way keepalived
//! extends it (fault state, re-advert on a lower-priority advert, runtime priority changes).
//!
//! [`Instance::handle`] takes an [`Event`] and the current time and returns the [`Action`]s to
//! carry out. The instance never reads a clock and never performs IO; its one timer lives in the
//! state ([`Role`]) and is reported with [`Action::ArmTimer`] and [`Instance::poll_timeout`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::ip::parse_ipv4;
use crate::packet::{
    self, Advert, Auth, DecodeOptions, V3Checksum, Version, MULTICAST_V4, MULTICAST_V6,
};
use crate::receive::{self, DropReason, Expectations, PacketMeta};
use crate::timers::{master_down_interval, skew_time};
use crate::Interval;

/// Priority of the address owner: becomes master at once and is never preempted.
pub const PRIORITY_OWNER: u8 = 255;
/// Priority a master advertises when it gives up mastership.
pub const PRIORITY_RESIGN: u8 = 0;

/// Sorted and without duplicates, so the set reads well in logs and compares as a set.
fn normalize_priorities(mut set: Vec<u8>) -> Vec<u8> {
    set.sort_unstable();
    set.dedup();
    set
}

/// How adverts are addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// To 224.0.0.18 / ff02::12.
    Multicast,
    /// To each peer; adverts are accepted only from them.
    Unicast { peers: Vec<IpAddr> },
}

/// Static settings of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    pub version: Version,
    pub vrid: u8,
    /// Configured priority, 1..=255. Runtime changes go through [`Event::SetPriority`].
    pub priority: u8,
    pub advert_interval: Interval,
    /// Whether a higher-priority backup takes over from a lower-priority master.
    pub preempt: bool,
    /// After start-up, how long a higher-priority backup waits before preempting.
    pub preempt_delay: Duration,
    /// Our address on the VRRP interface: advert source and tie-breaker.
    pub primary_address: IpAddr,
    pub virtual_addresses: Vec<IpAddr>,
    /// v2 only.
    pub auth: Auth,
    pub transport: Transport,
    /// Form of the v3 IPv4 checksum we send and expect.
    pub v3_checksum: V3Checksum,
    pub accept_either_checksum: bool,
    /// As master, answer a lower-priority advert with an advert and gratuitous ARPs at once
    /// (keepalived's behaviour; heals a split brain quickly).
    pub answer_lower_priority: bool,
    /// The priorities a sender may advertise (kept sorted, without duplicates); an advert with
    /// another is dropped as [`DropReason::Priority`] and never reaches the state machine.
    /// `None` accepts any, as keepalived does. Replaced at run time with
    /// [`Event::SetAcceptedPriorities`].
    pub accepted_priorities: Option<Vec<u8>>,
}

/// The protocol state, with the one timer each state runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Not started, or shut down.
    Initialize,
    /// Listening; takes over when no advert arrives before `master_down_at`.
    Backup { master_down_at: Instant },
    /// Advertising; the next advert is due at `advert_at`.
    Master { advert_at: Instant },
    /// Cannot serve (interface down, failing health, ...); ignores adverts until every fault clears.
    Fault,
}

/// The state name without timer data, for reports and comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    Initialize,
    Backup,
    Master,
    Fault,
}

impl Role {
    pub fn state(&self) -> State {
        match self {
            Role::Initialize => State::Initialize,
            Role::Backup { .. } => State::Backup,
            Role::Master { .. } => State::Master,
            Role::Fault => State::Fault,
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Initialize => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        })
    }
}

/// Independent causes of the fault state; the instance leaves it when none is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultSource {
    /// The VRRP interface lost its link or its address.
    Interface,
    /// A tracked health check failed (e.g. the local database).
    Health,
    /// The node cannot reach its peer nor its witnesses.
    Isolation,
    /// An operator or a policy decision took the instance out of service.
    Admin,
}

/// Inputs to the state machine.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// Leave Initialize (RFC 5798 §6.4.1).
    Startup,
    /// Stop: a master resigns with a priority-0 advert and releases its addresses.
    Shutdown,
    /// The current time may have reached the armed timer; early or stale wake-ups do nothing.
    Timeout,
    /// A whole IPv4 datagram as a raw socket returns it (header included).
    Ipv4Datagram(&'a [u8]),
    /// A VRRP payload with the IP fields the socket reported (IPv6, or pre-parsed IPv4).
    Packet { meta: PacketMeta, payload: &'a [u8] },
    /// A new effective priority (tracking), 1..=255; 0 is refused, use [`Event::Resign`].
    SetPriority(u8),
    /// Whether this instance, as backup, takes over from a lower-priority master (e.g. on while
    /// it is the one that can serve, whatever the configured default).
    SetPreempt(bool),
    /// Give up mastership now (priority-0 advert, release addresses) but keep listening as backup.
    Resign,
    /// A fault source became active or cleared.
    SetFault { source: FaultSource, active: bool },
    /// Replace [`InstanceConfig::accepted_priorities`] (a reload changed the peer's priority).
    SetAcceptedPriorities(Option<Vec<u8>>),
}

/// Why a transition happened, for logs and the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionReason {
    Startup,
    /// Our priority is 255.
    AddressOwner,
    /// No advert from a master within Master_Down_Interval.
    MasterDown,
    /// The master advertised priority 0 and we waited Skew_Time.
    MasterResigned,
    /// A higher-priority master (or an equal one with a higher address) exists.
    Preempted {
        by: IpAddr,
        priority: u8,
    },
    Shutdown,
    Resigned,
    Fault(FaultSource),
    FaultCleared,
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub dst: IpAddr,
    pub src: IpAddr,
    /// The VRRP message; the IP layer adds the header (TTL 255, TOS 0xC0).
    pub payload: Vec<u8>,
    /// Priority carried, for logs (0 = resigning).
    pub priority: u8,
}

/// Outputs of the state machine, in the order they must be carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send(Transmit),
    /// Install the virtual addresses (the caller may defer this until its service is ready).
    TakeAddresses,
    /// Remove the virtual addresses.
    ReleaseAddresses,
    /// Announce the virtual addresses with gratuitous ARP / unsolicited neighbour adverts.
    GratuitousArp,
    Transition {
        from: State,
        to: State,
        reason: TransitionReason,
    },
    /// Wake the instance with [`Event::Timeout`] at this time (replaces any earlier request).
    ArmTimer(Instant),
    /// No timer is needed any more.
    DisarmTimer,
    /// A packet was refused; already counted in [`Stats::drops`].
    Dropped {
        src: Option<IpAddr>,
        reason: DropReason,
    },
}

/// The last master heard from, for status reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MasterInfo {
    pub address: IpAddr,
    pub priority: u8,
    pub interval: Interval,
    pub last_seen: Instant,
}

/// Counters since start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub priority_zero_sent: u64,
    pub priority_zero_received: u64,
    pub transitions: u64,
    /// Accepted adverts whose address list differs from ours (keepalived logs, does not drop).
    pub address_list_mismatches: u64,
    /// Dropped packets by [`DropReason::label`].
    pub drops: BTreeMap<&'static str, u64>,
}

/// One VRRP instance.
#[derive(Debug)]
pub struct Instance {
    config: InstanceConfig,
    role: Role,
    priority: u8,
    /// Master_Adver_Interval: ours when master, the master's (v3) when backup.
    master_interval: Interval,
    faults: BTreeSet<FaultSource>,
    started_at: Option<Instant>,
    master: Option<MasterInfo>,
    stats: Stats,
    out: Vec<Action>,
}

impl Instance {
    pub fn new(mut config: InstanceConfig) -> Instance {
        config.accepted_priorities = config.accepted_priorities.map(normalize_priorities);
        Instance {
            priority: config.priority,
            master_interval: config.advert_interval,
            config,
            role: Role::Initialize,
            faults: BTreeSet::new(),
            started_at: None,
            master: None,
            stats: Stats::default(),
            out: Vec::new(),
        }
    }

    pub fn config(&self) -> &InstanceConfig {
        &self.config
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn state(&self) -> State {
        self.role.state()
    }

    /// Effective priority (configured, or as last set by tracking).
    pub fn priority(&self) -> u8 {
        self.priority
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn faults(&self) -> impl Iterator<Item = FaultSource> + '_ {
        self.faults.iter().copied()
    }

    /// The last master heard from while not master ourselves.
    pub fn last_master(&self) -> Option<MasterInfo> {
        self.master
    }

    /// Master_Down_Interval as it stands now (depends on the master's interval and our priority).
    pub fn master_down_interval(&self) -> Duration {
        master_down_interval(self.config.version, self.master_interval, self.priority)
    }

    /// When the instance next needs [`Event::Timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.role {
            Role::Backup { master_down_at } => Some(master_down_at),
            Role::Master { advert_at } => Some(advert_at),
            Role::Initialize | Role::Fault => None,
        }
    }

    /// Feed one event; returns what to do, in order.
    pub fn handle(&mut self, event: Event<'_>, now: Instant) -> Vec<Action> {
        match event {
            Event::Startup => self.on_startup(now),
            Event::Shutdown => self.on_shutdown(),
            Event::Timeout => self.on_timeout(now),
            Event::Ipv4Datagram(bytes) => self.on_ipv4_datagram(bytes, now),
            Event::Packet { meta, payload } => self.on_packet(meta, payload, now),
            Event::SetPriority(priority) => self.on_set_priority(priority, now),
            Event::SetPreempt(preempt) => self.config.preempt = preempt,
            Event::Resign => self.on_resign(now),
            Event::SetFault { source, active } => self.on_set_fault(source, active, now),
            Event::SetAcceptedPriorities(set) => {
                self.config.accepted_priorities = set.map(normalize_priorities);
            }
        }
        std::mem::take(&mut self.out)
    }

    fn on_startup(&mut self, now: Instant) {
        if self.role != Role::Initialize {
            return;
        }
        self.started_at = Some(now);
        if let Some(&source) = self.faults.iter().next() {
            self.enter_fault(source);
        } else {
            self.start(now, TransitionReason::Startup);
        }
    }

    /// RFC 5798 §6.4.1: the owner becomes master at once, everyone else waits as backup.
    fn start(&mut self, now: Instant, reason: TransitionReason) {
        self.master_interval = self.config.advert_interval;
        if self.priority == PRIORITY_OWNER {
            self.become_master(now, TransitionReason::AddressOwner);
        } else {
            let at = now + self.master_down_interval();
            self.set_role(Role::Backup { master_down_at: at }, reason);
        }
    }

    fn on_shutdown(&mut self) {
        match self.role {
            Role::Initialize => return,
            Role::Master { .. } => self.resign_advert(),
            Role::Backup { .. } | Role::Fault => {}
        }
        self.set_role(Role::Initialize, TransitionReason::Shutdown);
        self.started_at = None;
    }

    fn on_timeout(&mut self, now: Instant) {
        match self.role {
            Role::Backup { master_down_at } if now >= master_down_at => {
                let reason = if self.master.is_some_and(|m| m.priority == PRIORITY_RESIGN) {
                    TransitionReason::MasterResigned
                } else {
                    TransitionReason::MasterDown
                };
                self.become_master(now, reason);
            }
            Role::Master { advert_at } if now >= advert_at => {
                self.send_advert(self.priority);
                self.arm(Role::Master {
                    advert_at: now + self.config.advert_interval.as_duration(),
                });
            }
            _ => {}
        }
    }

    fn on_ipv4_datagram(&mut self, bytes: &[u8], now: Instant) {
        let datagram = match parse_ipv4(bytes) {
            Ok(d) => d,
            Err(e) => return self.drop_packet(None, DropReason::BadIpHeader(e)),
        };
        if datagram.protocol != packet::IP_PROTOCOL {
            let reason = DropReason::NotVrrp {
                protocol: datagram.protocol,
            };
            return self.drop_packet(Some(datagram.src.into()), reason);
        }
        let meta = PacketMeta {
            src: datagram.src.into(),
            dst: datagram.dst.into(),
            ttl: datagram.ttl,
        };
        self.on_packet(meta, datagram.payload, now);
    }

    fn on_packet(&mut self, meta: PacketMeta, payload: &[u8], now: Instant) {
        let options = DecodeOptions {
            v3_checksum: self.config.v3_checksum,
            accept_either_checksum: self.config.accept_either_checksum,
        };
        let advert = match packet::decode(payload, meta.src, meta.dst, &options) {
            Ok(advert) => advert,
            Err(e) => return self.drop_packet(Some(meta.src), DropReason::Malformed(e)),
        };
        let expectations = Expectations {
            version: self.config.version,
            vrid: self.config.vrid,
            auth: &self.config.auth,
            interval: self.config.advert_interval,
            own_address: self.config.primary_address,
            unicast_peers: match &self.config.transport {
                Transport::Multicast => None,
                Transport::Unicast { peers } => Some(peers),
            },
            multicast_group: self.multicast_group(),
            accepted_priorities: self.config.accepted_priorities.as_deref(),
        };
        if let Err(reason) = receive::check(&expectations, &meta, &advert) {
            return self.drop_packet(Some(meta.src), reason);
        }
        self.stats.adverts_received += 1;
        if advert.priority == PRIORITY_RESIGN {
            self.stats.priority_zero_received += 1;
        }
        if advert.addresses != self.config.virtual_addresses {
            self.stats.address_list_mismatches += 1;
        }
        self.on_advert(meta.src, &advert, now);
    }

    /// RFC 5798 §6.4.2 (backup) and §6.4.3 (master), plus keepalived's answer to a lower priority.
    fn on_advert(&mut self, src: IpAddr, advert: &Advert, now: Instant) {
        match self.role {
            Role::Initialize | Role::Fault => {}
            Role::Backup { .. } => {
                self.master = Some(MasterInfo {
                    address: src,
                    priority: advert.priority,
                    interval: advert.interval,
                    last_seen: now,
                });
                if advert.priority == PRIORITY_RESIGN {
                    let skew = skew_time(self.config.version, self.master_interval, self.priority);
                    self.arm(Role::Backup {
                        master_down_at: now + skew,
                    });
                } else if advert.priority >= self.priority || !self.may_preempt(now) {
                    if self.config.version == Version::V3 {
                        self.master_interval = advert.interval;
                    }
                    let at = now + self.master_down_interval();
                    self.arm(Role::Backup { master_down_at: at });
                }
                // Otherwise a lower-priority master: ignore it and let the timer take over.
            }
            Role::Master { .. } => {
                if advert.priority == PRIORITY_RESIGN {
                    self.send_advert(self.priority);
                    self.arm(Role::Master {
                        advert_at: now + self.config.advert_interval.as_duration(),
                    });
                } else if self.outranked_by(src, advert.priority) {
                    if self.config.version == Version::V3 {
                        self.master_interval = advert.interval;
                    }
                    self.master = Some(MasterInfo {
                        address: src,
                        priority: advert.priority,
                        interval: advert.interval,
                        last_seen: now,
                    });
                    self.out.push(Action::ReleaseAddresses);
                    let at = now + self.master_down_interval();
                    let reason = TransitionReason::Preempted {
                        by: src,
                        priority: advert.priority,
                    };
                    self.set_role(Role::Backup { master_down_at: at }, reason);
                } else if self.config.answer_lower_priority {
                    // The sender believes it is master: tell it otherwise now, not at our next
                    // advert, and re-announce our addresses so switches and hosts relearn them.
                    self.send_advert(self.priority);
                    self.out.push(Action::GratuitousArp);
                    self.arm(Role::Master {
                        advert_at: now + self.config.advert_interval.as_duration(),
                    });
                }
            }
        }
    }

    fn on_set_priority(&mut self, priority: u8, now: Instant) {
        if priority == PRIORITY_RESIGN || priority == self.priority {
            return;
        }
        self.priority = priority;
        if let Role::Master { .. } = self.role {
            // Tell the backups at once so a preempting one can act on it.
            self.send_advert(priority);
            self.arm(Role::Master {
                advert_at: now + self.config.advert_interval.as_duration(),
            });
        }
    }

    fn on_resign(&mut self, now: Instant) {
        if let Role::Master { .. } = self.role {
            self.resign_advert();
            self.master_interval = self.config.advert_interval;
            let at = now + self.master_down_interval();
            self.set_role(
                Role::Backup { master_down_at: at },
                TransitionReason::Resigned,
            );
        }
    }

    fn on_set_fault(&mut self, source: FaultSource, active: bool, now: Instant) {
        if active {
            if self.faults.insert(source)
                && self.role != Role::Initialize
                && self.role != Role::Fault
            {
                self.enter_fault(source);
            }
        } else if self.faults.remove(&source) && self.faults.is_empty() && self.role == Role::Fault
        {
            self.start(now, TransitionReason::FaultCleared);
        }
    }

    fn enter_fault(&mut self, source: FaultSource) {
        if let Role::Master { .. } = self.role {
            self.resign_advert();
        }
        self.set_role(Role::Fault, TransitionReason::Fault(source));
    }

    fn become_master(&mut self, now: Instant, reason: TransitionReason) {
        self.master = None;
        self.master_interval = self.config.advert_interval;
        self.send_advert(self.priority);
        self.out.push(Action::TakeAddresses);
        self.out.push(Action::GratuitousArp);
        let at = now + self.config.advert_interval.as_duration();
        self.set_role(Role::Master { advert_at: at }, reason);
    }

    /// Priority-0 advert and address release: the backups take over after Skew_Time.
    fn resign_advert(&mut self) {
        self.send_advert(PRIORITY_RESIGN);
        self.out.push(Action::ReleaseAddresses);
    }

    /// RFC 5798 §6.4.3: a higher priority wins; an equal one is broken by the higher address.
    fn outranked_by(&self, src: IpAddr, priority: u8) -> bool {
        priority > self.priority || (priority == self.priority && src > self.config.primary_address)
    }

    fn may_preempt(&self, now: Instant) -> bool {
        let delay_over = self
            .started_at
            .is_none_or(|t| now.duration_since(t) >= self.config.preempt_delay);
        self.config.preempt && delay_over
    }

    fn multicast_group(&self) -> IpAddr {
        match self.config.primary_address {
            IpAddr::V4(_) => IpAddr::V4(MULTICAST_V4),
            IpAddr::V6(_) => IpAddr::V6(MULTICAST_V6),
        }
    }

    fn send_advert(&mut self, priority: u8) {
        let advert = Advert {
            version: self.config.version,
            vrid: self.config.vrid,
            priority,
            interval: self.config.advert_interval,
            auth: self.config.auth.clone(),
            addresses: self.config.virtual_addresses.clone(),
        };
        let src = self.config.primary_address;
        let destinations = match &self.config.transport {
            Transport::Multicast => vec![self.multicast_group()],
            Transport::Unicast { peers } => peers.clone(),
        };
        for dst in destinations {
            // The configuration is validated before an instance is built, so encoding cannot
            // fail here; if it ever did, sending nothing is the safe outcome.
            if let Ok(payload) = packet::encode(&advert, src, dst, self.config.v3_checksum) {
                self.stats.adverts_sent += 1;
                if priority == PRIORITY_RESIGN {
                    self.stats.priority_zero_sent += 1;
                }
                self.out.push(Action::Send(Transmit {
                    dst,
                    src,
                    payload,
                    priority,
                }));
            }
        }
    }

    fn drop_packet(&mut self, src: Option<IpAddr>, reason: DropReason) {
        *self.stats.drops.entry(reason.label()).or_default() += 1;
        self.out.push(Action::Dropped { src, reason });
    }

    /// Change the timer without changing the state.
    fn arm(&mut self, role: Role) {
        debug_assert_eq!(role.state(), self.role.state());
        self.role = role;
        self.push_timer();
    }

    fn set_role(&mut self, role: Role, reason: TransitionReason) {
        let from = self.role.state();
        self.role = role;
        if from != role.state() {
            self.stats.transitions += 1;
            self.out.push(Action::Transition {
                from,
                to: role.state(),
                reason,
            });
        }
        self.push_timer();
    }

    fn push_timer(&mut self) {
        self.out.push(match self.poll_timeout() {
            Some(at) => Action::ArmTimer(at),
            None => Action::DisarmTimer,
        });
    }
}
