//! What the daemon reports about itself: a snapshot rebuilt after every batch of actions and
//! published on a watch channel, so readers (the HTTP API) never lock the VRRP loop.

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use whpg_vrrp::{Instance, State, TransitionReason};

/// How many transitions `/status` keeps.
const RECENT_TRANSITIONS: usize = 20;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeStatus {
    pub node: String,
    pub address: Ipv4Addr,
    pub vrrp: VrrpStatus,
    /// Virtual addresses as `address/prefix`.
    pub vips: Vec<String>,
    /// Whether this node has the virtual addresses installed right now.
    pub holds_vips: bool,
    pub transitions: VecDeque<TransitionRecord>,
    /// The database side (absent with `database.monitor = false`).
    pub database: Option<DatabaseStatus>,
    /// Recent decisions and actions of the policy (promotion, fencing, VIP), newest last.
    pub events: VecDeque<EventRecord>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DatabaseStatus {
    /// `primary`, `standby` or `unknown`.
    pub role: String,
    pub healthy: bool,
    pub timeline: Option<u32>,
    pub needs_rejoin: bool,
    pub fenced: Option<String>,
    pub isolated: bool,
    pub maintenance: bool,
    pub promoting: bool,
    pub promotion_gave_up: bool,
    /// Why a promotion is being held back right now, if it is.
    pub promotion_hold: Option<String>,
    /// The local standby's WAL receiver, from the latest probe (absent on a primary, or when the
    /// standby could not be queried).
    pub wal_receiver: Option<WalReceiverStatus>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WalReceiverStatus {
    /// `pg_stat_wal_receiver.status = 'streaming'`.
    pub streaming: bool,
    /// Age of the last message from the primary when the sample was taken.
    pub last_message_ms_ago: Option<u64>,
}

impl WalReceiverStatus {
    /// From the observation the policy gets.
    pub fn from_sample(wal: &whpg_policy::WalReceiver) -> WalReceiverStatus {
        WalReceiverStatus {
            streaming: wal.streaming,
            last_message_ms_ago: wal.last_message_age.map(|a| a.as_millis() as u64),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EventRecord {
    pub at_unix_ms: u64,
    pub kind: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VrrpStatus {
    pub state: String,
    /// Unix time in milliseconds of the last state change (or of start-up).
    pub since_unix_ms: u64,
    pub priority: u8,
    pub configured_priority: u8,
    pub vrid: u8,
    pub version: u8,
    pub advert_interval_ms: u64,
    pub master_down_interval_ms: f64,
    pub faults: Vec<String>,
    pub last_master: Option<MasterStatus>,
    pub counters: Counters,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MasterStatus {
    pub address: String,
    pub priority: u8,
    pub seen_ms_ago: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Counters {
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub priority_zero_sent: u64,
    pub priority_zero_received: u64,
    pub transitions: u64,
    pub address_list_mismatches: u64,
    /// Dropped packets by reason (`ttl`, `password`, `checksum`, ...).
    pub dropped: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TransitionRecord {
    pub at_unix_ms: u64,
    pub from: String,
    pub to: String,
    pub reason: String,
}

pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Human-readable reason, as it appears in logs, `/status` and the journal.
pub fn describe_reason(reason: &TransitionReason) -> String {
    match reason {
        TransitionReason::Startup => "start-up".into(),
        TransitionReason::AddressOwner => "priority 255: address owner".into(),
        TransitionReason::MasterDown => {
            "no advert from the master within Master_Down_Interval".into()
        }
        TransitionReason::MasterResigned => "the master resigned (priority 0)".into(),
        TransitionReason::Preempted { by, priority } => {
            format!("{by} advertises priority {priority}, which outranks us")
        }
        TransitionReason::Shutdown => "shutting down".into(),
        TransitionReason::Resigned => "resigned".into(),
        TransitionReason::Fault(source) => format!("fault: {source:?}").to_lowercase(),
        TransitionReason::FaultCleared => "fault cleared".into(),
    }
}

/// How many events `/status` keeps.
const RECENT_EVENTS: usize = 50;

impl NodeStatus {
    pub fn record_event(&mut self, kind: &str, detail: &str) {
        if self.events.len() == RECENT_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(EventRecord {
            at_unix_ms: unix_ms(SystemTime::now()),
            kind: kind.to_string(),
            detail: detail.to_string(),
        });
    }

    pub fn update_database(
        &mut self,
        policy: &whpg_policy::PolicyStatus,
        wal_receiver: Option<WalReceiverStatus>,
    ) {
        self.database = Some(DatabaseStatus {
            role: match policy.local_role {
                Some(whpg_policy::DbRole::Primary) => "primary",
                Some(whpg_policy::DbRole::Standby) => "standby",
                None => "unknown",
            }
            .to_string(),
            healthy: policy.local_healthy,
            timeline: policy.local_timeline,
            needs_rejoin: policy.needs_rejoin,
            fenced: policy.fenced.map(|f| format!("{f:?}")),
            isolated: policy.isolated,
            maintenance: policy.maintenance,
            promoting: policy.promoting,
            promotion_gave_up: policy.promotion_gave_up,
            promotion_hold: policy.hold.map(|h| format!("{h:?}")),
            wal_receiver,
        });
    }

    pub fn record_transition(&mut self, from: State, to: State, reason: &TransitionReason) {
        let now = unix_ms(SystemTime::now());
        self.record_event(
            "vrrp",
            &format!("{from} -> {to}: {}", describe_reason(reason)),
        );
        self.vrrp.since_unix_ms = now;
        if self.transitions.len() == RECENT_TRANSITIONS {
            self.transitions.pop_front();
        }
        self.transitions.push_back(TransitionRecord {
            at_unix_ms: now,
            from: from.to_string(),
            to: to.to_string(),
            reason: describe_reason(reason),
        });
    }

    /// Refresh the parts that come from the instance.
    pub fn update_from(&mut self, instance: &Instance, holds_vips: bool, now: Instant) {
        let stats = instance.stats();
        let config = instance.config();
        self.holds_vips = holds_vips;
        self.vrrp.state = instance.state().to_string();
        self.vrrp.priority = instance.priority();
        self.vrrp.vrid = config.vrid;
        self.vrrp.version = config.version.number();
        self.vrrp.advert_interval_ms = config.advert_interval.as_duration().as_millis() as u64;
        self.vrrp.master_down_interval_ms = instance.master_down_interval().as_secs_f64() * 1000.0;
        self.vrrp.faults = instance
            .faults()
            .map(|f| format!("{f:?}").to_lowercase())
            .collect();
        self.vrrp.last_master = instance.last_master().map(|m| MasterStatus {
            address: m.address.to_string(),
            priority: m.priority,
            seen_ms_ago: now.saturating_duration_since(m.last_seen).as_millis() as u64,
        });
        self.vrrp.counters = Counters {
            adverts_sent: stats.adverts_sent,
            adverts_received: stats.adverts_received,
            priority_zero_sent: stats.priority_zero_sent,
            priority_zero_received: stats.priority_zero_received,
            transitions: stats.transitions,
            address_list_mismatches: stats.address_list_mismatches,
            dropped: stats
                .drops
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        };
    }
}
