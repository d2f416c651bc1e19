//! The safety rules, one scenario per test: inputs at given times (ms from start) and the
//! decisions they must and must not produce.

use std::time::{Duration, Instant};

use whpg_policy::{
    Decision, FenceReason, Hold, Input, LocalSample, Notice, PeerSample, PlannedRefusal, Policy,
    PolicyConfig, PrimaryPosition, ReplicationConfig, StandbyRow, SyncConfig, SyncMode, SyncTarget,
    Triggers, Unpromotable, WalReceiver, WriteVerified,
};
use whpg_vrrp::{FaultSource, State, TransitionReason};

fn config() -> PolicyConfig {
    PolicyConfig {
        base_priority: 98,
        preempt: false,
        primary_bonus: 100,
        standby_bonus: 0,
        standby_bonus_after: Duration::ZERO,
        triggers: Triggers::all(),
        confirmation: Duration::from_secs(3),
        wal_freshness: Duration::from_secs(1),
        peer_alive_window: Duration::from_millis(100),
        peer_probe_timeout: Duration::from_millis(500),
        fall: 3,
        rise: 2,
        fence_when_isolated: true,
        witness_enabled: true,
        isolation_after: Duration::from_millis(1500),
        promotion_attempts: 3,
        promotion_retry_delay: Duration::from_secs(1),
        startup_grace: Duration::from_secs(5),
        replication: ReplicationConfig {
            maximum_lag: 1 << 20,
            maximum_lag_time: Duration::from_secs(1),
            synchronous_required: false,
        },
        sync: whpg_policy::SyncConfig::disabled(),
    }
}

/// Where the primary's WAL is in the scenarios where nothing is missing.
const WAL_AT: u64 = 0x3000060;

/// The primary's snapshot: at `current`, the standby streaming with `flush` on its disk.
const fn streaming_at(current: u64, flush: u64) -> Option<PrimaryPosition> {
    Some(PrimaryPosition {
        current,
        standby: Some(StandbyRow {
            streaming: true,
            synchronous: false,
            flush: Some(flush),
        }),
    })
}

const PRIMARY: LocalSample = LocalSample::Primary {
    timeline: Some(1),
    position: None,
};
const STANDBY_IDLE: LocalSample = LocalSample::Standby {
    timeline: Some(1),
    wal_receiver: None,
    received: Some(WAL_AT),
};
/// A live primary with this node's standby streaming and caught up.
const PEER_PRIMARY: PeerSample = PeerSample::Primary {
    timeline: Some(1),
    position: streaming_at(WAL_AT, WAL_AT),
};

/// A policy under test and everything it decided, with the time.
struct Run {
    policy: Policy,
    t0: Instant,
    log: Vec<(u64, Decision)>,
}

impl Run {
    fn new(config: PolicyConfig) -> Run {
        let t0 = Instant::now();
        let mut policy = Policy::new(config, t0);
        let log = policy.start(t0).into_iter().map(|d| (0, d)).collect();
        Run { policy, t0, log }
    }

    fn at(&mut self, ms: u64, input: Input) -> Vec<Decision> {
        let out = self
            .policy
            .handle(input, self.t0 + Duration::from_millis(ms));
        self.log.extend(out.iter().cloned().map(|d| (ms, d)));
        out
    }

    /// A witness round sent and ended at `ms`.
    fn witness(&mut self, ms: u64, quorum: bool) -> Vec<Decision> {
        let round_sent_at = self.t0 + Duration::from_millis(ms);
        self.at(
            ms,
            Input::Witness {
                quorum,
                round_sent_at,
            },
        )
    }

    /// Probe both databases every 100 ms from `from` to `to` (inclusive) with the same answers.
    fn probes(&mut self, from: u64, to: u64, local: LocalSample, peer: PeerSample) {
        let mut ms = from;
        while ms <= to {
            self.at(ms, Input::Local(local));
            self.at(ms, Input::Peer(peer));
            ms += 100;
        }
    }

    fn master(&mut self, ms: u64, reason: TransitionReason) -> Vec<Decision> {
        self.at(
            ms,
            Input::Vrrp {
                to: State::Master,
                reason,
            },
        )
    }

    fn when(&self, wanted: &Decision) -> Option<u64> {
        self.log.iter().find(|(_, d)| d == wanted).map(|(t, _)| *t)
    }

    fn decided_count(&self, pred: impl Fn(&Decision) -> bool) -> usize {
        self.log.iter().filter(|(_, d)| pred(d)).count()
    }

    fn decided(&self, pred: impl Fn(&Decision) -> bool) -> bool {
        self.log.iter().any(|(_, d)| pred(d))
    }

    /// A standby node past its start-up checks, VRRP backup, the peer a live primary.
    fn standby_settled(config: PolicyConfig) -> Run {
        let mut run = Run::new(config);
        run.probes(0, 500, STANDBY_IDLE, PEER_PRIMARY);
        run.at(
            500,
            Input::Vrrp {
                to: State::Backup,
                reason: TransitionReason::Startup,
            },
        );
        run
    }

    /// A primary node past its start-up checks, VRRP master, the peer a standby.
    fn primary_settled(config: PolicyConfig) -> Run {
        let mut run = Run::new(config);
        run.probes(0, 500, PRIMARY, PeerSample::Standby);
        run.master(500, TransitionReason::MasterDown);
        run
    }
}

#[test]
fn start_up_gate_keeps_the_node_out_of_the_election_until_it_knows_both_databases() {
    let mut run = Run::new(config());
    assert_eq!(
        run.log[..2],
        [
            (0, Decision::SetPriority(98)),
            (0, Decision::SetPreempt(false))
        ]
    );
    assert!(run.log.contains(&(
        0,
        Decision::SetFault {
            source: FaultSource::Admin,
            active: true
        }
    )));
    run.at(100, Input::Local(STANDBY_IDLE));
    assert!(!run.decided(|d| *d
        == Decision::SetFault {
            source: FaultSource::Admin,
            active: false
        }));
    run.at(100, Input::Peer(PEER_PRIMARY));
    // One good sample is not yet "healthy" with rise 2: the gate waits for the second.
    assert!(!run.decided(|d| *d
        == Decision::SetFault {
            source: FaultSource::Admin,
            active: false
        }));
    run.at(200, Input::Local(STANDBY_IDLE));
    assert_eq!(
        run.when(&Decision::SetFault {
            source: FaultSource::Admin,
            active: false
        }),
        Some(200)
    );
    // Opening the gate with a healthy database raises no health fault on the way.
    assert!(!run.decided(|d| matches!(
        d,
        Decision::SetFault {
            source: FaultSource::Health,
            active: true
        }
    )));
}

#[test]
fn a_transient_mastership_at_start_up_never_promotes() {
    // Both daemons started together: the standby became master before it heard from the peer.
    let mut run = Run::new(config());
    run.at(10, Input::Local(STANDBY_IDLE));
    run.at(20, Input::Local(STANDBY_IDLE));
    run.master(30, TransitionReason::MasterDown);
    run.probes(100, 3000, STANDBY_IDLE, PEER_PRIMARY);
    run.at(
        3000,
        Input::Vrrp {
            to: State::Backup,
            reason: TransitionReason::Preempted {
                by: "10.77.0.11".parse().unwrap(),
                priority: 200,
            },
        },
    );
    run.probes(3100, 10_000, STANDBY_IDLE, PEER_PRIMARY);
    assert!(!run.decided(|d| matches!(d, Decision::Promote { .. })));
}

#[test]
fn a_healthy_primary_outranks_any_standby_and_preempts() {
    let run = Run::primary_settled(config());
    assert!(run
        .log
        .iter()
        .any(|(_, d)| *d == Decision::SetPriority(198)));
    assert!(run
        .log
        .iter()
        .any(|(_, d)| *d == Decision::SetPreempt(true)));
    let standby = Run::standby_settled(config());
    assert!(!standby.decided(|d| *d == Decision::SetPriority(198)));
}

#[test]
fn a_healthy_standby_takes_its_bonus_and_stays_below_a_healthy_primary() {
    // Priorities 98 (this node) and 100 (the peer): the daemon's standby bonus is 99 - 2.
    let with_bonus = || PolicyConfig {
        standby_bonus: 97,
        ..config()
    };
    let standby = Run::standby_settled(with_bonus());
    assert!(
        standby.decided(|d| *d == Decision::SetPriority(195)),
        "{:?}",
        standby.log
    );
    // The peer as a healthy primary advertises 100 + 100: above 195.
    let primary = Run::primary_settled(with_bonus());
    assert!(primary.decided(|d| *d == Decision::SetPriority(198)));
    // A standby whose database fails loses the bonus (and resigns).
    let mut standby = Run::standby_settled(with_bonus());
    for ms in [600, 700, 800] {
        standby.at(ms, Input::Local(LocalSample::Down));
    }
    assert!(
        standby.log.contains(&(800, Decision::SetPriority(98))),
        "{:?}",
        standby.log
    );
}

#[test]
fn the_standby_bonus_waits_one_master_down_interval_after_joining_the_election() {
    let mut run = Run::new(PolicyConfig {
        standby_bonus: 97,
        standby_bonus_after: Duration::from_millis(362),
        ..config()
    });
    run.probes(0, 300, STANDBY_IDLE, PEER_PRIMARY);
    let joined = run
        .when(&Decision::Notice(Notice::StartupChecksDone))
        .expect("start-up checks done");
    assert!(!run.decided(|d| *d == Decision::SetPriority(195)));
    // The policy asks to be woken by then at the latest.
    assert!(run
        .policy
        .next_wakeup()
        .is_some_and(|t| t <= run.t0 + Duration::from_millis(joined + 362)));
    run.at(joined + 361, Input::Tick);
    assert!(!run.decided(|d| *d == Decision::SetPriority(195)));
    run.at(joined + 362, Input::Tick);
    assert_eq!(
        run.when(&Decision::SetPriority(195)),
        Some(joined + 362),
        "{:?}",
        run.log
    );
}

#[test]
fn the_vip_is_installed_only_on_a_master_with_a_writable_database() {
    let mut run = Run::new(config());
    run.probes(0, 500, PRIMARY, PeerSample::Standby);
    assert!(
        !run.decided(|d| *d == Decision::InstallVip),
        "backup: no VIP"
    );
    run.master(500, TransitionReason::MasterDown);
    assert_eq!(run.when(&Decision::InstallVip), Some(500));

    let mut standby = Run::standby_settled(config());
    standby.probes(600, 700, STANDBY_IDLE, PeerSample::Unreachable);
    standby.master(700, TransitionReason::MasterDown);
    assert!(
        !standby.decided(|d| *d == Decision::InstallVip),
        "a standby master has no VIP"
    );
}

#[test]
fn a_database_crash_on_the_master_resigns_at_once() {
    let mut run = Run::primary_settled(config());
    let out = run.at(1000, Input::PostmasterExited);
    assert!(out.contains(&Decision::SetFault {
        source: FaultSource::Health,
        active: true
    }));
    assert!(out.contains(&Decision::RemoveVip));
    assert!(out.contains(&Decision::SetPriority(98)));
}

#[test]
fn without_the_database_failure_trigger_a_crash_keeps_the_mastership_but_not_the_vip() {
    let mut config = config();
    config.triggers.database_failure = false;
    let mut run = Run::primary_settled(config);
    let out = run.at(1000, Input::PostmasterExited);
    assert!(!out.iter().any(|d| matches!(
        d,
        Decision::SetFault {
            source: FaultSource::Health,
            ..
        }
    )));
    assert!(
        out.contains(&Decision::RemoveVip),
        "invariant 1 holds regardless"
    );
}

#[test]
fn failing_probes_count_only_after_fall_in_a_row() {
    let mut run = Run::primary_settled(config());
    run.at(600, Input::Local(LocalSample::Down));
    run.at(700, Input::Local(LocalSample::Down));
    assert!(!run.decided(|d| *d == Decision::RemoveVip));
    let out = run.at(800, Input::Local(LocalSample::Down));
    assert!(out.contains(&Decision::RemoveVip));
}

#[test]
fn certain_takeover_promotes_as_soon_as_the_old_primary_is_no_longer_seen() {
    let mut run = Run::standby_settled(config());
    // Last answer as primary at 500 ms; the crash, then the resign; the peer refuses from then on.
    run.at(520, Input::Peer(PeerSample::DatabaseDown));
    // The refusal is newer than the primary's answer: invariant 2's window (100 ms after that
    // answer, until 600 ms) does not hold the promotion.
    run.master(560, TransitionReason::MasterResigned);
    assert_eq!(run.when(&Decision::Promote { attempt: 1 }), Some(560));
}

#[test]
fn an_orphaned_backends_answer_as_primary_after_the_crash_holds_nothing_once_a_connection_is_refused(
) {
    let mut run = Run::standby_settled(config());
    // The postmaster is killed at 540 ms while our query runs: its backend still answers as a
    // primary, then the new connection that follows is refused.
    run.at(541, Input::Peer(PEER_PRIMARY));
    run.at(542, Input::Peer(PeerSample::DatabaseDown));
    run.master(600, TransitionReason::MasterResigned);
    assert_eq!(run.when(&Decision::Promote { attempt: 1 }), Some(600));
}

#[test]
fn a_primary_answer_within_the_window_holds_a_certain_takeover_until_the_peer_is_seen_down() {
    let mut run = Run::standby_settled(config());
    // A priority-0 advert while the latest answer is still a live primary (anyone on the link
    // can send one): held until an answer says otherwise.
    let out = run.master(520, TransitionReason::MasterResigned);
    assert!(out.contains(&Decision::Notice(Notice::PromotionHeld(
        Hold::PeerPrimaryAlive
    ))));
    run.at(580, Input::Tick);
    assert_eq!(run.when(&Decision::Promote { attempt: 1 }), None);
    run.at(590, Input::Peer(PeerSample::DatabaseDown));
    assert_eq!(run.when(&Decision::Promote { attempt: 1 }), Some(590));
}

#[test]
fn a_fresh_wal_receiver_holds_promotion_until_it_goes_stale() {
    let mut run = Run::new(config());
    let streaming = LocalSample::Standby {
        timeline: Some(1),
        wal_receiver: Some(WalReceiver {
            streaming: true,
            last_message_age: Some(Duration::from_millis(50)),
        }),
        received: Some(WAL_AT),
    };
    run.probes(0, 500, streaming, PEER_PRIMARY);
    run.at(600, Input::Peer(PeerSample::DatabaseDown));
    let out = run.master(650, TransitionReason::MasterResigned);
    assert!(out.contains(&Decision::Notice(Notice::PromotionHeld(
        Hold::WalReceiverFresh
    ))));
    // Sampled at 500 ms with age 50 ms: fresh until 1450 ms.
    run.at(1449, Input::Tick);
    assert!(!run.decided(|d| matches!(d, Decision::Promote { .. })));
    run.at(1450, Input::Tick);
    assert_eq!(run.when(&Decision::Promote { attempt: 1 }), Some(1450));
}

#[test]
fn a_fresh_wal_receiver_hold_asks_for_a_local_sample_at_once_and_a_stopped_receiver_promotes() {
    let mut run = Run::new(config());
    let streaming = LocalSample::Standby {
        timeline: Some(1),
        wal_receiver: Some(WalReceiver {
            streaming: true,
            last_message_age: Some(Duration::from_millis(5)),
        }),
        received: Some(WAL_AT),
    };
    run.probes(0, 500, streaming, PEER_PRIMARY);
    // The primary crashed at 560 ms: its host answers that the database is down, and it resigns.
    run.at(562, Input::Peer(PeerSample::DatabaseDown));
    let out = run.master(620, TransitionReason::MasterResigned);
    assert!(out.contains(&Decision::Notice(Notice::PromotionHeld(
        Hold::WalReceiverFresh
    ))));
    assert_eq!(
        out.iter().filter(|d| **d == Decision::ObserveLocal).count(),
        1,
        "{out:?}"
    );
    // Asked once per mastership: a tick while held does not ask again.
    let out = run.at(621, Input::Tick);
    assert!(!out.contains(&Decision::ObserveLocal), "{out:?}");
    // The sample it asked for: the WAL receiver has stopped (its primary is gone).
    let stopped = LocalSample::Standby {
        timeline: Some(1),
        wal_receiver: None,
        received: Some(WAL_AT),
    };
    run.at(622, Input::Local(stopped));
    assert_eq!(
        run.when(&Decision::Promote { attempt: 1 }),
        Some(622),
        "promoted on the sample it asked for, not 100 ms later"
    );
}

#[test]
fn a_silent_master_is_promoted_over_only_after_the_confirmation_time() {
    let mut run = Run::standby_settled(config());
    // The primary's host vanishes after its answer at 500 ms.
    run.probes(600, 900, STANDBY_IDLE, PeerSample::Unreachable);
    run.master(900, TransitionReason::MasterDown);
    run.witness(910, true);
    run.probes(1000, 3400, STANDBY_IDLE, PeerSample::Unreachable);
    assert!(!run.decided(|d| matches!(d, Decision::Promote { .. })));
    assert!(run.decided(|d| matches!(
        d,
        Decision::Notice(Notice::PromotionHeld(Hold::Confirming { .. }))
    )));
    run.at(3500, Input::Tick);
    assert_eq!(
        run.when(&Decision::Promote { attempt: 1 }),
        Some(3500),
        "500 ms + 3 s"
    );
}

#[test]
fn a_blip_shorter_than_the_confirmation_time_changes_nothing() {
    let mut run = Run::standby_settled(config());
    run.probes(600, 1400, STANDBY_IDLE, PeerSample::Unreachable);
    run.master(900, TransitionReason::MasterDown);
    // The network returns at 1.5 s: the primary answers and outranks us again.
    run.probes(1500, 1500, STANDBY_IDLE, PEER_PRIMARY);
    run.at(
        1550,
        Input::Vrrp {
            to: State::Backup,
            reason: TransitionReason::Preempted {
                by: "10.77.0.11".parse().unwrap(),
                priority: 200,
            },
        },
    );
    run.probes(1600, 10_000, STANDBY_IDLE, PEER_PRIMARY);
    assert!(!run.decided(|d| matches!(
        d,
        Decision::Promote { .. } | Decision::InstallVip | Decision::Fence(_)
    )));
}

#[test]
fn the_fast_profile_promotes_a_silent_master_at_once() {
    let mut config = config();
    config.confirmation = Duration::ZERO;
    let mut run = Run::standby_settled(config);
    run.probes(600, 800, STANDBY_IDLE, PeerSample::Unreachable);
    run.witness(700, true);
    let out = run.master(860, TransitionReason::MasterDown);
    // The witnesses answered before the mastership, which proves nothing about now: ask them.
    assert!(out.contains(&Decision::CheckWitnesses), "{out:?}");
    assert!(out.contains(&Decision::Notice(Notice::PromotionHeld(
        Hold::AwaitingWitnesses
    ))));
    run.witness(861, true);
    assert_eq!(run.when(&Decision::Promote { attempt: 1 }), Some(861));
}

#[test]
fn an_isolated_standby_never_promotes_over_a_silent_master() {
    let mut config = config();
    config.confirmation = Duration::ZERO;
    let mut run = Run::standby_settled(config);
    // Cut off from the primary and the witnesses at 550 ms; the last round had answered at 500.
    run.witness(500, true);
    run.probes(600, 800, STANDBY_IDLE, PeerSample::Unreachable);
    let out = run.master(860, TransitionReason::MasterDown);
    assert!(out.contains(&Decision::CheckWitnesses), "{out:?}");
    run.witness(860, false);
    run.probes(900, 5000, STANDBY_IDLE, PeerSample::Unreachable);
    let mut ms = 1060;
    while ms <= 5000 {
        run.witness(ms, false);
        ms += 200;
    }
    assert!(
        !run.decided(|d| matches!(d, Decision::Promote { .. } | Decision::InstallVip)),
        "{:?}",
        run.log
    );
    assert_eq!(
        run.decided_count(|d| *d == Decision::CheckWitnesses),
        1,
        "one extra round per mastership"
    );
    assert!(run.policy.status().isolated);
}

/// The settled standby takes over from a crashed primary (seen down at 550 ms, its resign at
/// 700 ms) and a write proves the promotion at 850 ms, on timeline 2: the run, and what the
/// proof decided.
fn promoted_after_a_crash() -> (Run, Vec<Decision>) {
    let mut run = Run::standby_settled(config());
    run.at(550, Input::Peer(PeerSample::DatabaseDown));
    run.master(700, TransitionReason::MasterResigned);
    let out = run.at(
        850,
        Input::PromotionFinished(Ok(WriteVerified::assertion(Some(2)))),
    );
    (run, out)
}

#[test]
fn the_newest_primary_outranks_an_old_one_until_it_is_seen_as_a_standby() {
    let (mut run, out) = promoted_after_a_crash();
    // The peer was last seen as a primary on timeline 1: whatever comes back there (a restart,
    // a healed partition) must not outrank us, primary bonus or not.
    assert!(out.contains(&Decision::SetPriority(254)), "{out:?}");
    run.at(900, Input::Peer(PeerSample::Unreachable));
    run.at(1000, Input::Peer(PeerSample::DatabaseDown));
    assert!(!run.decided(|d| *d == Decision::SetPriority(198)));
    // Rebuilt and streaming from us: the usual priorities again.
    let out = run.at(5000, Input::Peer(PeerSample::Standby));
    assert!(out.contains(&Decision::SetPriority(198)), "{out:?}");
}

#[test]
fn a_verified_promotion_installs_the_vip_and_raises_the_priority() {
    let (run, out) = promoted_after_a_crash();
    assert!(run.decided(|d| *d == Decision::Promote { attempt: 1 }));
    assert!(out.contains(&Decision::Notice(Notice::PromotionSucceeded { attempt: 1 })));
    assert!(out.contains(&Decision::InstallVip));
    // 254, not 98 + 100: the peer was last seen as a primary on the older timeline.
    assert!(out.contains(&Decision::SetPriority(254)));
    assert_eq!(run.policy.status().local_timeline, Some(2));
}

#[test]
fn a_standby_answer_from_before_the_proof_neither_promotes_again_nor_drops_the_vip() {
    // Pair simulation finding: the local probe asked while the database was still in recovery
    // and its answer came just after the write proved the promotion. Taken as news, the node
    // removed the VIP and promoted its new primary a second time.
    let (mut run, out) = promoted_after_a_crash();
    assert!(out.contains(&Decision::InstallVip), "{out:?}");
    let out = run.at(851, Input::Local(STANDBY_IDLE));
    assert!(out.is_empty(), "a stale answer changed something: {out:?}");
    // Within the probe timeout (500 ms) of the proof, every such answer is from before it.
    run.at(1340, Input::Local(STANDBY_IDLE));
    assert_eq!(
        run.decided_count(|d| matches!(d, Decision::Promote { .. })),
        1,
        "{:?}",
        run.log
    );
    assert!(!run.decided(|d| *d == Decision::RemoveVip));
    assert!(!run.policy.status().promoting);
}

#[test]
fn failed_promotions_are_retried_then_the_mastership_is_released() {
    // Invariant 3: every failed attempt releases the mastership at once; re-elected (nobody
    // else can serve), the node tries again after the retry delay, and gives up after three.
    let mut config = config();
    config.confirmation = Duration::ZERO;
    let mut run = Run::standby_settled(config);
    run.at(550, Input::Peer(PeerSample::DatabaseDown));
    run.master(700, TransitionReason::MasterResigned);
    assert!(run.decided(|d| *d == Decision::Promote { attempt: 1 }));
    let out = run.at(800, Input::PromotionFinished(Err("exit 2".into())));
    assert!(out.contains(&Decision::Resign), "{out:?}");
    let backup = Input::Vrrp {
        to: State::Backup,
        reason: TransitionReason::Resigned,
    };
    run.at(810, backup.clone());
    // Elected again after Master_Down_Interval: the retry waits for its delay (800 + 1000).
    run.master(1200, TransitionReason::MasterDown);
    run.witness(1210, true);
    run.at(1799, Input::Tick);
    assert!(!run.decided(|d| *d == Decision::Promote { attempt: 2 }));
    run.at(1800, Input::Tick);
    assert!(run.decided(|d| *d == Decision::Promote { attempt: 2 }));
    let out = run.at(
        1900,
        Input::PromotionFinished(Err("timed out after 60s".into())),
    );
    assert!(out.contains(&Decision::Resign), "{out:?}");
    run.at(1910, backup.clone());
    run.master(2300, TransitionReason::MasterDown);
    run.witness(2310, true);
    run.at(2900, Input::Tick);
    assert!(run.decided(|d| *d == Decision::Promote { attempt: 3 }));
    let out = run.at(
        3000,
        Input::PromotionFinished(Err("verification write failed".into())),
    );
    assert!(out.contains(&Decision::Resign), "{out:?}");
    assert!(out.contains(&Decision::SetPriority(1)));
    assert!(!run.decided(|d| *d == Decision::InstallVip));
    assert!(run.policy.status().promotion_gave_up);
    // Master again later (the peer did not take over): no fourth attempt, no VIP.
    run.at(3100, backup);
    run.master(3500, TransitionReason::MasterDown);
    run.witness(3510, true);
    run.at(10_000, Input::Tick);
    assert!(!run.decided(|d| *d == Decision::Promote { attempt: 4 }));
}

#[test]
fn a_node_that_gave_up_promoting_does_not_start_over_when_elected_again() {
    // Lab finding: the resignation after the last failed attempt made the node BACKUP, which reset
    // "gave up"; with no other candidate it was elected again at once and started over from
    // attempt 1, forever.
    let mut run = Run::standby_settled(config());
    run.at(550, Input::Peer(PeerSample::DatabaseDown));
    run.master(700, TransitionReason::MasterResigned);
    run.at(800, Input::PromotionFinished(Err("exit 1".into())));
    run.at(1800, Input::Tick);
    run.at(1900, Input::PromotionFinished(Err("exit 1".into())));
    run.at(2900, Input::Tick);
    let out = run.at(3000, Input::PromotionFinished(Err("exit 1".into())));
    assert!(out.contains(&Decision::Resign), "{out:?}");
    let gave_up_at = run.log.len();
    run.at(
        3000,
        Input::Vrrp {
            to: State::Backup,
            reason: TransitionReason::Resigned,
        },
    );
    run.master(3400, TransitionReason::MasterDown);
    run.probes(3500, 10_000, STANDBY_IDLE, PeerSample::DatabaseDown);
    run.at(10_000, Input::Tick);
    let later = &run.log[gave_up_at..];
    assert!(
        !later
            .iter()
            .any(|(_, d)| matches!(d, Decision::Promote { .. })),
        "{later:?}"
    );
    assert!(!later.iter().any(|(_, d)| *d == Decision::SetPriority(98)));
    assert!(run.policy.status().promotion_gave_up);
    // The old primary serves again: a later failure of it deserves fresh attempts.
    let out = run.at(10_100, Input::Peer(PEER_PRIMARY));
    assert!(out.contains(&Decision::SetPriority(98)), "{out:?}");
    assert!(!run.policy.status().promotion_gave_up);
}

#[test]
fn a_late_answer_of_a_live_peer_primary_does_not_open_a_gap_for_promotion() {
    // Lab finding: the master's daemon stopped (priority 0), its database up. Peer samples arrive
    // when probes finish; when one came a few ms later than an interval after the previous one,
    // the 100 ms alive window had lapsed and the standby promoted beside the live primary. The
    // peer now stays alive while the probe after a good answer is in flight (up to its timeout).
    let mut run = Run::standby_settled(config());
    run.master(560, TransitionReason::MasterResigned);
    assert_eq!(
        run.policy.status().hold,
        Some(Hold::PeerPrimaryAlive),
        "{:?}",
        run.log
    );
    // Answers 10-40 ms late, ticks in between.
    for (tick, answer) in [(600, 640), (740, 770), (870, 910)] {
        run.at(tick, Input::Tick);
        run.at(tick + 1, Input::Local(STANDBY_IDLE));
        run.at(answer, Input::Peer(PEER_PRIMARY));
    }
    assert!(!run.decided(|d| matches!(d, Decision::Promote { .. })));
    // Its database crashes: the next answer says so and ends the hold at once.
    run.at(1010, Input::Peer(PeerSample::DatabaseDown));
    assert_eq!(run.when(&Decision::Promote { attempt: 1 }), Some(1010));
}

#[test]
fn a_peer_primary_whose_probe_times_out_holds_only_the_alive_window() {
    // The in-flight extension ends with the next answer: no answer within the probe timeout
    // leaves only invariant 2's window after the last answer as primary (500 + 100 ms). (An
    // unanswered resign is not corroborated, so the fast profile and a witness round apply.)
    let mut config = config();
    config.confirmation = Duration::ZERO;
    let mut run = Run::standby_settled(config);
    run.master(560, TransitionReason::MasterResigned);
    run.at(560, Input::Peer(PeerSample::Unreachable));
    run.witness(570, true);
    assert_eq!(
        run.policy.next_wakeup(),
        Some(run.t0 + Duration::from_millis(600))
    );
    run.at(600, Input::Tick);
    assert_eq!(run.when(&Decision::Promote { attempt: 1 }), Some(600));
}

#[test]
fn a_priority_zero_advert_is_certain_only_once_the_peers_database_is_seen_down() {
    // Anyone on the link can send priority 0. Without an answer from the peer's host saying its
    // database is down (or a standby), the master counts as silent: witnesses and confirmation.
    let mut run = Run::standby_settled(config());
    run.probes(600, 3400, STANDBY_IDLE, PeerSample::Unreachable);
    run.master(610, TransitionReason::MasterResigned);
    run.witness(620, true);
    assert!(!run.decided(|d| matches!(d, Decision::Promote { .. })));
    assert!(run.decided(|d| matches!(
        d,
        Decision::Notice(Notice::PromotionHeld(Hold::Confirming { .. }))
    )));
    run.at(3500, Input::Tick);
    assert_eq!(run.when(&Decision::Promote { attempt: 1 }), Some(3500));

    // Corroborated: the peer's host answers that its database is down: at once.
    let mut run = Run::standby_settled(config());
    run.at(600, Input::Peer(PeerSample::DatabaseDown));
    run.master(610, TransitionReason::MasterResigned);
    assert_eq!(run.when(&Decision::Promote { attempt: 1 }), Some(610));
}

#[test]
fn an_old_primary_on_an_older_timeline_is_fenced_and_never_serves() {
    let mut run = Run::new(config());
    run.at(0, Input::Local(PRIMARY));
    run.at(100, Input::Local(PRIMARY));
    run.at(
        100,
        Input::Peer(PeerSample::Primary {
            timeline: Some(2),
            position: streaming_at(WAL_AT, WAL_AT),
        }),
    );
    let fence = Decision::Fence(FenceReason::OlderTimeline { local: 1, peer: 2 });
    assert_eq!(run.when(&fence), Some(100));
    assert!(run.decided(|d| *d
        == Decision::Notice(Notice::NeedsRejoin {
            local_timeline: 1,
            peer_timeline: 2
        })));
    assert!(!run.decided(|d| *d
        == Decision::SetFault {
            source: FaultSource::Admin,
            active: false
        }));
    run.master(200, TransitionReason::MasterDown);
    run.probes(300, 5000, PRIMARY, PeerSample::Unreachable);
    assert!(!run.decided(|d| *d == Decision::InstallVip));
    assert!(run.policy.status().needs_rejoin);
}

#[test]
fn an_old_primary_restarted_after_a_crash_is_fenced_on_its_first_answer() {
    let mut run = Run::primary_settled(config());
    run.at(550, Input::PostmasterExited);
    run.probes(600, 1500, LocalSample::Down, PeerSample::Standby);
    // The standby took over: the peer now answers as a primary on timeline 2.
    run.probes(
        1600,
        3000,
        LocalSample::Down,
        PeerSample::Primary {
            timeline: Some(2),
            position: streaming_at(WAL_AT, WAL_AT),
        },
    );
    assert!(!run.decided(|d| matches!(d, Decision::Fence(_))));
    // Someone starts the old primary again: one answer as a primary is enough (no `rise`).
    let out = run.at(3050, Input::Local(PRIMARY));
    assert!(
        out.contains(&Decision::Fence(FenceReason::OlderTimeline {
            local: 1,
            peer: 2
        })),
        "{out:?}"
    );
    run.probes(
        3100,
        4000,
        PRIMARY,
        PeerSample::Primary {
            timeline: Some(2),
            position: streaming_at(WAL_AT, WAL_AT),
        },
    );
    assert!(
        !run.log
            .iter()
            .any(|(t, d)| *t >= 3050 && *d == Decision::InstallVip),
        "{:?}",
        run.log
    );
}

#[test]
fn an_isolated_primary_drops_the_vip_and_fences_its_database() {
    let mut run = Run::primary_settled(config());
    run.witness(500, true);
    run.probes(600, 1900, PRIMARY, PeerSample::Unreachable);
    run.witness(600, false);
    assert!(!run.decided(|d| matches!(d, Decision::Fence(_))));
    // Peer last answered at 500 ms, witnesses lost at 600 ms: isolated at 2100 ms.
    run.at(2099, Input::Tick);
    assert!(!run.decided(|d| matches!(d, Decision::Fence(_))));
    let out = run.at(2100, Input::Tick);
    assert!(
        out.contains(&Decision::Fence(FenceReason::Isolated)),
        "{out:?}"
    );
    assert!(out.contains(&Decision::SetFault {
        source: FaultSource::Isolation,
        active: true
    }));
    assert!(out.contains(&Decision::RemoveVip));
    let position = |wanted: &Decision| out.iter().position(|d| d == wanted);
    assert!(
        position(&Decision::RemoveVip) < position(&Decision::Fence(FenceReason::Isolated)),
        "the VIP goes before the database is stopped: {out:?}"
    );
}

#[test]
fn a_database_fenced_for_isolation_serves_again_only_on_a_fresh_answer_as_primary() {
    let mut run = Run::primary_settled(config());
    run.witness(500, true);
    run.probes(600, 1900, PRIMARY, PeerSample::Unreachable);
    run.witness(600, false);
    run.at(2100, Input::Tick);
    assert!(run.decided(|d| matches!(d, Decision::Fence(FenceReason::Isolated))));
    let installs = |run: &Run| run.decided_count(|d| *d == Decision::InstallVip);
    let before = installs(&run);
    // The fence stops the database, but our probes fail for a local reason (EMFILE) and say
    // nothing; the network heals. The last answer, from before the fence, is no evidence.
    for ms in (2200..=3000).step_by(100) {
        run.at(ms, Input::Local(LocalSample::Unknown));
        run.at(ms, Input::Peer(PeerSample::Standby));
    }
    run.witness(3000, true);
    run.master(3050, TransitionReason::MasterDown);
    run.at(3100, Input::Tick);
    assert_eq!(
        installs(&run),
        before,
        "the VIP went back on a fenced database"
    );
    // An operator starts it again: it answers as a primary, `rise` times.
    run.probes(3200, 3400, PRIMARY, PeerSample::Standby);
    assert_eq!(installs(&run), before + 1);
}

#[test]
fn a_lost_peer_with_witnesses_reachable_is_not_isolation() {
    let mut run = Run::primary_settled(config());
    run.witness(500, true);
    run.probes(600, 10_000, PRIMARY, PeerSample::Unreachable);
    assert!(!run.decided(|d| matches!(d, Decision::Fence(_) | Decision::RemoveVip)));
}

#[test]
fn without_witnesses_there_is_no_isolation_fencing() {
    let mut config = config();
    config.witness_enabled = false;
    let mut run = Run::primary_settled(config);
    run.probes(600, 10_000, PRIMARY, PeerSample::Unreachable);
    assert!(!run.decided(|d| matches!(d, Decision::Fence(_))));
}

#[test]
fn maintenance_mode_prevents_resigning_and_promoting() {
    let mut run = Run::primary_settled(config());
    run.at(550, Input::Maintenance(true));
    let out = run.at(600, Input::PostmasterExited);
    assert!(!out.iter().any(|d| matches!(
        d,
        Decision::SetFault {
            source: FaultSource::Health,
            active: true
        }
    )));

    let mut standby = Run::standby_settled(config());
    standby.at(550, Input::Maintenance(true));
    standby.at(560, Input::Peer(PeerSample::DatabaseDown));
    let out = standby.master(700, TransitionReason::MasterResigned);
    assert!(out.contains(&Decision::Notice(Notice::PromotionHeld(Hold::Maintenance))));
    standby.at(5000, Input::Tick);
    assert!(!standby.decided(|d| matches!(d, Decision::Promote { .. })));
}

#[test]
fn a_standby_whose_database_is_down_stays_out_of_the_election() {
    let mut run = Run::standby_settled(config());
    run.probes(600, 800, LocalSample::Down, PEER_PRIMARY);
    assert!(run.decided(|d| *d
        == Decision::SetFault {
            source: FaultSource::Health,
            active: true
        }));
}

#[test]
fn no_triggers_means_no_automatic_promotion() {
    let mut config = config();
    config.triggers = Triggers::default();
    let mut run = Run::standby_settled(config);
    run.at(550, Input::Peer(PeerSample::DatabaseDown));
    let out = run.master(700, TransitionReason::MasterResigned);
    assert!(out.contains(&Decision::Notice(Notice::PromotionHeld(
        Hold::TriggerNotConfigured
    ))));
    run.at(20_000, Input::Tick);
    assert!(!run.decided(|d| matches!(d, Decision::Promote { .. })));
}

#[test]
fn the_database_turning_primary_during_promotion_is_no_fault() {
    let mut run = Run::standby_settled(config());
    run.at(550, Input::Peer(PeerSample::DatabaseDown));
    run.master(700, TransitionReason::MasterResigned);
    assert!(run.decided(|d| *d == Decision::Promote { attempt: 1 }));
    // The probe sees the new primary before the promotion job has verified it.
    let out = run.at(760, Input::Local(PRIMARY));
    assert!(
        !out.iter().any(|d| matches!(
            d,
            Decision::SetFault {
                source: FaultSource::Health,
                active: true
            }
        )),
        "{out:?}"
    );
    assert!(
        !out.contains(&Decision::InstallVip),
        "the VIP waits for the promotion's own write check: {out:?}"
    );
    let out = run.at(
        800,
        Input::PromotionFinished(Ok(WriteVerified::assertion(Some(2)))),
    );
    assert!(out.contains(&Decision::InstallVip), "{out:?}");
}

#[test]
fn a_planned_switchover_demotes_the_primary_and_promotes_past_maintenance() {
    // Old primary: demoted, it leaves the election and drops the VIP.
    let mut old = Run::primary_settled(config());
    let out = old.at(600, Input::Demote);
    assert!(out.contains(&Decision::Notice(Notice::Demoted)));
    assert!(out.contains(&Decision::SetFault {
        source: FaultSource::Admin,
        active: true
    }));
    assert!(out.contains(&Decision::RemoveVip));
    // ... and stays out while its database is stopped and after it would restart as a primary.
    let demoted_at = old.log.len();
    old.probes(700, 2000, LocalSample::Down, PeerSample::Standby);
    old.probes(2100, 3000, PRIMARY, PeerSample::Standby);
    assert!(
        !old.log[demoted_at..].iter().any(|(_, d)| *d
            == Decision::SetFault {
                source: FaultSource::Admin,
                active: false
            }),
        "a demoted node stays out of the election"
    );
    // Rebuilt as a standby (rejoin): back in service.
    let out = old.at(3100, Input::Local(STANDBY_IDLE));
    assert!(out.contains(&Decision::Notice(Notice::Rejoined)), "{out:?}");
    assert!(out.contains(&Decision::SetFault {
        source: FaultSource::Admin,
        active: false
    }));

    // New primary: in maintenance (no automatic promotion), master after the old one resigned.
    let mut new = Run::standby_settled(config());
    new.at(550, Input::Maintenance(true));
    let refused = new.at(
        560,
        Input::PlannedPromotion {
            shutdown_checkpoint: 0x300_0028,
            received: 0x300_00a0,
        },
    );
    assert!(refused
        .iter()
        .any(|d| matches!(d, Decision::Notice(Notice::PlannedPromotionRefused(_)))));
    new.master(700, TransitionReason::MasterResigned);
    assert!(
        !new.decided(|d| matches!(d, Decision::Promote { .. })),
        "maintenance holds the automatic path"
    );
    // The caller says the old primary stopped; this node's own probe has not seen it yet.
    let planned = Input::PlannedPromotion {
        shutdown_checkpoint: 0x300_0028,
        received: 0x300_00a0,
    };
    let out = new.at(710, planned.clone());
    let refusal = PlannedRefusal::OldPrimaryAnswers {
        last_answer_ms_ago: 210,
    };
    assert!(
        out.contains(&Decision::Notice(Notice::PlannedPromotionRefused(refusal))),
        "{out:?}"
    );
    assert!(refusal.to_string().contains("last answer 210 ms ago"));
    new.at(750, Input::Peer(PeerSample::DatabaseDown));
    let out = new.at(
        800,
        Input::PlannedPromotion {
            shutdown_checkpoint: 0x300_0028,
            received: 0x300_00a0,
        },
    );
    assert!(out.contains(&Decision::Promote { attempt: 1 }), "{out:?}");
    let out = new.at(
        900,
        Input::PromotionFinished(Ok(WriteVerified::assertion(Some(2)))),
    );
    assert!(out.contains(&Decision::InstallVip), "{out:?}");
}

#[test]
fn a_planned_promotion_waits_for_the_old_primarys_shutdown_checkpoint() {
    let mut new = Run::standby_settled(config());
    // As in a switchover: maintenance holds the automatic path, the old primary has stopped.
    new.at(550, Input::Maintenance(true));
    new.master(700, TransitionReason::MasterResigned);
    new.at(700, Input::Peer(PeerSample::DatabaseDown));
    new.log.clear();
    // Invariant 6: 0x58 bytes of the old primary's WAL, up to its checkpoint, are not here yet.
    let out = new.at(
        800,
        Input::PlannedPromotion {
            shutdown_checkpoint: 0x300_0080,
            received: 0x300_0028,
        },
    );
    let refusal = PlannedRefusal::CheckpointNotReceived {
        checkpoint: 0x300_0080,
        received: 0x300_0028,
    };
    assert!(
        out.contains(&Decision::Notice(Notice::PlannedPromotionRefused(refusal))),
        "{out:?}"
    );
    assert_eq!(
        refusal.to_string(),
        "this standby received WAL up to 0/3000028, 88 bytes short of the old primary's \
         shutdown checkpoint 0/3000080"
    );
    assert!(!new.decided(|d| matches!(d, Decision::Promote { .. })));
    let out = new.at(
        900,
        Input::PlannedPromotion {
            shutdown_checkpoint: 0x300_0080,
            received: 0x300_00f8,
        },
    );
    assert!(out.contains(&Decision::Promote { attempt: 1 }), "{out:?}");
}

#[test]
fn next_wakeup_never_returns_a_time_already_evaluated() {
    // An isolated node: the isolation threshold lies in the past for as long as it stays cut off.
    let mut run = Run::primary_settled(config());
    run.witness(500, true);
    run.probes(600, 1900, PRIMARY, PeerSample::Unreachable);
    run.witness(600, false);
    run.at(2100, Input::Tick);
    run.at(5000, Input::Tick);
    let evaluated = run.t0 + Duration::from_millis(5000);
    if let Some(at) = run.policy.next_wakeup() {
        assert!(
            at > evaluated,
            "a wake-up {:?} before the last evaluation",
            evaluated - at
        );
    }
}

#[test]
fn a_local_probe_failing_for_a_local_reason_never_resigns() {
    let mut run = Run::primary_settled(config());
    run.log.clear();
    // Descriptor exhaustion on our side: many probes in a row say nothing about the database.
    run.probes(600, 3000, LocalSample::Unknown, PeerSample::Standby);
    assert!(!run.decided(|d| matches!(
        d,
        Decision::RemoveVip | Decision::Resign | Decision::SetFault { active: true, .. }
    )));
    assert!(run.policy.status().local_healthy);
    // A real failure still counts: `fall` bad answers after the unknown ones resign.
    run.probes(3100, 3300, LocalSample::Down, PeerSample::Standby);
    assert!(run.decided(|d| *d
        == Decision::SetFault {
            source: FaultSource::Health,
            active: true
        }));
}

#[test]
fn a_peer_probe_failing_for_a_local_reason_holds_promotion_and_is_not_isolation() {
    let mut config = config();
    config.confirmation = Duration::ZERO;
    let mut run = Run::standby_settled(config);
    // The primary stops advertising while our own probes of it fail with EMFILE.
    run.probes(600, 900, STANDBY_IDLE, PeerSample::Unknown);
    run.master(900, TransitionReason::MasterDown);
    run.witness(910, false);
    run.probes(1000, 4000, STANDBY_IDLE, PeerSample::Unknown);
    run.witness(4010, false);
    assert!(run.decided(|d| *d == Decision::Notice(Notice::PromotionHeld(Hold::PeerUnknown))));
    assert!(!run.decided(|d| matches!(
        d,
        Decision::Promote { .. } | Decision::Notice(Notice::Isolated) | Decision::Fence(_)
    )));
    // Once a probe answers again (the peer is really gone), the usual rules apply.
    run.probes(4100, 4100, STANDBY_IDLE, PeerSample::Unreachable);
    run.witness(4110, true);
    assert!(run.decided(|d| matches!(d, Decision::Promote { .. })));
}

/// The primary's snapshot listing no walsender for this standby.
fn peer_primary_without_walsender(current: u64) -> PeerSample {
    PeerSample::Primary {
        timeline: Some(1),
        position: Some(PrimaryPosition {
            current,
            standby: None,
        }),
    }
}

fn peer_primary_at(current: u64, flush: u64) -> PeerSample {
    PeerSample::Primary {
        timeline: Some(1),
        position: streaming_at(current, flush),
    }
}

fn standby_received(received: u64) -> LocalSample {
    LocalSample::Standby {
        timeline: Some(1),
        wal_receiver: None,
        received: Some(received),
    }
}

fn held_not_promotable(run: &Run) -> bool {
    matches!(
        run.policy.status().hold,
        Some(Hold::NotPromotable(Unpromotable::Behind(_)))
    )
}

/// The primary crashes at 1000 ms: its database refuses, its node resigns.
fn crash_of_the_primary(run: &mut Run, at: u64) {
    run.at(at, Input::Peer(PeerSample::DatabaseDown));
    run.master(at + 10, TransitionReason::MasterResigned);
    run.at(at + 200, Input::Tick);
}

#[test]
fn a_standby_whose_stream_broke_while_the_primary_lived_is_never_promoted_after_the_crash() {
    let mut run = Run::standby_settled(config());
    // The stream breaks; the primary goes on committing alone (its position moves on).
    run.at(
        600,
        Input::Peer(peer_primary_without_walsender(WAL_AT + 100)),
    );
    assert!(
        !run.decided(|d| matches!(d, Decision::Notice(Notice::StandbyMarkedBehind(_)))),
        "one snapshot is not conclusive"
    );
    run.at(
        700,
        Input::Peer(peer_primary_without_walsender(WAL_AT + 400)),
    );
    assert!(run.decided(|d| matches!(d, Decision::Notice(Notice::StandbyMarkedBehind(_)))));
    run.at(800, Input::Local(STANDBY_IDLE));
    crash_of_the_primary(&mut run, 1000);
    assert!(!run.decided(|d| matches!(d, Decision::Promote { .. })));
    assert!(held_not_promotable(&run));
    assert!(run.policy.status().promotable.is_err());
    assert_eq!(run.policy.status().replication.lag_bytes, Some(400));
    // Much later, still nothing: the standby misses 400 bytes of acknowledged commits.
    run.at(60_000, Input::Tick);
    assert!(!run.decided(|d| matches!(d, Decision::Promote { .. })));
    // The operator chooses availability: promoted once, nothing remembered.
    let out = run.at(60_100, Input::AcceptDataLoss);
    assert!(out.contains(&Decision::Promote { attempt: 1 }));
}

#[test]
fn a_crash_while_streaming_promotes_even_when_the_walsender_went_first() {
    let mut run = Run::standby_settled(config());
    // A killed primary's walsender can exit a moment before the backend answering our probe:
    // one snapshot without it, 100 bytes the standby had not been seen to have.
    run.at(
        600,
        Input::Peer(peer_primary_without_walsender(WAL_AT + 100)),
    );
    crash_of_the_primary(&mut run, 620);
    assert!(run.decided(|d| matches!(d, Decision::Promote { attempt: 1 })));
}

#[test]
fn a_silent_cut_marks_the_standby_once_wal_stops_arriving_for_the_lag_time() {
    let mut run = Run::standby_settled(config());
    // Both ends still say "streaming"; the standby's flush position stops at WAL_AT while the
    // primary moves on by 100 bytes a probe: far under maximum_lag (1 MiB).
    for step in 1..=9u64 {
        run.at(
            500 + step * 100,
            Input::Peer(peer_primary_at(WAL_AT + step * 100, WAL_AT)),
        );
    }
    assert!(!run.decided(|d| matches!(d, Decision::Notice(Notice::StandbyMarkedBehind(_)))));
    run.at(1600, Input::Peer(peer_primary_at(WAL_AT + 1000, WAL_AT)));
    assert!(run.decided(|d| matches!(d, Decision::Notice(Notice::StandbyMarkedBehind(_)))));
    crash_of_the_primary(&mut run, 1700);
    assert!(!run.decided(|d| matches!(d, Decision::Promote { .. })));
    assert!(held_not_promotable(&run));
}

#[test]
fn a_marked_standby_that_catches_up_with_the_last_known_position_is_promoted() {
    let mut run = Run::standby_settled(config());
    run.at(
        600,
        Input::Peer(peer_primary_without_walsender(WAL_AT + 300)),
    );
    run.at(
        700,
        Input::Peer(peer_primary_without_walsender(WAL_AT + 300)),
    );
    crash_of_the_primary(&mut run, 1000);
    assert!(held_not_promotable(&run));
    // The WAL arrives after all (from the archive, say): everything the primary was seen with.
    let out = run.at(1300, Input::Local(standby_received(WAL_AT + 300)));
    assert!(out.contains(&Decision::Promote { attempt: 1 }));
}

#[test]
fn a_standby_caught_up_again_while_the_primary_lives_is_promotable_again() {
    let mut run = Run::standby_settled(config());
    run.at(
        600,
        Input::Peer(peer_primary_without_walsender(WAL_AT + 300)),
    );
    run.at(
        700,
        Input::Peer(peer_primary_without_walsender(WAL_AT + 500)),
    );
    // Streaming again, but not yet at the position it fell out at: still marked.
    run.at(
        800,
        Input::Peer(peer_primary_at(WAL_AT + 500, WAL_AT + 450)),
    );
    assert!(!run.decided(|d| matches!(d, Decision::Notice(Notice::StandbyCaughtUp))));
    let out = run.at(
        900,
        Input::Peer(peer_primary_at(WAL_AT + 600, WAL_AT + 600)),
    );
    assert!(out.contains(&Decision::Notice(Notice::StandbyCaughtUp)));
    run.at(950, Input::Local(standby_received(WAL_AT + 600)));
    crash_of_the_primary(&mut run, 1000);
    assert!(run.decided(|d| matches!(d, Decision::Promote { attempt: 1 })));
}

#[test]
fn a_mark_kept_from_before_a_restart_holds_promotion() {
    let mut run = Run::new(config());
    run.at(
        0,
        Input::RestoredNotPromotable {
            primary: Some(WAL_AT + 5000),
            had: Some(WAL_AT),
        },
    );
    // The primary is seen, but not streaming to us; then it crashes.
    run.probes(
        0,
        500,
        STANDBY_IDLE,
        peer_primary_without_walsender(WAL_AT + 6000),
    );
    crash_of_the_primary(&mut run, 1000);
    assert!(!run.decided(|d| matches!(d, Decision::Promote { .. })));
    assert!(held_not_promotable(&run));
}

#[test]
fn a_standby_that_never_saw_the_primarys_position_is_not_promotable() {
    let mut run = Run::new(config());
    // The primary answers, but its WAL position is hidden (no pg_monitor): unknown.
    let hidden = PeerSample::Primary {
        timeline: Some(1),
        position: None,
    };
    run.probes(0, 500, STANDBY_IDLE, hidden);
    crash_of_the_primary(&mut run, 1000);
    assert!(!run.decided(|d| matches!(d, Decision::Promote { .. })));
    assert_eq!(
        run.policy.status().hold,
        Some(Hold::NotPromotable(Unpromotable::Unreadable))
    );
}

#[test]
fn accepting_data_loss_never_promotes_beside_a_live_primary() {
    let mut run = Run::standby_settled(config());
    run.at(
        600,
        Input::Peer(peer_primary_without_walsender(WAL_AT + 300)),
    );
    run.at(
        700,
        Input::Peer(peer_primary_without_walsender(WAL_AT + 300)),
    );
    run.master(710, TransitionReason::MasterDown);
    let out = run.at(720, Input::AcceptDataLoss);
    assert!(!out.iter().any(|d| matches!(d, Decision::Promote { .. })));
    assert_eq!(run.policy.status().hold, Some(Hold::PeerPrimaryAlive));
    // The override is not remembered: once the primary is gone, the mark holds again.
    crash_of_the_primary(&mut run, 1000);
    assert!(!run.decided(|d| matches!(d, Decision::Promote { .. })));
}

// ---- synchronous replication managed by the primary ([replication] mode) --------------------

fn sync_config(mode: SyncMode) -> PolicyConfig {
    PolicyConfig {
        sync: SyncConfig {
            mode,
            timeout: Duration::from_secs(10),
            maximum_lag: 1 << 20,
            not_streaming_grace: Duration::from_millis(500),
            retry_delay: Duration::from_secs(2),
        },
        ..config()
    }
}

/// The local primary with its standby's row: streaming or not, `behind` bytes behind.
fn primary_with(streaming: bool, behind: u64) -> LocalSample {
    LocalSample::Primary {
        timeline: Some(1),
        position: Some(PrimaryPosition {
            current: WAL_AT,
            standby: Some(StandbyRow {
                streaming,
                synchronous: false,
                flush: Some(WAL_AT - behind),
            }),
        }),
    }
}

/// A primary without a WAL sender for its standby.
const PRIMARY_ALONE: LocalSample = LocalSample::Primary {
    timeline: Some(1),
    position: Some(PrimaryPosition {
        current: WAL_AT,
        standby: None,
    }),
};

/// The times at which `synchronous_standby_names` was asked to become `target`.
fn set_at(run: &Run, target: SyncTarget) -> Vec<u64> {
    run.log
        .iter()
        .filter(|(_, d)| *d == Decision::SetSynchronousStandby(target))
        .map(|(t, _)| *t)
        .collect()
}

/// A sync primary whose standby streamed and was required (set, confirmed at 600 ms).
fn sync_primary(mode: SyncMode) -> Run {
    let mut run = Run::new(sync_config(mode));
    run.probes(0, 500, primary_with(true, 0), PeerSample::Standby);
    run.master(500, TransitionReason::MasterDown);
    assert_eq!(
        set_at(&run, SyncTarget::Standby),
        vec![100],
        "healthy after rise 2"
    );
    run.at(
        600,
        Input::SynchronousStandbySet {
            target: SyncTarget::Standby,
            result: Ok("\"b\"".into()),
        },
    );
    run
}

#[test]
fn sync_a_streaming_standby_is_required_once_caught_up() {
    let mut run = Run::new(sync_config(SyncMode::Sync));
    // Two probes to be healthy (rise 2); streaming but 2 MB behind (over maximum_lag 1 MiB).
    run.probes(0, 300, primary_with(true, 2 << 20), PeerSample::Standby);
    assert!(set_at(&run, SyncTarget::Standby).is_empty());
    run.probes(400, 500, primary_with(true, 100), PeerSample::Standby);
    assert_eq!(set_at(&run, SyncTarget::Standby), vec![400]);
    assert_eq!(
        run.policy.status().sync.set,
        None,
        "not until the job says so"
    );
    run.at(
        450,
        Input::SynchronousStandbySet {
            target: SyncTarget::Standby,
            result: Ok("\"b\"".into()),
        },
    );
    assert_eq!(run.policy.status().sync.set, Some(SyncTarget::Standby));
    run.probes(600, 2000, primary_with(true, 0), PeerSample::Standby);
    assert_eq!(set_at(&run, SyncTarget::Standby), vec![400], "once");
}

#[test]
fn sync_a_standby_database_down_relaxes_once_its_daemon_has_marked_it() {
    for mode in [SyncMode::Sync, SyncMode::SyncStrict] {
        let mut run = sync_primary(mode);
        run.probes(1000, 3000, PRIMARY_ALONE, PeerSample::DatabaseDown);
        // No WAL sender since 1000 ms; the answer at 1500 ms comes after the 500 ms grace.
        assert_eq!(set_at(&run, SyncTarget::Alone), vec![1500], "{mode:?}");
    }
}

#[test]
fn sync_an_answer_from_before_the_grace_is_no_evidence() {
    // The WAL sender goes at 1000 ms, the standby answers at 1200 ms, then its host is silent:
    // it may not have seen this primary without its WAL sender twice, so it may be promotable.
    let mut run = sync_primary(SyncMode::SyncStrict);
    run.at(1000, Input::Local(PRIMARY_ALONE));
    run.at(1200, Input::Peer(PeerSample::DatabaseDown));
    run.probes(1300, 20_000, PRIMARY_ALONE, PeerSample::Unreachable);
    assert!(set_at(&run, SyncTarget::Alone).is_empty());
}

#[test]
fn sync_a_silence_in_between_restarts_the_grace() {
    // No WAL sender from 1000 ms; the standby's host is silent from 1100 to 1800 ms: the standby
    // saw nothing of this primary then. Its answers must span a whole grace after the silence.
    let mut run = sync_primary(SyncMode::SyncStrict);
    run.probes(1000, 1000, PRIMARY_ALONE, PeerSample::Standby);
    run.probes(1100, 1800, PRIMARY_ALONE, PeerSample::Unreachable);
    run.probes(1900, 2300, PRIMARY_ALONE, PeerSample::Standby);
    assert!(set_at(&run, SyncTarget::Alone).is_empty());
    run.probes(2400, 2400, PRIMARY_ALONE, PeerSample::Standby);
    assert_eq!(set_at(&run, SyncTarget::Alone), vec![2400]);
}

#[test]
fn sync_a_standby_that_answers_but_does_not_stream_relaxes_after_the_grace() {
    for mode in [SyncMode::Sync, SyncMode::SyncStrict] {
        let mut run = sync_primary(mode);
        run.probes(1000, 3000, PRIMARY_ALONE, PeerSample::Standby);
        // Not streaming since 1000 ms; the grace is 500 ms.
        assert_eq!(set_at(&run, SyncTarget::Alone), vec![1500], "{mode:?}");
    }
}

#[test]
fn sync_an_unreachable_standby_relaxes_after_the_sync_timeout() {
    let mut run = sync_primary(SyncMode::Sync);
    // A silent partition: the WAL sender still says streaming, commits wait. Its host last
    // answered at 500 ms: 10 s of silence end at 10.5 s.
    run.probes(1000, 10_400, primary_with(true, 0), PeerSample::Unreachable);
    assert!(set_at(&run, SyncTarget::Alone).is_empty(), "before 10 s");
    run.probes(
        10_500,
        12_000,
        primary_with(true, 0),
        PeerSample::Unreachable,
    );
    assert_eq!(set_at(&run, SyncTarget::Alone), vec![10_500]);
}

#[test]
fn sync_the_sync_timeout_is_woken_for_without_a_new_probe() {
    let mut run = sync_primary(SyncMode::Sync);
    run.at(1000, Input::Local(PRIMARY_ALONE));
    run.at(1000, Input::Peer(PeerSample::Unreachable));
    // No more probes: only the wake-ups the policy asks for.
    let end = run.t0 + Duration::from_millis(12_000);
    while let Some(at) = run.policy.next_wakeup().filter(|&t| t <= end) {
        let ms = at.duration_since(run.t0).as_millis() as u64;
        run.at(ms, Input::Tick);
    }
    // 10 s after its last answer (500 ms).
    assert_eq!(set_at(&run, SyncTarget::Alone), vec![10_500]);
}

#[test]
fn sync_strict_never_relaxes_for_an_unreachable_standby() {
    let mut run = sync_primary(SyncMode::SyncStrict);
    run.probes(1000, 60_000, PRIMARY_ALONE, PeerSample::Unreachable);
    assert!(set_at(&run, SyncTarget::Alone).is_empty());
    // A probe failing for a local reason is no evidence either.
    run.probes(60_100, 61_000, PRIMARY_ALONE, PeerSample::Unknown);
    assert!(set_at(&run, SyncTarget::Alone).is_empty());
    // Its host answers again, its database down: once it has answered for the grace (its
    // daemon has seen this primary without its WAL sender twice), alone.
    run.probes(61_100, 62_000, PRIMARY_ALONE, PeerSample::DatabaseDown);
    assert_eq!(set_at(&run, SyncTarget::Alone), vec![61_600]);
}

#[test]
fn sync_relaxed_primary_requires_the_standby_again_once_it_streams() {
    let mut run = sync_primary(SyncMode::Sync);
    run.probes(1000, 1500, PRIMARY_ALONE, PeerSample::DatabaseDown);
    assert_eq!(set_at(&run, SyncTarget::Alone), vec![1500]);
    run.at(
        1550,
        Input::SynchronousStandbySet {
            target: SyncTarget::Alone,
            result: Ok(String::new()),
        },
    );
    assert_eq!(run.policy.status().sync.set, Some(SyncTarget::Alone));
    // It comes back and catches up: behind first, then within maximum_lag.
    run.probes(
        1600,
        1700,
        primary_with(false, 3 << 20),
        PeerSample::Standby,
    );
    run.probes(1750, 1750, primary_with(true, 3 << 20), PeerSample::Standby);
    assert_eq!(set_at(&run, SyncTarget::Standby), vec![100]);
    run.probes(1800, 1800, primary_with(true, 10), PeerSample::Standby);
    assert_eq!(set_at(&run, SyncTarget::Standby), vec![100, 1800]);
}

#[test]
fn sync_a_failed_setting_is_journalled_and_retried() {
    let mut run = Run::new(sync_config(SyncMode::Sync));
    run.probes(0, 300, primary_with(true, 0), PeerSample::Standby);
    let out = run.at(
        350,
        Input::SynchronousStandbySet {
            target: SyncTarget::Standby,
            result: Err("permission denied to set parameter".into()),
        },
    );
    assert!(out
        .iter()
        .any(|d| matches!(d, Decision::Notice(Notice::SynchronousStandbyFailed { .. }))));
    run.probes(400, 2300, primary_with(true, 0), PeerSample::Standby);
    assert_eq!(
        set_at(&run, SyncTarget::Standby),
        vec![100],
        "not before 2350"
    );
    run.at(2350, Input::Tick);
    assert_eq!(set_at(&run, SyncTarget::Standby), vec![100, 2350]);
    // The same failure again is not said again; it stays in the status.
    let out = run.at(
        2400,
        Input::SynchronousStandbySet {
            target: SyncTarget::Standby,
            result: Err("permission denied to set parameter".into()),
        },
    );
    assert!(
        !out.iter().any(|d| matches!(d, Decision::Notice(_))),
        "{out:?}"
    );
    assert_eq!(
        run.policy.status().sync.error.as_deref(),
        Some("permission denied to set parameter")
    );
}

#[test]
fn sync_a_promoted_node_commits_alone_until_its_peer_streams() {
    for mode in [SyncMode::Sync, SyncMode::SyncStrict] {
        let mut run = Run::standby_settled(sync_config(mode));
        crash_of_the_primary(&mut run, 1000);
        assert!(
            run.decided(|d| matches!(d, Decision::Promote { .. })),
            "{mode:?}"
        );
        run.at(
            1300,
            Input::PromotionFinished(Ok(WriteVerified::assertion(Some(2)))),
        );
        // The old primary's node is gone entirely: no answer at all.
        run.at(1300, Input::Peer(PeerSample::Unreachable));
        assert_eq!(set_at(&run, SyncTarget::Alone), vec![1300], "{mode:?}");
        assert!(set_at(&run, SyncTarget::Standby).is_empty());
    }
}

#[test]
fn sync_a_standby_is_never_touched_and_a_primary_only_while_it_serves() {
    let mut run = Run::standby_settled(sync_config(SyncMode::SyncStrict));
    run.probes(600, 2000, STANDBY_IDLE, PeerSample::DatabaseDown);
    assert!(!run.decided(|d| matches!(d, Decision::SetSynchronousStandby(_))));
}

#[test]
fn async_never_touches_synchronous_standby_names() {
    let mut run = Run::new(config());
    run.probes(0, 500, primary_with(true, 0), PeerSample::Standby);
    run.master(500, TransitionReason::MasterDown);
    run.probes(600, 20_000, PRIMARY_ALONE, PeerSample::DatabaseDown);
    assert!(!run.decided(|d| matches!(d, Decision::SetSynchronousStandby(_))));
}

#[test]
fn a_standby_its_primary_waits_for_is_promotable_beyond_the_byte_lag() {
    let mut run = Run::standby_settled(config());
    // 4 MB of WAL in flight (over maximum_lag 1 MiB): uncommitted, the primary waits for us.
    let waiting = PeerSample::Primary {
        timeline: Some(1),
        position: Some(PrimaryPosition {
            current: WAL_AT + (4 << 20),
            standby: Some(StandbyRow {
                streaming: true,
                synchronous: true,
                flush: Some(WAL_AT),
            }),
        }),
    };
    run.probes(600, 900, standby_received(WAL_AT), waiting);
    assert_eq!(run.policy.status().replication.mark, None);
    crash_of_the_primary(&mut run, 1000);
    assert!(run.decided(|d| matches!(d, Decision::Promote { .. })));
}

#[test]
fn with_synchronous_replication_a_standby_its_primary_does_not_wait_for_is_not_promoted() {
    let mut config = sync_config(SyncMode::Sync);
    config.replication.synchronous_required = true;
    // Caught up, but listed async: the primary may have acknowledged commits alone since.
    let mut run = Run::standby_settled(config.clone());
    run.probes(600, 900, STANDBY_IDLE, PEER_PRIMARY);
    crash_of_the_primary(&mut run, 1000);
    assert!(!run.decided(|d| matches!(d, Decision::Promote { .. })));
    assert_eq!(
        run.policy.status().hold,
        Some(Hold::NotPromotable(Unpromotable::NotSynchronous))
    );
    // Listed sync: promoted.
    let waiting = PeerSample::Primary {
        timeline: Some(1),
        position: Some(PrimaryPosition {
            current: WAL_AT,
            standby: Some(StandbyRow {
                streaming: true,
                synchronous: true,
                flush: Some(WAL_AT),
            }),
        }),
    };
    let mut run = Run::standby_settled(config);
    run.probes(600, 900, STANDBY_IDLE, waiting);
    crash_of_the_primary(&mut run, 1000);
    assert!(run.decided(|d| matches!(d, Decision::Promote { .. })));
}
