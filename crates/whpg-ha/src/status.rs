//! What a node reports about itself: a typed snapshot that the node rebuilds after every input
//! and the daemon publishes on a watch channel, so readers (the HTTP API, the metrics, the CLI
//! through `/status`) never lock the decision loop. Readers depend on this module only, never on
//! the daemon; the CLI deserializes the same types from JSON.

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use whpg_vrrp::{FaultSource, Instance, State, TransitionReason};

use crate::config::Config;

/// How many transitions `/status` keeps.
const RECENT_TRANSITIONS: usize = 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeStatus {
    pub node: String,
    pub address: Ipv4Addr,
    pub vrrp: VrrpStatus,
    /// Virtual addresses as `address/prefix`.
    pub vips: Vec<String>,
    /// Whether this node has the virtual addresses installed right now.
    pub holds_vips: bool,
    /// Held virtual addresses that something else removed from the interface and that are
    /// being put back (`/primary` answers 503 while any is listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vips_missing: Vec<String>,
    pub transitions: VecDeque<TransitionRecord>,
    /// The database side (absent with `database.monitor = false`).
    pub database: Option<DatabaseStatus>,
    /// Recent decisions and actions of the policy (promotion, fencing, VIP), newest last.
    pub events: VecDeque<EventRecord>,
    /// The etcd arbiter, when `[arbiter]` is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arbiter: Option<ArbiterView>,
}

/// The arbiter as `/status` and `whpg-ha status` show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ArbiterView {
    /// etcd answered the latest request (`None`: not asked yet).
    pub reachable: Option<bool>,
    /// Who holds the leader key, as etcd last said (this node's name when it is ours; `None`:
    /// nobody, or unknown).
    pub holder: Option<String>,
    /// The key is this node's now.
    pub held: bool,
    /// While held: how long the lease is certain to last.
    pub lease_left_ms: Option<u64>,
    /// The latest error, with the endpoints and the fix.
    pub error: Option<String>,
    /// Serving past the lease on the standby's confirmation (etcd silent).
    pub failsafe_active: bool,
    /// The lease ran out under this master and it stopped serving.
    pub lease_lost: bool,
    /// Sync modes: etcd's sync record (`<prefix>/sync`) as last read, in words ("names this
    /// node", "names none since ...", "absent", "unknown: ..."); `None`: not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_record: Option<String>,
    /// It was read while this node held the key (final for a promotion).
    #[serde(default)]
    pub sync_record_under_key: bool,
    /// What this primary wrote there and etcd acknowledged: "standby" or "none".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_record_written: Option<String>,
    /// The latest write failed: why, with the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_record_error: Option<String>,
    /// The primary wants to commit alone and waits for etcd to acknowledge "none" first.
    #[serde(default)]
    pub relax_waits_for_record: bool,
}

impl ArbiterView {
    pub fn new(a: &whpg_policy::ArbiterStatus, node: &str, now: Instant) -> ArbiterView {
        use whpg_policy::ArbiterSample;
        let (reachable, holder, error) = match &a.latest {
            None => (None, None, None),
            Some(ArbiterSample::Held { .. }) => (Some(true), Some(node.to_string()), None),
            Some(ArbiterSample::HeldByOther { holder }) => (Some(true), Some(holder.clone()), None),
            Some(ArbiterSample::Free) => (Some(true), None, None),
            Some(ArbiterSample::Unknown { reason }) => {
                // Unknown is not "nobody": while our lease runs, it is still ours.
                (
                    Some(false),
                    a.held.then(|| node.to_string()),
                    Some(reason.clone()),
                )
            }
        };
        ArbiterView {
            reachable,
            holder,
            held: a.held,
            lease_left_ms: a
                .held_until
                .filter(|_| a.held)
                .map(|until| until.saturating_duration_since(now).as_millis() as u64),
            error,
            failsafe_active: a.failsafe_active,
            lease_lost: a.lost,
            sync_record: a.sync_record.as_ref().map(|r| sync_record_text(r, node)),
            sync_record_under_key: a.sync_record_under_key,
            sync_record_written: a.sync_record_written.map(|w| {
                match w {
                    whpg_policy::SyncRecordWrite::Standby => "standby",
                    whpg_policy::SyncRecordWrite::None => "none",
                }
                .to_string()
            }),
            sync_record_error: a.sync_record_error.clone(),
            relax_waits_for_record: a.relax_waits_for_record,
        }
    }

    /// One line: "key held by n1", "key held here, lease 2.3 s left", "etcd unreachable: …".
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if self.held {
            let left = self
                .lease_left_ms
                .map(|ms| format!(", lease {:.1} s left", ms as f64 / 1000.0))
                .unwrap_or_default();
            parts.push(format!("key held here{left}"));
        } else {
            match (&self.holder, self.reachable) {
                (Some(holder), _) => parts.push(format!("key held by {holder}")),
                (None, Some(true)) => parts.push("key free".to_string()),
                (None, Some(false)) => parts.push("key holder unknown".to_string()),
                (None, None) => parts.push("not asked yet".to_string()),
            }
        }
        if self.failsafe_active {
            parts.push("failsafe: serving on the standby's confirmation".to_string());
        }
        if self.lease_lost {
            parts.push("lease lost: not serving".to_string());
        }
        if let Some(error) = &self.error {
            parts.push(format!("etcd unreachable: {error}"));
        }
        if let Some(record) = &self.sync_record {
            parts.push(format!("sync record {record}"));
        }
        if self.relax_waits_for_record {
            parts.push(
                "commits wait: the primary relaxes only once etcd's sync record says none"
                    .to_string(),
            );
        }
        if let Some(error) = &self.sync_record_error {
            parts.push(format!("sync record not written: {error}"));
        }
        parts.join(", ")
    }
}

/// The sync record in words, for node `node`.
fn sync_record_text(record: &whpg_policy::SyncRecord, node: &str) -> String {
    use whpg_policy::SyncRecord;
    match record {
        SyncRecord::NamesThisNode => format!("names {node} (this node)"),
        SyncRecord::NamesNone {
            since_unix_ms: Some(ms),
        } => {
            let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(*ms);
            format!(
                "names none since {}: the primary commits alone",
                humantime::format_rfc3339_seconds(time)
            )
        }
        SyncRecord::NamesNone {
            since_unix_ms: None,
        } => "names none: the primary commits alone".to_string(),
        SyncRecord::NamesOther { node } => format!("names {node}"),
        SyncRecord::Absent => "absent".to_string(),
        SyncRecord::Unknown { reason } => format!("unknown: {reason}"),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatabaseStatus {
    pub role: DbRoleStatus,
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
    /// Replication: on a standby, what it has against its primary and whether it may be
    /// promoted; on a primary, its standby as it lists it.
    #[serde(default)]
    pub replication: Option<ReplicationView>,
}

/// Replication as `/status` and `whpg-ha status` show it. LSNs in PostgreSQL's `X/Y` form.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ReplicationView {
    /// The primary's WAL position (on a standby: the highest it was seen at).
    pub primary_lsn: Option<String>,
    /// What the standby has on disk (on a primary: the flush position it lists for it).
    pub standby_lsn: Option<String>,
    pub lag_bytes: Option<u64>,
    /// How long WAL the primary had has been missing on the standby (0: nothing missing).
    pub lag_ms: Option<u64>,
    /// The primary lists the standby's WAL sender as streaming (`None`: no row, or not seen).
    pub streaming: Option<bool>,
    /// Commits wait for the standby (`sync_state` sync or quorum).
    pub synchronous: Option<bool>,
    /// On a standby: whether it may be promoted were the primary gone now (absent on a primary).
    pub promotable: Option<bool>,
    /// Why not, in words.
    pub not_promotable: Option<String>,
    /// Since when it has been marked not promotable.
    pub not_promotable_since_unix_ms: Option<u64>,
    /// When the live primary was last seen (its WAL position read).
    pub primary_seen_ms_ago: Option<u64>,
    /// `[replication] mode`: `async`, `sync` or `sync-strict`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// On a primary in a sync mode: `synchronous_standby_names` as this daemon last set it (the
    /// standby's quoted `application_name`, or `""`: it commits alone); absent until set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronous_standby_names: Option<String>,
    /// Why it was set so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_reason: Option<String>,
    /// The latest attempt to set it failed: why, and what to fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_error: Option<String>,
}

impl ReplicationView {
    /// From the policy's status at `now`, with the mark's wall-clock time.
    pub fn new(
        policy: &whpg_policy::PolicyStatus,
        now: Instant,
        not_promotable_since_unix_ms: Option<u64>,
    ) -> Option<ReplicationView> {
        use whpg_policy::replication::lsn_text;
        match policy.local_role {
            Some(whpg_policy::DbRole::Primary) => {
                let position = policy.local_position?;
                let row = position.standby;
                let flush = row.and_then(|r| r.flush);
                Some(ReplicationView {
                    primary_lsn: Some(lsn_text(position.current)),
                    standby_lsn: flush.map(lsn_text),
                    lag_bytes: flush.map(|f| position.current.saturating_sub(f)),
                    streaming: Some(row.is_some_and(|r| r.streaming)),
                    synchronous: row.map(|r| r.synchronous),
                    mode: Some(policy.sync.mode.as_str().to_string()),
                    synchronous_standby_names: policy.sync.value.clone(),
                    sync_reason: policy.sync.reason.map(|r| r.to_string()),
                    sync_error: policy.sync.error.clone(),
                    ..ReplicationView::default()
                })
            }
            Some(whpg_policy::DbRole::Standby) => {
                let r = &policy.replication;
                let ms = |at: Instant| now.saturating_duration_since(at).as_millis() as u64;
                Some(ReplicationView {
                    primary_lsn: r.primary.map(lsn_text),
                    standby_lsn: r.have.map(lsn_text),
                    lag_bytes: r.lag_bytes,
                    lag_ms: r.primary.map(|_| r.missing_since.map_or(0, ms)),
                    streaming: r.row.map(|row| row.streaming),
                    synchronous: r.row.map(|row| row.synchronous),
                    promotable: Some(policy.promotable.is_ok()),
                    not_promotable: policy.promotable.err().map(|why| why.to_string()),
                    not_promotable_since_unix_ms: r.mark.and(not_promotable_since_unix_ms),
                    primary_seen_ms_ago: r.primary_seen_at.map(ms),
                    mode: Some(policy.sync.mode.as_str().to_string()),
                    ..ReplicationView::default()
                })
            }
            None => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventRecord {
    pub at_unix_ms: u64,
    pub kind: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VrrpStatus {
    pub state: VrrpState,
    /// Unix time in milliseconds of the last state change (or of start-up).
    pub since_unix_ms: u64,
    pub priority: u8,
    pub configured_priority: u8,
    pub vrid: u8,
    pub version: u8,
    pub advert_interval_ms: u64,
    pub master_down_interval_ms: f64,
    pub faults: Vec<FaultName>,
    pub last_master: Option<MasterStatus>,
    pub counters: Counters,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MasterStatus {
    pub address: String,
    pub priority: u8,
    pub seen_ms_ago: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Counters {
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub priority_zero_sent: u64,
    pub priority_zero_received: u64,
    pub transitions: u64,
    pub address_list_mismatches: u64,
    /// Held virtual addresses removed by something else and put back.
    #[serde(default)]
    pub vips_restored: u64,
    /// Dropped packets by reason (`ttl`, `password`, `checksum`, ...).
    pub dropped: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TransitionRecord {
    pub at_unix_ms: u64,
    pub from: VrrpState,
    pub to: VrrpState,
    pub reason: String,
}

/// The database's role as `/status` shows it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DbRoleStatus {
    Primary,
    Standby,
    Unknown,
}

impl DbRoleStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DbRoleStatus::Primary => "primary",
            DbRoleStatus::Standby => "standby",
            DbRoleStatus::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for DbRoleStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Option<whpg_policy::DbRole>> for DbRoleStatus {
    fn from(role: Option<whpg_policy::DbRole>) -> DbRoleStatus {
        match role {
            Some(whpg_policy::DbRole::Primary) => DbRoleStatus::Primary,
            Some(whpg_policy::DbRole::Standby) => DbRoleStatus::Standby,
            None => DbRoleStatus::Unknown,
        }
    }
}

/// The VRRP state, spelled as keepalived and the logs spell it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum VrrpState {
    #[serde(rename = "INIT")]
    Init,
    #[serde(rename = "BACKUP")]
    Backup,
    #[serde(rename = "MASTER")]
    Master,
    #[serde(rename = "FAULT")]
    Fault,
}

impl From<State> for VrrpState {
    fn from(state: State) -> VrrpState {
        match state {
            State::Initialize => VrrpState::Init,
            State::Backup => VrrpState::Backup,
            State::Master => VrrpState::Master,
            State::Fault => VrrpState::Fault,
        }
    }
}

impl VrrpState {
    pub fn as_str(self) -> &'static str {
        match self {
            VrrpState::Init => "INIT",
            VrrpState::Backup => "BACKUP",
            VrrpState::Master => "MASTER",
            VrrpState::Fault => "FAULT",
        }
    }
}

impl std::fmt::Display for VrrpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cause of the VRRP fault state, as `/status` names it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FaultName {
    Interface,
    Health,
    Isolation,
    Admin,
}

impl From<FaultSource> for FaultName {
    fn from(source: FaultSource) -> FaultName {
        match source {
            FaultSource::Interface => FaultName::Interface,
            FaultSource::Health => FaultName::Health,
            FaultSource::Isolation => FaultName::Isolation,
            FaultSource::Admin => FaultName::Admin,
        }
    }
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
    /// The status of a node that has not started its instance yet.
    pub fn initial(config: &Config, now_unix_ms: u64) -> NodeStatus {
        NodeStatus {
            node: config.local.name.clone(),
            address: config.local.address,
            vrrp: VrrpStatus {
                state: VrrpState::Init,
                since_unix_ms: now_unix_ms,
                priority: config.local.priority,
                configured_priority: config.local.priority,
                vrid: config.vrrp.vrid,
                version: config.vrrp.version.number(),
                advert_interval_ms: config.vrrp.advert_interval.as_millis() as u64,
                master_down_interval_ms: 0.0,
                faults: Vec::new(),
                last_master: None,
                counters: Counters::default(),
            },
            vips: config
                .vips
                .iter()
                .map(|v| format!("{}/{}", v.address, v.prefix_len))
                .collect(),
            holds_vips: false,
            vips_missing: Vec::new(),
            transitions: VecDeque::new(),
            database: None,
            events: VecDeque::new(),
            arbiter: None,
        }
    }

    pub fn record_event(&mut self, kind: &str, detail: &str, now_unix_ms: u64) {
        if self.events.len() == RECENT_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(EventRecord {
            at_unix_ms: now_unix_ms,
            kind: kind.to_string(),
            detail: detail.to_string(),
        });
    }

    pub fn update_database(
        &mut self,
        policy: &whpg_policy::PolicyStatus,
        wal_receiver: Option<WalReceiverStatus>,
        replication: Option<ReplicationView>,
    ) {
        self.database = Some(DatabaseStatus {
            role: policy.local_role.into(),
            healthy: policy.local_healthy,
            timeline: policy.local_timeline,
            needs_rejoin: policy.needs_rejoin,
            fenced: policy.fenced.map(|f| format!("{f:?}")),
            isolated: policy.isolated,
            maintenance: policy.maintenance,
            promoting: policy.promoting,
            promotion_gave_up: policy.promotion_gave_up,
            promotion_hold: policy.hold.map(|h| match h {
                whpg_policy::Hold::NotPromotable(why) => format!("NotPromotable: {why}"),
                other => format!("{other:?}"),
            }),
            wal_receiver,
            replication,
        });
    }

    pub fn record_transition(
        &mut self,
        from: State,
        to: State,
        reason: &TransitionReason,
        now: u64,
    ) {
        self.record_event(
            "vrrp",
            &format!("{from} -> {to}: {}", describe_reason(reason)),
            now,
        );
        self.vrrp.since_unix_ms = now;
        if self.transitions.len() == RECENT_TRANSITIONS {
            self.transitions.pop_front();
        }
        self.transitions.push_back(TransitionRecord {
            at_unix_ms: now,
            from: from.into(),
            to: to.into(),
            reason: describe_reason(reason),
        });
    }

    /// Refresh the parts that come from the instance.
    pub fn update_from(&mut self, instance: &Instance, holds_vips: bool, now: Instant) {
        let stats = instance.stats();
        let config = instance.config();
        self.holds_vips = holds_vips;
        self.vrrp.state = instance.state().into();
        self.vrrp.priority = instance.priority();
        self.vrrp.vrid = config.vrid;
        self.vrrp.version = config.version.number();
        self.vrrp.advert_interval_ms = config.advert_interval.as_duration().as_millis() as u64;
        self.vrrp.master_down_interval_ms = instance.master_down_interval().as_secs_f64() * 1000.0;
        self.vrrp.faults = instance.faults().map(FaultName::from).collect();
        self.vrrp.last_master = instance.last_master().map(|m| MasterStatus {
            address: m.address.to_string(),
            priority: m.priority,
            seen_ms_ago: now.saturating_duration_since(m.last_seen).as_millis() as u64,
        });
        let vips_restored = self.vrrp.counters.vips_restored;
        self.vrrp.counters = Counters {
            vips_restored,
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

/// A primary's database status in `[replication] mode = "sync"`, waiting for its standby.
#[cfg(test)]
pub(crate) fn test_sync_primary() -> DatabaseStatus {
    DatabaseStatus {
        role: DbRoleStatus::Primary,
        healthy: true,
        timeline: Some(1),
        needs_rejoin: false,
        fenced: None,
        isolated: false,
        maintenance: false,
        promoting: false,
        promotion_gave_up: false,
        promotion_hold: None,
        wal_receiver: None,
        replication: Some(ReplicationView {
            primary_lsn: Some("0/3000060".into()),
            standby_lsn: Some("0/3000060".into()),
            lag_bytes: Some(0),
            streaming: Some(true),
            synchronous: Some(true),
            mode: Some("sync".into()),
            synchronous_standby_names: Some("\"b\"".into()),
            sync_reason: Some("the standby streams and is caught up".into()),
            ..ReplicationView::default()
        }),
    }
}

/// A status as a test of a reader needs one: node `a` of a two-node file, BACKUP.
#[cfg(test)]
pub(crate) fn test_status() -> NodeStatus {
    let config = crate::config::testing::TestConfig::pair().parse("a");
    let mut status = NodeStatus::initial(&config, 0);
    status.vrrp.state = VrrpState::Backup;
    status
}

#[cfg(test)]
mod arbiter_view_tests {
    use std::time::{Duration, Instant};

    use whpg_policy::{ArbiterSample, ArbiterStatus};

    use super::ArbiterView;

    fn status(latest: ArbiterSample, held_until: Option<Instant>, now: Instant) -> ArbiterStatus {
        ArbiterStatus {
            latest: Some(latest),
            held: held_until.is_some_and(|t| now < t),
            held_until,
            lost: false,
            failsafe_active: false,
            sync_record: None,
            sync_record_under_key: false,
            sync_record_written: None,
            sync_record_error: None,
            relax_waits_for_record: false,
        }
    }

    #[test]
    fn the_view_says_who_holds_the_key_and_how_long_the_lease_lasts() {
        let now = Instant::now();
        let until = now + Duration::from_millis(2300);
        let held = ArbiterView::new(
            &status(ArbiterSample::Held { valid_until: until }, Some(until), now),
            "a",
            now,
        );
        assert_eq!(
            (
                held.reachable,
                held.holder.as_deref(),
                held.held,
                held.lease_left_ms
            ),
            (Some(true), Some("a"), true, Some(2300))
        );
        assert_eq!(held.summary(), "key held here, lease 2.3 s left");

        let other = ArbiterView::new(
            &status(ArbiterSample::HeldByOther { holder: "b".into() }, None, now),
            "a",
            now,
        );
        assert_eq!(other.summary(), "key held by b");
        assert_eq!(other.lease_left_ms, None);

        let free = ArbiterView::new(&status(ArbiterSample::Free, None, now), "a", now);
        assert_eq!(free.summary(), "key free");
    }

    #[test]
    fn an_etcd_error_is_shown_with_its_reason_and_is_not_nobody() {
        let now = Instant::now();
        let until = now + Duration::from_secs(1);
        let reason = "etcd read at http://10.0.0.3:2379 gave no answer within 1s".to_string();
        let view = ArbiterView::new(
            &status(
                ArbiterSample::Unknown {
                    reason: reason.clone(),
                },
                Some(until),
                now,
            ),
            "a",
            now,
        );
        assert_eq!(view.reachable, Some(false));
        assert_eq!(view.holder.as_deref(), Some("a"), "our lease still runs");
        assert!(view.summary().contains(&reason), "{}", view.summary());

        let view = ArbiterView::new(
            &status(ArbiterSample::Unknown { reason }, None, now),
            "a",
            now,
        );
        assert_eq!(view.holder, None);
        assert!(
            view.summary().starts_with("key holder unknown"),
            "{}",
            view.summary()
        );
    }
}
