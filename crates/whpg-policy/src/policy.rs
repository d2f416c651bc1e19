//! The HA rules: from observations to decisions. Every safety invariant of the design
//! (`docs/design.md`) lives here.
//!
//! The policy is level-triggered: after each input it recomputes what should be true (priority,
//! faults, VIP, promotion, fencing) from everything it knows and emits only the differences. That
//! keeps each rule in one place and makes a missed or repeated input harmless.
//!
//! | rule | method | tests (`tests/rules.rs`; pair: `whpg-ha/tests/pair_simulation.rs`) |
//! | --- | --- | --- |
//! | start-up gate: no election before both databases are known | `startup_gate` | `start_up_gate_keeps_the_node_out_of_the_election_until_it_knows_both_databases`, `a_transient_mastership_at_start_up_never_promotes`; pair `a_simultaneous_start_elects_the_primary_and_never_promotes_the_standby` |
//! | a rebuilt standby is in service again | `return_to_service` | `a_planned_switchover_demotes_the_primary_and_promotes_past_maintenance` |
//! | 4: an old primary is fenced, never serves | `fence_old_primary` | `an_old_primary_on_an_older_timeline_is_fenced_and_never_serves`, `an_old_primary_restarted_after_a_crash_is_fenced_on_its_first_answer`; pair `an_old_primary_restarted_after_a_failover_is_fenced_and_never_takes_the_vip` |
//! | 5: an isolated master drops the VIP and fences | `isolation` | `an_isolated_primary_drops_the_vip_and_fences_its_database`, `a_lost_peer_with_witnesses_reachable_is_not_isolation`, `a_database_fenced_for_isolation_serves_again_only_on_a_fresh_answer_as_primary`; pair `an_isolated_master_drops_the_vip_and_fences_its_database` |
//! | a primary outranks a standby; the newest primary outranks an old one; a healthy standby's bonus stays below a primary and waits one Master_Down_Interval after joining | `priority` | `a_healthy_primary_outranks_any_standby_and_preempts`, `the_newest_primary_outranks_an_old_one_until_it_is_seen_as_a_standby`, `a_healthy_standby_takes_its_bonus_and_stays_below_a_healthy_primary`, `the_standby_bonus_waits_one_master_down_interval_after_joining_the_election`; pair `a_healed_partition_leaves_the_vip_with_the_newest_primary` |
//! | a failed database resigns at once (certain failure) | `faults` | `a_database_crash_on_the_master_resigns_at_once`, `failing_probes_count_only_after_fall_in_a_row`; pair `a_database_crash_on_the_master_moves_the_vip_to_the_promoted_standby` |
//! | 2: no promotion while the old primary is known alive | `promotion_step` | `certain_takeover_promotes_as_soon_as_the_old_primary_is_no_longer_seen`, `an_orphaned_backends_answer_as_primary_after_the_crash_holds_nothing_once_a_connection_is_refused`, `a_primary_answer_within_the_window_holds_a_certain_takeover_until_the_peer_is_seen_down`, `a_fresh_wal_receiver_holds_promotion_until_it_goes_stale`, `a_fresh_wal_receiver_hold_asks_for_a_local_sample_at_once_and_a_stopped_receiver_promotes`, `a_late_answer_of_a_live_peer_primary_does_not_open_a_gap_for_promotion`; pair `a_restart_of_the_masters_daemon_does_not_promote_the_standby` |
//! | a silent master: confirmation time and a fresh witness round | `promotion_step` | `a_silent_master_is_promoted_over_only_after_the_confirmation_time`, `a_blip_shorter_than_the_confirmation_time_changes_nothing`, `an_isolated_standby_never_promotes_over_a_silent_master`; pair `a_standby_cut_off_from_the_primary_and_the_witness_never_promotes`, `a_blip_shorter_than_the_confirmation_time_leaves_the_pair_as_it_was` |
//! | 3: promotion bounded and verified, else the mastership released | `promotion_finished` | `failed_promotions_are_retried_then_the_mastership_is_released`, `a_node_that_gave_up_promoting_does_not_start_over_when_elected_again`; pair `a_promotion_that_fails_hangs_or_lies_never_puts_the_vip_on_a_read_only_database` |
//! | 1: the VIP only on a master with a verified writable database | `vip` | `the_vip_is_installed_only_on_a_master_with_a_writable_database`, `a_verified_promotion_installs_the_vip_and_raises_the_priority`; pair property tests |
//! | a priority-0 advert is certain only once the peer's database is seen down | `promotion_step` | `a_priority_zero_advert_is_certain_only_once_the_peers_database_is_seen_down`; pair `a_database_crash_on_the_master_moves_the_vip_to_the_promoted_standby` |
//! | 6: a planned promotion only once the old primary stopped (as our probes see it) and its shutdown checkpoint arrived | `planned_promotion` | `a_planned_promotion_waits_for_the_old_primarys_shutdown_checkpoint`, `a_planned_switchover_demotes_the_primary_and_promotes_past_maintenance`; pair `a_planned_promotion_beside_a_live_primary_is_refused_whatever_the_caller_says` |
//! | 9: unknown is neither down nor alive | `LocalDb::sample`, `Peer::sample`, `promotion_step`, `isolation` | `a_local_probe_failing_for_a_local_reason_never_resigns`, `a_peer_probe_failing_for_a_local_reason_holds_promotion_and_is_not_isolation`; pair `probes_failing_for_a_local_reason_neither_drop_the_vip_nor_promote` |
//! | synchronous replication: require a streaming standby; alone on evidence it cannot be promoted (this node promoted; or its host answers, database down or not streaming, after the grace in which its own daemon marks it); `sync` alone after `sync_timeout` of silence, `sync-strict` never | `synchronous_standby` (`sync_standby.rs`) | `sync_a_streaming_standby_is_required_once_caught_up`, `sync_a_standby_database_down_relaxes_once_its_daemon_has_marked_it`, `sync_an_answer_from_before_the_grace_is_no_evidence`, `sync_a_silence_in_between_restarts_the_grace`, `sync_a_standby_that_answers_but_does_not_stream_relaxes_after_the_grace`, `sync_an_unreachable_standby_relaxes_after_the_sync_timeout`, `sync_strict_never_relaxes_for_an_unreachable_standby`, `sync_a_promoted_node_commits_alone_until_its_peer_streams`, `sync_relaxed_primary_requires_the_standby_again_once_it_streams`, `async_never_touches_synchronous_standby_names`; pair `sync_*` |
//! | a standby its primary waits for (`sync_state` sync) is promotable whatever its byte lag; in a sync mode only such a standby is | `promotion_step`, `Replication::promotable` | `a_standby_its_primary_waits_for_is_promotable_beyond_the_byte_lag`, `with_synchronous_replication_a_standby_its_primary_does_not_wait_for_is_not_promoted`; pair `sync_a_primary_crash_and_a_primary_link_loss_lose_nothing`, `sync_a_dead_standby_database_relaxes_the_primary_at_once` |
//! | 10: with an arbiter, the VIP and promotion only while holding the leader key; a crash releases it; a lease run out drops the VIP (and fences) unless the peer confirms | `arbiter`, `promotion_step`, `vip` | `arbiter.rs`: `a_standby_promotes_only_once_it_holds_the_leader_key`, `an_arbiter_error_never_promotes`, `a_master_whose_lease_runs_out_drops_the_vip_and_fences`, `the_failsafe_keeps_a_master_serving_while_the_peer_streams_from_it`, `a_database_crash_releases_the_key_at_once_after_the_vip`, `a_live_primary_that_released_the_key_is_fenced_once_the_peer_holds_it`, `a_crashed_primary_is_not_fenced_when_the_peer_takes_the_key`, `the_key_held_by_the_peer_keeps_the_vip_off`, `a_primary_asks_for_the_key_and_installs_the_vip_only_once_it_holds_it`; pair `with_an_arbiter_a_symmetric_partition_leaves_one_vip_holder`, `with_an_arbiter_a_failing_but_live_primary_is_fenced_once_the_standby_holds_the_key` |
//! | 10, sync modes with an arbiter: etcd's sync record names the standby once it is listed `sync`; "none", acknowledged by etcd under the key, before the primary commits alone (an etcd error: no relax); a standby promotes only on a record read under the key that names it | `synchronous_standby`, `promotion_step`, `Arbiter::may_relax`, `Arbiter::record_allows_promotion` | `arbiter.rs`: `sync_the_record_names_the_standby_once_it_is_listed_sync`, `sync_the_primary_commits_alone_only_after_etcd_acknowledged_none`, `sync_an_etcd_error_holds_the_relax_and_is_said_once`, `sync_a_standby_promotes_only_on_a_record_read_under_the_key_naming_it`, `sync_a_record_read_before_the_key_does_not_count`; pair `sync_arbiter_*` |
//! | maintenance holds resigning and promoting | `faults`, `promotion_step` | `maintenance_mode_prevents_resigning_and_promoting`; pair `maintenance_mode_holds_failover_on_a_crash` |

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use whpg_vrrp::{FaultSource, State, TransitionReason};

use crate::arbiter::{
    Arbiter, ArbiterAction, ArbiterRules, ArbiterSample, ArbiterStatus, RecordRefusal, SyncRecord,
    SyncRecordWrite,
};
use crate::observe::{DbRole, LocalDb, LocalSample, Peer, PeerSample, Witnesses};
use crate::replication::{
    Mark, MarkChange, PrimaryPosition, Replication, ReplicationConfig, ReplicationStatus,
    Unpromotable,
};
use crate::sync_standby::{SyncConfig, SyncMode, SyncReason, SyncStandby, SyncStatus, SyncTarget};

/// Which failures may start an automatic promotion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Triggers {
    /// The master resigned because its database failed, or the peer's database stopped answering.
    pub database_failure: bool,
    /// The master's host is gone (no adverts, no answer at all).
    pub node_loss: bool,
    /// The master is unreachable over the network.
    pub network_loss: bool,
}

impl Triggers {
    pub fn all() -> Triggers {
        Triggers {
            database_failure: true,
            node_loss: true,
            network_loss: true,
        }
    }

    fn silent_master(&self) -> bool {
        self.node_loss || self.network_loss
    }
}

/// Settings of the policy, from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// This node's configured VRRP priority.
    pub base_priority: u8,
    /// The configured `vrrp.preempt`, used while the local database is not a healthy primary.
    pub preempt: bool,
    /// Added while the local database is a healthy primary, so it outranks any standby.
    pub primary_bonus: u8,
    /// Added while the local database is a healthy standby, for a short Skew_Time (RFC 5798:
    /// `(256 - priority) * interval / 256`): the standby takes over that much sooner after the
    /// master resigns or falls silent. It must keep the standby below every healthy primary
    /// (`primary_bonus` minus the gap between the nodes' priorities, minus one).
    pub standby_bonus: u8,
    /// The standby bonus applies only this long after the start-up checks are done (the
    /// Master_Down_Interval at the configured priority): in the first election after both
    /// daemons start, a standby just below the primary would reach its Master_Down_Interval
    /// within a millisecond or two of the primary and be VRRP master beside it for a moment.
    pub standby_bonus_after: Duration,
    pub triggers: Triggers,
    /// A silent master's database must stay unanswering this long before we promote.
    pub confirmation: Duration,
    /// Our WAL receiver heard from the primary within this: it is alive, do not promote.
    pub wal_freshness: Duration,
    /// The peer's database answered as primary within this: it is alive, do not promote.
    pub peer_alive_window: Duration,
    /// How long a probe of the peer may take. After an answer as primary, the peer stays alive
    /// past `peer_alive_window` by up to this while no newer answer has come (the next probe is
    /// still in flight); any newer answer that is not a live primary ends that at once.
    pub peer_probe_timeout: Duration,
    pub fall: u32,
    pub rise: u32,
    pub fence_when_isolated: bool,
    pub witness_enabled: bool,
    /// Peer unreachable and witness quorum lost for this long: isolated.
    pub isolation_after: Duration,
    /// Promotion attempts before giving the mastership up.
    pub promotion_attempts: u32,
    pub promotion_retry_delay: Duration,
    /// At start-up, how long to wait for a first answer from the peer before acting alone.
    pub startup_grace: Duration,
    /// How far behind the standby may be and still be promoted.
    pub replication: ReplicationConfig,
    /// Synchronous replication managed on a primary (`[replication]`).
    pub sync: SyncConfig,
}

/// Inputs.
#[derive(Debug, Clone)]
pub enum Input {
    /// The VRRP instance changed state.
    Vrrp {
        to: State,
        reason: TransitionReason,
    },
    Local(LocalSample),
    /// The postmaster process exited (seen within milliseconds, before any probe).
    PostmasterExited,
    Peer(PeerSample),
    /// A round of witness probes, sent at `round_sent_at`, ended: did a quorum answer?
    Witness {
        quorum: bool,
        round_sent_at: Instant,
    },
    Maintenance(bool),
    /// The configured priority changed (reload).
    BasePriority(u8),
    /// The promotion command finished and a real write succeeded (the proof), or it failed,
    /// timed out, or could not be verified.
    PromotionFinished(Result<WriteVerified, String>),
    /// Planned switchover, old primary: leave the election for good (until this database is
    /// rebuilt as a standby); the operator stops the database cleanly next.
    Demote,
    /// Planned switchover, new primary: promote now, past maintenance and the live-primary
    /// guard, provided the old primary's shutdown checkpoint (`shutdown_checkpoint`, read by
    /// this daemon from the stopped old primary) has arrived here (`received`, this standby's
    /// latest received WAL position): invariant 6, no acknowledged commit left behind.
    PlannedPromotion {
        shutdown_checkpoint: u64,
        received: u64,
    },
    /// The standby was marked not promotable before the daemon restarted (kept on disk), with
    /// the primary's position and what the standby had then, where known.
    RestoredNotPromotable {
        primary: Option<u64>,
        had: Option<u64>,
    },
    /// The operator chooses availability over data (`whpg-ha promote --accept-data-loss`):
    /// promote now although the standby is not known to hold everything the primary
    /// acknowledged. Every other rule still holds (never beside a live primary); it applies to
    /// this evaluation only and is never remembered.
    AcceptDataLoss,
    /// The job that set `synchronous_standby_names` ([`Decision::SetSynchronousStandby`])
    /// finished: `Err` says why not and what to fix.
    SynchronousStandbySet {
        target: SyncTarget,
        /// The value set (`""`: alone).
        result: Result<String, String>,
    },
    /// What the arbiter's etcd client found (only with [`Policy::with_arbiter`]).
    Arbiter(ArbiterSample),
    /// The etcd client read `<prefix>/sync`; `under_key`: while it held the leader key (a read
    /// after it took the key, which the old primary can no longer overtake).
    SyncRecord {
        record: SyncRecord,
        under_key: bool,
    },
    /// The write asked for with [`Decision::WriteSyncRecord`] finished: etcd acknowledged it
    /// (compared the key still on this node's lease), or `Err` says why not, with the endpoint.
    SyncRecordWritten {
        record: SyncRecordWrite,
        result: Result<(), String>,
    },
    /// Time passed; re-evaluate deadlines.
    Tick,
}

/// Proof that the promoted database accepted a real write, with the timeline it is on.
///
/// Only the daemon's write check builds one ([`WriteVerified::assertion`] after a write
/// committed), so a promotion cannot be taken as done on the promote command's word (exit 0
/// while still in recovery happens). The policy installs the VIP only on this proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteVerified {
    timeline: Option<u32>,
}

impl WriteVerified {
    /// To be called only where a write has just committed on the local database.
    pub fn assertion(timeline: Option<u32>) -> WriteVerified {
        WriteVerified { timeline }
    }

    pub fn timeline(&self) -> Option<u32> {
        self.timeline
    }
}

/// Why a database is fenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceReason {
    /// Neither the peer nor a quorum of witnesses is reachable: this node may be the cut-off side.
    Isolated,
    /// The peer is a primary on a newer timeline: this database is an old primary.
    OlderTimeline { local: u32, peer: u32 },
    /// Invariant 10: the arbiter's lease ran out under this primary (or the key went to another
    /// node) and the peer did not confirm it is not taking over.
    LeaseLost,
}

/// Why a promotion is not happening now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Invariant 2: the old primary's database answered within the alive window.
    PeerPrimaryAlive,
    /// Invariant 2: our WAL receiver heard from the primary within the freshness window.
    WalReceiverFresh,
    /// A silent master: waiting out the confirmation time.
    Confirming {
        until: Instant,
    },
    /// A silent master, and no witness round sent since we became master has answered yet: we
    /// may be the side that is cut off. A round was asked for.
    AwaitingWitnesses,
    /// Invariant 9: the latest probe of the peer failed for a reason of our own (descriptor or
    /// memory exhaustion): whether the old primary lives is unknown, and unknown is not dead.
    PeerUnknown,
    /// The failure that happened is not in `failover.triggers`.
    TriggerNotConfigured,
    Maintenance,
    /// The standby is not known to hold everything the primary acknowledged: promoting it would
    /// lose commits (`whpg-ha promote --accept-data-loss` overrides).
    NotPromotable(Unpromotable),
    /// Invariant 10: the arbiter's leader key is not ours (yet): asked for, held by the other
    /// node, or etcd gave no answer (unknown is not free).
    ArbiterKey(KeyState),
    /// With an arbiter and a sync mode: the key is ours, but etcd's sync record, read since,
    /// does not name this node (`whpg-ha promote --accept-data-loss` overrides).
    SyncRecord(RecordRefusal),
}

/// Why the arbiter's key is not ours, for [`Hold::ArbiterKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Asked for; no answer yet.
    Campaigning,
    /// etcd says the other node holds it: its lease has not run out.
    HeldByOther,
    /// etcd did not answer (or failed): nothing may be concluded.
    Unknown,
}

/// Things worth a line in the log and the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    StartupChecksDone,
    PromotionHeld(Hold),
    PromotionSucceeded {
        attempt: u32,
    },
    PromotionFailed {
        attempt: u32,
        error: String,
        giving_up: bool,
    },
    NeedsRejoin {
        local_timeline: u32,
        peer_timeline: u32,
    },
    /// A planned promotion cannot start; the reason says why.
    PlannedPromotionRefused(PlannedRefusal),
    /// This node left the election for a planned switchover.
    Demoted,
    /// The local database is a healthy standby again (rebuilt): back in service.
    Rejoined,
    Isolated,
    IsolationEnded,
    /// The standby fell out while the primary was alive: not promotable until caught up.
    StandbyMarkedBehind(Mark),
    /// It is streaming and caught up again.
    StandbyCaughtUp,
    /// `synchronous_standby_names` was set: commits wait for the standby, or not.
    SynchronousStandbySet {
        target: SyncTarget,
        reason: Option<SyncReason>,
    },
    /// Setting it failed; tried again after the retry delay.
    SynchronousStandbyFailed {
        target: SyncTarget,
        error: String,
    },
    /// Invariant 10: the arbiter's lease ran out under this serving master (or the key went
    /// elsewhere) with no confirmation from the peer: the VIP goes.
    LeaseLost,
    /// etcd acknowledged the sync record: it names the standby, or none (and the primary may
    /// commit alone now).
    SyncRecordWritten(SyncRecordWrite),
    /// Writing it failed: no relax until it succeeds (writes wait); tried again after the
    /// retry delay.
    SyncRecordFailed {
        record: SyncRecordWrite,
        error: String,
    },
}

/// Why a planned promotion was refused. `NotMaster` is the one a caller may wait out: the
/// mastership follows within a few adverts of the old primary leaving the election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlannedRefusal {
    NotMaster,
    /// The old primary's database still answers as a primary (last answer this long ago): it
    /// has not stopped (or demoted), whatever the caller says. Seen within one probe interval
    /// of its stop.
    OldPrimaryAnswers {
        last_answer_ms_ago: u64,
    },
    /// The old primary's shutdown checkpoint has not arrived here yet.
    CheckpointNotReceived {
        checkpoint: u64,
        received: u64,
    },
    NotHealthyStandby,
    FencedOrRejoining,
    AlreadyPromoting,
}

impl std::fmt::Display for PlannedRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PlannedRefusal::NotMaster => "this node is not the VRRP master yet",
            PlannedRefusal::OldPrimaryAnswers { last_answer_ms_ago } => {
                return write!(
                    f,
                    "the old primary's database still answers as a primary (last answer \
                     {last_answer_ms_ago} ms ago): stop it cleanly first"
                )
            }
            PlannedRefusal::CheckpointNotReceived {
                checkpoint,
                received,
            } => {
                return write!(
                    f,
                    "this standby received WAL up to {:X}/{:X}, {} bytes short of the old \
                     primary's shutdown checkpoint {:X}/{:X}",
                    received >> 32,
                    received & 0xffff_ffff,
                    checkpoint - received,
                    checkpoint >> 32,
                    checkpoint & 0xffff_ffff
                )
            }
            PlannedRefusal::NotHealthyStandby => "the local database is not a healthy standby",
            PlannedRefusal::FencedOrRejoining => "this node is fenced or waiting for a rejoin",
            PlannedRefusal::AlreadyPromoting => "a promotion is already running",
        })
    }
}

/// Outputs, in the order to carry them out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    SetPriority(u8),
    /// Preempt a lower-priority master: on while the local database is a healthy primary, so a
    /// primary whose daemon restarts takes the VIP back from a master that cannot serve.
    SetPreempt(bool),
    SetFault {
        source: FaultSource,
        active: bool,
    },
    /// Install the virtual addresses (the database is writable).
    InstallVip,
    RemoveVip,
    /// Run the promotion command (attempt 1, 2, ...); answer with [`Input::PromotionFinished`].
    Promote {
        attempt: u32,
    },
    /// Priority-0 advert now, so the peer can take over.
    Resign,
    /// Probe the witnesses now, without waiting for the next round; answer with
    /// [`Input::Witness`].
    CheckWitnesses,
    /// Observe the local database now, without waiting for the next probe round; answer with
    /// [`Input::Local`].
    ObserveLocal,
    /// Tell the arbiter's etcd client to campaign for (and keep) the leader key, or to release it.
    Arbiter(ArbiterAction),
    /// Stop the local database and clean up after it.
    Fence(FenceReason),
    /// Set `synchronous_standby_names` on the local primary (the standby's `application_name`
    /// as the primary lists it, or empty) and reload; answer with
    /// [`Input::SynchronousStandbySet`].
    SetSynchronousStandby(SyncTarget),
    /// With an arbiter in a sync mode: write etcd's sync record (only if the leader key is
    /// still this node's); answer with [`Input::SyncRecordWritten`]. A relax waits for it.
    WriteSyncRecord(SyncRecordWrite),
    Notice(Notice),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Promotion {
    Idle,
    Running {
        attempt: u32,
    },
    /// An attempt failed and the mastership was released; the next attempt, when this node
    /// is master again, not before `at`.
    RetryAt {
        attempt: u32,
        at: Instant,
    },
    /// Every attempt failed; no more until restart, until the peer's database serves as a
    /// primary again (a later failure of it is a new one) or until ours is a primary. Not reset
    /// by leaving the mastership: the resignation itself does that, and a node re-elected
    /// because nobody else can be master would otherwise start over, forever.
    GaveUp,
}

/// What has been told to the daemon, to emit only differences.
#[derive(Debug, Default)]
struct Sent {
    priority: Option<u8>,
    preempt: Option<bool>,
    faults: BTreeSet<FaultSource>,
    vip: bool,
    hold: Option<Hold>,
    isolated: bool,
    startup_done: bool,
}

/// Observable summary, for `/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyStatus {
    pub local_role: Option<DbRole>,
    pub local_healthy: bool,
    pub local_timeline: Option<u32>,
    pub needs_rejoin: bool,
    pub fenced: Option<FenceReason>,
    /// Out of the election after a planned switchover, until rebuilt as a standby.
    pub demoted: bool,
    pub isolated: bool,
    pub maintenance: bool,
    pub promoting: bool,
    pub promotion_gave_up: bool,
    pub hold: Option<Hold>,
    pub vip: bool,
    /// Replication as the standby sees it (its primary's position, what it has, the mark).
    pub replication: ReplicationStatus,
    /// Whether it may be promoted, were the primary gone now.
    pub promotable: Result<(), Unpromotable>,
    /// While the local database is a primary: its position and its standby's walsender row.
    pub local_position: Option<PrimaryPosition>,
    /// Synchronous replication as this node manages it (on a primary).
    pub sync: SyncStatus,
    /// The arbiter, when one is configured.
    pub arbiter: Option<ArbiterStatus>,
}

pub struct Policy {
    config: PolicyConfig,
    started_at: Instant,
    local: LocalDb,
    peer: Peer,
    witnesses: Witnesses,
    vrrp: State,
    master_reason: Option<TransitionReason>,
    /// When this node last became VRRP master.
    master_since: Option<Instant>,
    /// A witness round was asked for in the current mastership.
    witness_check_asked: bool,
    /// A local observation was asked for in the current mastership.
    local_check_asked: bool,
    maintenance: bool,
    promotion: Promotion,
    needs_rejoin: bool,
    fenced: Option<FenceReason>,
    /// Left the election for a planned switchover.
    demoted: bool,
    startup_done: bool,
    /// When the start-up checks were done (the node joined the election).
    joined_at: Option<Instant>,
    replication: Replication,
    sync: SyncStandby,
    /// The operator's override for the current evaluation only ([`Input::AcceptDataLoss`]).
    accept_data_loss: bool,
    local_position: Option<PrimaryPosition>,
    /// When `local_position` was sampled.
    local_position_at: Option<Instant>,
    arbiter: Option<Arbiter>,
    /// The failsafe kept the VIP past the lease at the latest evaluation.
    failsafe_active: bool,
    /// The primary wants to commit alone and waits for etcd's record to say none.
    relax_waits_for_record: bool,
    /// The latest time the rules were evaluated at.
    evaluated_at: Instant,
    sent: Sent,
}

impl Policy {
    pub fn new(config: PolicyConfig, now: Instant) -> Policy {
        Policy {
            local: LocalDb::new(config.fall, config.rise)
                .with_stale_after_promotion(config.peer_probe_timeout),
            replication: Replication::new(config.replication),
            sync: SyncStandby::new(config.sync),
            config,
            started_at: now,
            peer: Peer::default(),
            witnesses: Witnesses::default(),
            vrrp: State::Initialize,
            master_reason: None,
            master_since: None,
            witness_check_asked: false,
            local_check_asked: false,
            maintenance: false,
            promotion: Promotion::Idle,
            needs_rejoin: false,
            fenced: None,
            demoted: false,
            startup_done: false,
            joined_at: None,
            accept_data_loss: false,
            local_position: None,
            local_position_at: None,
            arbiter: None,
            failsafe_active: false,
            relax_waits_for_record: false,
            evaluated_at: now,
            sent: Sent::default(),
        }
    }

    /// With an arbiter (invariant 10): the VIP and promotion only while holding its leader key.
    pub fn with_arbiter(mut self, rules: ArbiterRules) -> Policy {
        self.arbiter = Some(Arbiter::new(rules));
        self
    }

    /// Decisions to apply before the VRRP instance starts (start-up gate, initial priority).
    pub fn start(&mut self, now: Instant) -> Vec<Decision> {
        self.evaluate(now)
    }

    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Decision> {
        let mut out = Vec::new();
        match input {
            Input::Vrrp { to, reason } => {
                if to == State::Master && self.vrrp != State::Master {
                    self.master_since = Some(now);
                    self.witness_check_asked = false;
                    self.local_check_asked = false;
                }
                self.vrrp = to;
                self.master_reason = (to == State::Master).then_some(reason);
            }
            Input::Local(sample) => self.local_sample(sample, now, &mut out),
            Input::PostmasterExited => self.local.crashed(),
            Input::Peer(sample) => {
                self.peer.sample(sample, now);
                self.sync.peer(sample, now);
                if let PeerSample::Primary { position, .. } = sample {
                    let change = self.replication.primary_seen(position, now);
                    Self::mark_notice(change, &mut out);
                }
            }
            Input::Witness {
                quorum,
                round_sent_at,
            } => self.witnesses.sample(quorum, round_sent_at, now),
            Input::Maintenance(on) => self.maintenance = on,
            Input::BasePriority(priority) => self.config.base_priority = priority,
            Input::PromotionFinished(result) => self.promotion_finished(result, now, &mut out),
            Input::Demote => {
                if !self.demoted {
                    self.demoted = true;
                    out.push(Decision::Notice(Notice::Demoted));
                }
            }
            Input::PlannedPromotion {
                shutdown_checkpoint,
                received,
            } => self.planned_promotion(shutdown_checkpoint, received, now, &mut out),
            Input::RestoredNotPromotable { primary, had } => {
                self.replication.restore_mark(primary, had, now);
            }
            Input::AcceptDataLoss => {
                self.accept_data_loss = true;
                out.extend(self.evaluate(now));
                self.accept_data_loss = false;
                return out;
            }
            Input::SynchronousStandbySet { target, result } => {
                // A failure that repeats (every retry delay) is said once.
                let previous = self.sync.status().error;
                let notice = match &result {
                    Ok(_) => None,
                    Err(error) if previous.as_ref() == Some(error) => {
                        self.sync.finished(target, result, now);
                        out.extend(self.evaluate(now));
                        return out;
                    }
                    Err(error) => Some(Notice::SynchronousStandbyFailed {
                        target,
                        error: error.clone(),
                    }),
                };
                self.sync.finished(target, result, now);
                out.push(Decision::Notice(notice.unwrap_or(
                    Notice::SynchronousStandbySet {
                        target,
                        reason: self.sync.status().reason,
                    },
                )));
            }
            Input::Arbiter(sample) => {
                if let Some(arbiter) = &mut self.arbiter {
                    arbiter.sample(sample, now);
                }
            }
            Input::SyncRecord { record, under_key } => {
                if let Some(arbiter) = &mut self.arbiter {
                    arbiter.record_read(record, under_key, now);
                }
            }
            Input::SyncRecordWritten { record, result } => {
                if let Some(arbiter) = &mut self.arbiter {
                    let previous = arbiter.record_error.clone();
                    let notice = match &result {
                        Ok(()) => Some(Notice::SyncRecordWritten(record)),
                        // A failure that repeats (every retry delay) is said once.
                        Err(error) if previous.as_ref() == Some(error) => None,
                        Err(error) => Some(Notice::SyncRecordFailed {
                            record,
                            error: error.clone(),
                        }),
                    };
                    arbiter.record_finished(record, result, now + self.config.sync.retry_delay);
                    out.extend(notice.map(Decision::Notice));
                }
            }
            Input::Tick => {}
        }
        out.extend(self.evaluate(now));
        out
    }

    fn local_sample(&mut self, sample: LocalSample, now: Instant, out: &mut Vec<Decision>) {
        self.local.sample(sample, now);
        match sample {
            LocalSample::Standby { received, .. } => {
                self.local_position = None;
                self.sync.local_not_primary();
                self.replication.local_standby(received);
            }
            LocalSample::Primary { position, .. } => {
                self.local_position = position;
                self.sync.local_primary(position, now);
                self.local_position_at = Some(now);
                // A primary misses nothing: whatever marked it as a standby is over.
                Self::mark_notice(self.replication.local_primary(), out);
            }
            _ => {}
        }
    }

    fn mark_notice(change: Option<MarkChange>, out: &mut Vec<Decision>) {
        match change {
            Some(MarkChange::Marked(mark)) => {
                out.push(Decision::Notice(Notice::StandbyMarkedBehind(mark)))
            }
            Some(MarkChange::Cleared) => out.push(Decision::Notice(Notice::StandbyCaughtUp)),
            None => {}
        }
    }

    /// The earliest time at which a decision could change with no new input.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let mut times = Vec::new();
        if !self.startup_done {
            times.push(self.started_at + self.config.startup_grace);
        }
        if let Some(at) = self.joined_at {
            times.push(at + self.config.standby_bonus_after);
        }
        if let Some(Hold::Confirming { until }) = self.sent.hold {
            times.push(until);
        }
        if let Promotion::RetryAt { at, .. } = self.promotion {
            times.push(at);
        }
        if let Some(at) = self.peer.primary_at {
            times.push(at + self.config.peer_alive_window);
            if self.peer.latest_primary {
                times.push(at + self.config.peer_alive_window + self.config.peer_probe_timeout);
            }
        }
        if let Some(lost) = self.witnesses.lost_since {
            times.push(lost + self.config.isolation_after);
        }
        if let Some(at) = self.peer.reachable_at {
            times.push(at + self.config.isolation_after);
        }
        times.extend(self.sync.wakeups());
        if let Some(until) = self.arbiter.as_ref().and_then(|a| a.held_until) {
            times.push(until);
        }
        if let Some(at) = self.arbiter.as_ref().and_then(|a| a.record_retry_at) {
            times.push(at);
        }
        if self.failsafe_active {
            // The confirmation ages out with the peer's last answer.
            let fresh = self.config.peer_alive_window + self.config.peer_probe_timeout;
            if let Some(at) = self.peer.reachable_at {
                times.push(at + fresh);
            }
            if let Some(at) = self.local_position_at {
                times.push(at + fresh);
            }
        }
        // Thresholds already behind the last evaluation have been acted on; returning them would
        // make the caller wake at once, again and again.
        times.into_iter().filter(|&t| t > self.evaluated_at).min()
    }

    pub fn status(&self) -> PolicyStatus {
        PolicyStatus {
            local_role: self.local.role,
            local_healthy: self.local.healthy,
            local_timeline: self.local.timeline,
            needs_rejoin: self.needs_rejoin,
            fenced: self.fenced,
            demoted: self.demoted,
            isolated: self.sent.isolated,
            maintenance: self.maintenance,
            promoting: matches!(
                self.promotion,
                Promotion::Running { .. } | Promotion::RetryAt { .. }
            ),
            promotion_gave_up: self.promotion == Promotion::GaveUp,
            hold: self.sent.hold,
            vip: self.sent.vip,
            replication: self.replication.status(),
            promotable: self.replication.promotable(),
            local_position: self.local_position,
            sync: self.sync.status(),
            arbiter: self.arbiter.as_ref().map(|a| ArbiterStatus {
                latest: a.latest.clone(),
                held: a.held(self.evaluated_at),
                held_until: a.held_until,
                lost: a.lost,
                failsafe_active: self.failsafe_active,
                sync_record: a.record.clone(),
                sync_record_under_key: a.record_under_key,
                sync_record_written: a.record_written,
                sync_record_error: a.record_error.clone(),
                relax_waits_for_record: self.relax_waits_for_record,
            }),
        }
    }

    /// Invariant 6: a planned promotion only once the old primary has stopped (its database no
    /// longer answers as a primary, as this node's own probes see it: invariant 9, the caller's
    /// word is not enough) and its shutdown checkpoint is here.
    fn planned_promotion(
        &mut self,
        checkpoint: u64,
        received: u64,
        now: Instant,
        out: &mut Vec<Decision>,
    ) {
        let refused = if self.peer_primary_alive(now) || self.peer.latest_primary {
            let last_answer_ms_ago = self
                .peer
                .primary_at
                .map_or(0, |at| now.saturating_duration_since(at).as_millis() as u64);
            Some(PlannedRefusal::OldPrimaryAnswers { last_answer_ms_ago })
        } else if received < checkpoint {
            Some(PlannedRefusal::CheckpointNotReceived {
                checkpoint,
                received,
            })
        } else if self.vrrp != State::Master {
            Some(PlannedRefusal::NotMaster)
        } else if !self.local.is_healthy(DbRole::Standby) {
            Some(PlannedRefusal::NotHealthyStandby)
        } else if self.needs_rejoin || self.fenced.is_some() || self.demoted {
            Some(PlannedRefusal::FencedOrRejoining)
        } else if matches!(self.promotion, Promotion::Running { .. }) {
            Some(PlannedRefusal::AlreadyPromoting)
        } else {
            None
        };
        match refused {
            Some(reason) => out.push(Decision::Notice(Notice::PlannedPromotionRefused(reason))),
            None => {
                self.promotion = Promotion::Running { attempt: 1 };
                out.push(Decision::Promote { attempt: 1 });
            }
        }
    }

    fn promotion_finished(
        &mut self,
        result: Result<WriteVerified, String>,
        now: Instant,
        out: &mut Vec<Decision>,
    ) {
        let Promotion::Running { attempt } = self.promotion else {
            return;
        };
        match result {
            Ok(proof) => {
                self.local.promoted(proof.timeline(), now);
                self.sync.promoted();
                self.promotion = Promotion::Idle;
                out.push(Decision::Notice(Notice::PromotionSucceeded { attempt }));
            }
            Err(error) => {
                let giving_up = attempt >= self.config.promotion_attempts;
                out.push(Decision::Notice(Notice::PromotionFailed {
                    attempt,
                    error,
                    giving_up,
                }));
                // Invariant 3: release the mastership at once after every failed attempt, so the
                // peer can act if it can. The count survives: if VRRP elects this node again
                // (nobody else can be master), the next attempt follows the retry delay, and
                // after the last one the node gives up.
                self.promotion = if giving_up {
                    Promotion::GaveUp
                } else {
                    Promotion::RetryAt {
                        attempt: attempt + 1,
                        at: now + self.config.promotion_retry_delay,
                    }
                };
                if self.vrrp == State::Master {
                    out.push(Decision::Resign);
                }
            }
        }
    }

    /// Every rule, in the order their decisions must be carried out (see the module's table).
    fn evaluate(&mut self, now: Instant) -> Vec<Decision> {
        self.evaluated_at = self.evaluated_at.max(now);
        let mut out = Vec::new();
        // Fencing is carried out last, after the VIP is gone: clients must not be sent to a
        // database that is being stopped.
        let mut fences = Vec::new();
        self.startup_gate(now);
        self.return_to_service(&mut out);
        self.fence_old_primary(now, &mut out, &mut fences);
        let isolated = self.isolation(now, &mut out, &mut fences);
        self.priority(now, &mut out);
        self.faults(isolated, &mut out);
        let hold = self.promotion_step(now, &mut out);
        let mut release = Vec::new();
        let arbiter_allows_vip = self.arbiter(now, hold, &mut out, &mut release, &mut fences);
        if hold != self.sent.hold {
            self.sent.hold = hold;
            if let Some(hold) = hold {
                out.push(Decision::Notice(Notice::PromotionHeld(hold)));
            }
        }
        self.vip(isolated, arbiter_allows_vip, &mut out);
        self.synchronous_standby(now, &mut out);
        // The key is given up after the VIP is gone: the peer may take over once it is free.
        out.extend(release);
        out.extend(fences.into_iter().map(Decision::Fence));
        if self.startup_done && !self.sent.startup_done {
            self.sent.startup_done = true;
            out.push(Decision::Notice(Notice::StartupChecksDone));
        }
        out
    }

    /// Start-up gate: say nothing to VRRP until our database's health is settled either way
    /// and we have heard from the peer (or waited long enough), so a transient mastership at
    /// start-up cannot promote and an old primary cannot grab the VIP before its timeline is
    /// compared.
    fn startup_gate(&mut self, now: Instant) {
        if !self.startup_done {
            let grace_over =
                now.saturating_duration_since(self.started_at) >= self.config.startup_grace;
            if self.local.settled() && (self.peer.observed || grace_over) {
                self.startup_done = true;
                self.joined_at = Some(now);
            }
        }
    }

    /// A database rebuilt as a healthy standby (a rejoin) is in service again, whatever made
    /// it leave: an older timeline, a fence, a planned demotion.
    fn return_to_service(&mut self, out: &mut Vec<Decision>) {
        if (self.needs_rejoin || self.fenced.is_some() || self.demoted)
            && self.local.is_healthy(DbRole::Standby)
        {
            self.needs_rejoin = false;
            self.fenced = None;
            self.demoted = false;
            out.push(Decision::Notice(Notice::Rejoined));
        }
    }

    fn peer_primary_alive(&self, now: Instant) -> bool {
        let c = &self.config;
        self.peer
            .primary_within(c.peer_alive_window, c.peer_probe_timeout, now)
    }

    /// Invariant 4: an old primary (older timeline than a live peer primary) never serves. It
    /// is fenced on its first answer as a primary, not after `rise` of them: every probe
    /// interval it runs is one in which it accepts writes.
    fn fence_old_primary(
        &mut self,
        now: Instant,
        out: &mut Vec<Decision>,
        fences: &mut Vec<FenceReason>,
    ) {
        if self.local.answers_as(DbRole::Primary)
            && self.peer_primary_alive(now)
            && !self.needs_rejoin
        {
            if let (Some(local), Some(peer)) = (self.local.timeline, self.peer.primary_timeline) {
                if peer > local {
                    self.needs_rejoin = true;
                    self.fenced = Some(FenceReason::OlderTimeline { local, peer });
                    out.push(Decision::Notice(Notice::NeedsRejoin {
                        local_timeline: local,
                        peer_timeline: peer,
                    }));
                    fences.push(FenceReason::OlderTimeline { local, peer });
                }
            }
        }
    }

    /// Invariant 5: isolated = neither the peer nor a witness quorum answers; an isolated
    /// primary is fenced. Returns whether this node is isolated now.
    fn isolation(
        &mut self,
        now: Instant,
        out: &mut Vec<Decision>,
        fences: &mut Vec<FenceReason>,
    ) -> bool {
        let c = &self.config;
        // A peer we cannot probe for a local reason is not silent: that is our failure, not its.
        let peer_silent = !self.peer.latest_unknown
            && self
                .peer
                .reachable_at
                .unwrap_or(self.started_at)
                .checked_add(c.isolation_after)
                .is_some_and(|t| now >= t);
        let witnesses_lost = self
            .witnesses
            .lost_since
            .is_some_and(|since| now.saturating_duration_since(since) >= c.isolation_after);
        let isolated = c.witness_enabled && self.startup_done && peer_silent && witnesses_lost;
        if isolated != self.sent.isolated {
            self.sent.isolated = isolated;
            out.push(Decision::Notice(if isolated {
                Notice::Isolated
            } else {
                Notice::IsolationEnded
            }));
            if isolated
                && c.fence_when_isolated
                && self.local.role == Some(DbRole::Primary)
                && self.fenced.is_none()
            {
                self.fenced = Some(FenceReason::Isolated);
                fences.push(FenceReason::Isolated);
                // The fence stops the database: its health from before says nothing any more.
                // Only fresh answers as a primary (an operator started it again) may put it
                // back in service; probes that fail for a local reason must not.
                self.local.crashed();
            }
        }
        // A database fenced for isolation that an operator starts again, with no live primary
        // beside it, is in service again.
        if self.fenced == Some(FenceReason::Isolated)
            && !isolated
            && self.local.is_healthy(DbRole::Primary)
            && !self.peer_primary_alive(now)
        {
            self.fenced = None;
        }
        isolated
    }

    /// Priority and preemption: a healthy primary outranks any standby and preempts; the
    /// newest primary outranks an old one; a node that gave up promoting sits low until a
    /// primary serves again (the peer's, or ours promoted by hand).
    fn priority(&mut self, now: Instant, out: &mut Vec<Decision>) {
        let local_primary = self.local.is_healthy(DbRole::Primary);
        let failed_before = matches!(
            self.promotion,
            Promotion::GaveUp | Promotion::RetryAt { .. }
        );
        if failed_before && (local_primary || self.peer_primary_alive(now)) {
            // A primary serves again: a later failure of it is a new one.
            self.promotion = Promotion::Idle;
        }
        let c = &self.config;
        let newer_than_peer_primary = self.peer.last_role_primary
            && matches!(
                (self.local.timeline, self.peer.primary_timeline),
                (Some(local), Some(peer)) if local > peer
            );
        let priority = if self.promotion == Promotion::GaveUp {
            1
        } else if c.base_priority == 255 {
            255
        } else if local_primary && newer_than_peer_primary {
            // The newest primary outranks an old one whatever the configured priorities, so a
            // healed partition or a restarted old primary never draws the VIP back to itself.
            254
        } else if local_primary {
            c.base_priority.saturating_add(c.primary_bonus).min(254)
        } else if self.local.is_healthy(DbRole::Standby)
            && self
                .joined_at
                .is_some_and(|at| now >= at + c.standby_bonus_after)
        {
            // Below the newest primary's 254, never below the configured priority.
            c.base_priority
                .saturating_add(c.standby_bonus)
                .min(253)
                .max(c.base_priority)
        } else {
            c.base_priority
        };
        if self.sent.priority != Some(priority) {
            self.sent.priority = Some(priority);
            out.push(Decision::SetPriority(priority));
        }
        let preempt = c.preempt || local_primary;
        if self.sent.preempt != Some(preempt) {
            self.sent.preempt = Some(preempt);
            out.push(Decision::SetPreempt(preempt));
        }
    }

    /// Faults: Admin keeps the instance out of the election (start-up gate, old primary,
    /// fenced, demoted); Health resigns on a failed database (invariant 3's certain case);
    /// Isolation drops the VIP of a cut-off node.
    fn faults(&mut self, isolated: bool, out: &mut Vec<Decision>) {
        let admin =
            !self.startup_done || self.needs_rejoin || self.fenced.is_some() || self.demoted;
        let db_failed = self.local.observed && !self.local.healthy;
        let health = self.startup_done
            && !self.maintenance
            && db_failed
            && (self.config.triggers.database_failure || self.local.role != Some(DbRole::Primary));
        for (source, active) in [
            (FaultSource::Admin, admin),
            (FaultSource::Health, health),
            (FaultSource::Isolation, isolated),
        ] {
            if active != self.sent.faults.contains(&source) {
                if active {
                    self.sent.faults.insert(source);
                } else {
                    self.sent.faults.remove(&source);
                }
                out.push(Decision::SetFault { source, active });
            }
        }
    }

    /// Invariant 1: the VIP only on the master whose database is writable. While a promotion
    /// runs, its own write check decides ([`WriteVerified`]): on WarehousePG "not in recovery"
    /// comes before the coordinator can dispatch, so a probe's word is not enough.
    fn vip(&mut self, isolated: bool, arbiter_allows: bool, out: &mut Vec<Decision>) {
        let vip = self.vrrp == State::Master
            && arbiter_allows
            && self.startup_done
            && !matches!(self.promotion, Promotion::Running { .. })
            && self.local.is_healthy(DbRole::Primary)
            && !self.needs_rejoin
            && !self.demoted
            && self.fenced.is_none()
            && !isolated;
        if vip != self.sent.vip {
            self.sent.vip = vip;
            out.push(if vip {
                Decision::InstallVip
            } else {
                Decision::RemoveVip
            });
        }
    }

    /// Synchronous replication (`[replication] mode`): on a healthy primary that serves, require
    /// the streaming standby, or commit alone on evidence it cannot be promoted (the table in
    /// [`crate::sync_standby`]).
    ///
    /// With an arbiter, Patroni's ordering contract: etcd's sync record names the standby once
    /// this primary lists it `sync`, and says "none" — acknowledged by etcd, written while the
    /// key is ours — *before* the primary commits alone; an etcd error holds the relax (writes
    /// wait, as in `sync-strict`) until a write succeeds.
    fn synchronous_standby(&mut self, now: Instant, out: &mut Vec<Decision>) {
        let serving = self.local.is_healthy(DbRole::Primary)
            && !self.needs_rejoin
            && !self.demoted
            && self.fenced.is_none();
        let mut may_relax = true;
        self.relax_waits_for_record = false;
        if let Some(arbiter) = self
            .arbiter
            .as_mut()
            .filter(|_| self.sync.mode() != SyncMode::Async)
        {
            let want = self.sync.wants(serving, now);
            let record = match want {
                Some(SyncTarget::Alone) => Some(SyncRecordWrite::None),
                _ if serving && self.sync.standby_listed_sync() => Some(SyncRecordWrite::Standby),
                _ => None,
            };
            if let Some(write) = arbiter.record_step(record, now) {
                out.push(Decision::WriteSyncRecord(write));
            }
            may_relax = arbiter.may_relax();
            self.relax_waits_for_record = want == Some(SyncTarget::Alone) && !may_relax;
        }
        if let Some(target) = self.sync.decide(serving, may_relax, now) {
            out.push(Decision::SetSynchronousStandby(target));
        }
    }

    /// Invariant 10, with an arbiter: who asks for the leader key, what a lease that ran out
    /// does, and whether the VIP is allowed (returned).
    ///
    /// - A healthy primary (or a promotion under way) keeps the key; a standby asks for it only
    ///   once its promotion is held by nothing else (`hold` is the arbiter's own).
    /// - Anything else releases it at once: a crashed database resigns the key without waiting
    ///   for its lease, so the standby can take over as fast as without an arbiter.
    /// - The VIP only while the key is ours, or, with `failsafe`, past its lease while etcd gives
    ///   no answer and the peer confirms it is not taking over: its latest answer said standby,
    ///   within the alive window plus a probe timeout, and our primary lists its WAL receiver
    ///   streaming from
    ///   us — a standby that hears its primary never promotes (invariant 2).
    /// - A master that served and lost the VIP this way fences its database, if configured.
    fn arbiter(
        &mut self,
        now: Instant,
        hold: Option<Hold>,
        out: &mut Vec<Decision>,
        release: &mut Vec<Decision>,
        fences: &mut Vec<FenceReason>,
    ) -> bool {
        let window = self.config.peer_alive_window;
        // Samples arrive when probes finish: the next one may be in flight for a probe timeout.
        let fresh = window + self.config.peer_probe_timeout;
        let peer_confirms = self.peer.latest_not_serving
            && !self.peer.latest_primary
            && self
                .peer
                .reachable_at
                .is_some_and(|at| now.saturating_duration_since(at) < fresh)
            && self
                .local_position_at
                .is_some_and(|at| now.saturating_duration_since(at) < fresh)
            && self
                .local_position
                .and_then(|p| p.standby)
                .is_some_and(|row| row.streaming);
        let local_primary = self.local.is_healthy(DbRole::Primary);
        let in_service =
            self.startup_done && !self.needs_rejoin && self.fenced.is_none() && !self.demoted;
        let promoting = matches!(self.promotion, Promotion::Running { .. });
        let Some(arbiter) = &mut self.arbiter else {
            return true;
        };
        // A database fenced for a lost lease stays out until it is rebuilt as a standby
        // (`return_to_service`) or the daemon restarts: while the fence runs it still answers as
        // a healthy primary, and un-fencing on that answer would put it back at once.
        // A standby that holds the key and is refused by the sync record keeps it: the operator
        // may promote it anyway, and it lets go once the old primary is seen alive (that hold
        // comes first).
        let candidate = matches!(hold, Some(Hold::ArbiterKey(_) | Hold::SyncRecord(_)));
        let want = in_service && (local_primary || promoting || candidate);
        let action = if want {
            ArbiterAction::Campaign
        } else {
            ArbiterAction::Release
        };
        // Nothing to release before anything was asked for.
        if arbiter.asked != Some(action) && (want || arbiter.asked.is_some()) {
            arbiter.asked = Some(action);
            if want {
                out.push(Decision::Arbiter(action));
            } else {
                arbiter.key_gone();
                release.push(Decision::Arbiter(action));
            }
        }
        let held = arbiter.held(now);
        // The key this node gave up went to the other node while this database still lives
        // as a primary (its health failed): only the holder may be primary, and the new holder
        // is about to promote. A database whose postmaster exited has nothing left to stop. Only
        // after our own release: a restarted daemon first sees its earlier run's key under its
        // own name, which it adopts.
        if !held
            && arbiter.rules.fence_on_loss
            && arbiter.asked == Some(ArbiterAction::Release)
            && matches!(arbiter.latest, Some(ArbiterSample::HeldByOther { .. }))
            && self.local.role == Some(DbRole::Primary)
            && !self.local.exited
            && self.fenced.is_none()
            && !promoting
            && self.startup_done
        {
            self.fenced = Some(FenceReason::LeaseLost);
            fences.push(FenceReason::LeaseLost);
        }
        let etcd_silent = matches!(arbiter.latest, Some(ArbiterSample::Unknown { .. }));
        let failsafe = !held
            && arbiter.rules.failsafe
            && etcd_silent
            && arbiter.held_until.is_some()
            && peer_confirms;
        self.failsafe_active = failsafe;
        let allowed = held || failsafe;
        // Only a master that would otherwise keep serving has lost something to the arbiter (a
        // crashed database loses the VIP to its own rule).
        if !allowed && self.sent.vip && local_primary && !arbiter.lost {
            arbiter.lost = true;
            out.push(Decision::Notice(Notice::LeaseLost));
            if arbiter.rules.fence_on_loss
                && self.local.role == Some(DbRole::Primary)
                && self.fenced.is_none()
            {
                self.fenced = Some(FenceReason::LeaseLost);
                fences.push(FenceReason::LeaseLost);
            }
        }
        allowed
    }

    /// Invariants 2 and 3: start or continue a promotion when this node is master over a
    /// standby database, unless something holds it (the returned [`Hold`]).
    fn promotion_step(&mut self, now: Instant, out: &mut Vec<Decision>) -> Option<Hold> {
        let c = &self.config;
        let candidate = self.vrrp == State::Master
            && self.startup_done
            && self.local.is_healthy(DbRole::Standby)
            && !self.needs_rejoin
            && !self.demoted
            && self.fenced.is_none();
        let attempt = match self.promotion {
            Promotion::Running { .. } | Promotion::GaveUp => return None,
            Promotion::RetryAt { attempt, at } => {
                // Not master (it resigned after the failure) or not a candidate: the count is
                // kept until a primary serves again (see `priority`).
                if !candidate || now < at {
                    return None;
                }
                attempt
            }
            Promotion::Idle => 1,
        };
        if !candidate {
            return None;
        }
        if self.maintenance {
            return Some(Hold::Maintenance);
        }
        if self.peer.latest_unknown {
            return Some(Hold::PeerUnknown);
        }
        // The certain case: the master resigned (priority 0) — its database failed or it stopped
        // — and the peer's host answers that its database is down or a standby. A priority-0
        // advert alone is not enough: anyone on the link can send one, so without that answer
        // the master counts as silent (witnesses and the confirmation time apply).
        let certain = self.master_reason == Some(TransitionReason::MasterResigned)
            && self.peer.latest_not_serving;
        let peer_reachable_recently = self.peer.reachable_at.is_some_and(|at| {
            now.saturating_duration_since(at) < c.peer_alive_window.max(c.confirmation)
        });
        let allowed = if certain || peer_reachable_recently {
            // The peer host answers (or said goodbye): if anything failed, it is its database.
            c.triggers.database_failure
        } else {
            c.triggers.silent_master()
        };
        if !allowed {
            return Some(Hold::TriggerNotConfigured);
        }
        // Invariant 2: never promote while the old primary is known to be alive.
        if self
            .peer
            .primary_within(c.peer_alive_window, c.peer_probe_timeout, now)
        {
            return Some(Hold::PeerPrimaryAlive);
        }
        if self.local.primary_heard_within(c.wal_freshness, now) {
            // The WAL receiver was streaming at the last sample. When the primary crashed, it
            // stopped within milliseconds, but the next sample may be a probe interval away:
            // ask for one now rather than wait for it.
            if !self.local_check_asked {
                self.local_check_asked = true;
                out.push(Decision::ObserveLocal);
            }
            return Some(Hold::WalReceiverFresh);
        }
        if !certain && c.witness_enabled {
            // A silent master, or are we the one cut off? Only a witness answer to a round sent
            // after we became master tells: an older one may predate the cut. Rounds run on
            // their own cadence; ask for one now rather than wait for it.
            let since = self.master_since.unwrap_or(now);
            let witnessed = self
                .witnesses
                .answered_round_sent_at
                .is_some_and(|sent| sent >= since);
            if !witnessed {
                if !self.witness_check_asked {
                    self.witness_check_asked = true;
                    out.push(Decision::CheckWitnesses);
                }
                return Some(Hold::AwaitingWitnesses);
            }
        }
        if !certain {
            // A silent master may be a blip: its database must stay unanswering for the whole
            // confirmation time (counted from the last time it answered as primary).
            let last_primary = self.peer.primary_at.unwrap_or(self.started_at);
            let until = last_primary + c.confirmation;
            if now < until {
                return Some(Hold::Confirming { until });
            }
        }
        // Invariant 11: never promote a standby that is not known to hold everything the
        // primary acknowledged, unless the operator accepts the loss for this one promotion.
        if let Err(why) = self.replication.promotable() {
            if !self.accept_data_loss {
                return Some(Hold::NotPromotable(why));
            }
        }
        // Invariant 10: with an arbiter, the last gate is its key. Asking for it only here, past
        // every other hold, keeps a standby from taking it while the old primary is seen alive.
        if let Some(arbiter) = &self.arbiter {
            if !arbiter.held(now) {
                return Some(Hold::ArbiterKey(match arbiter.latest {
                    Some(ArbiterSample::Unknown { .. }) => KeyState::Unknown,
                    Some(ArbiterSample::HeldByOther { .. }) => KeyState::HeldByOther,
                    _ => KeyState::Campaigning,
                }));
            }
            // In a sync mode, the key is not enough: etcd's sync record, read since the key is
            // ours (the old primary can no longer write it), must name this node. "none" means
            // the primary committed alone after it stopped waiting for us.
            if self.config.sync.mode != SyncMode::Async {
                if let Err(why) = arbiter.record_allows_promotion() {
                    if !self.accept_data_loss {
                        return Some(Hold::SyncRecord(why));
                    }
                }
            }
        }
        self.promotion = Promotion::Running { attempt };
        out.push(Decision::Promote { attempt });
        None
    }
}
