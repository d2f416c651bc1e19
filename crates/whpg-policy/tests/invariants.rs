//! Random sequences of observations try to break the safety invariants.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use whpg_policy::{
    Decision, Input, LocalSample, PeerSample, Policy, PolicyConfig, PrimaryPosition,
    ReplicationConfig, StandbyRow, Triggers, WalReceiver, WriteVerified,
};
use whpg_vrrp::{State, TransitionReason};

fn config(confirmation_ms: u64) -> PolicyConfig {
    PolicyConfig {
        base_priority: 98,
        preempt: false,
        primary_bonus: 100,
        // As the daemon computes it for priorities 100 and 98.
        standby_bonus: 97,
        standby_bonus_after: Duration::from_millis(360),
        triggers: Triggers::all(),
        confirmation: Duration::from_millis(confirmation_ms),
        wal_freshness: Duration::from_millis(500),
        peer_alive_window: Duration::from_millis(100),
        peer_probe_timeout: Duration::from_millis(500),
        fall: 2,
        rise: 1,
        fence_when_isolated: true,
        witness_enabled: true,
        isolation_after: Duration::from_millis(700),
        promotion_attempts: 2,
        promotion_retry_delay: Duration::from_millis(300),
        startup_grace: Duration::from_millis(1000),
        replication: ReplicationConfig {
            maximum_lag: 1000,
            maximum_lag_time: Duration::from_millis(500),
            synchronous_required: false,
        },
        sync: whpg_policy::SyncConfig::disabled(),
    }
}

/// A primary's snapshot: its position (in steps of 500 bytes) and its standby's row, if any.
fn position() -> impl Strategy<Value = Option<PrimaryPosition>> {
    let row = (any::<bool>(), 0u64..8).prop_map(|(streaming, behind)| StandbyRow {
        streaming,
        synchronous: false,
        flush: Some(behind * 500),
    });
    proptest::option::weighted(
        0.9,
        (0u64..8, proptest::option::weighted(0.8, row)).prop_map(|(at, standby)| {
            let current = 4000 + at * 500;
            PrimaryPosition {
                current,
                standby: standby.map(|r| StandbyRow {
                    flush: r.flush.map(|behind| current.saturating_sub(behind)),
                    ..r
                }),
            }
        }),
    )
}

fn input() -> impl Strategy<Value = Input> {
    let local = prop_oneof![
        (0u32..3).prop_map(|tl| LocalSample::Primary {
            timeline: Some(tl),
            position: None
        }),
        (0u32..3, any::<bool>(), 0u64..2000, 0u64..8).prop_map(|(tl, streaming, age, at)| {
            LocalSample::Standby {
                timeline: Some(tl),
                wal_receiver: Some(WalReceiver {
                    streaming,
                    last_message_age: Some(Duration::from_millis(age)),
                }),
                received: Some(4000 + at * 500),
            }
        }),
        Just(LocalSample::NotAccepting),
        Just(LocalSample::Down),
    ];
    let peer = prop_oneof![
        Just(PeerSample::Unreachable),
        Just(PeerSample::DatabaseDown),
        Just(PeerSample::Standby),
        (0u32..3, position()).prop_map(|(tl, position)| PeerSample::Primary {
            timeline: Some(tl),
            position
        }),
        Just(PeerSample::AcceptingUnknownRole),
    ];
    let vrrp = prop_oneof![
        Just((State::Master, TransitionReason::MasterDown)),
        Just((State::Master, TransitionReason::MasterResigned)),
        Just((State::Backup, TransitionReason::Resigned)),
        Just((State::Fault, TransitionReason::FaultCleared)),
    ];
    prop_oneof![
        4 => local.prop_map(Input::Local),
        4 => peer.prop_map(Input::Peer),
        2 => vrrp.prop_map(|(to, reason)| Input::Vrrp { to, reason }),
        1 => Just(Input::PostmasterExited),
        1 => any::<bool>().prop_map(|quorum| Input::Witness { quorum, round_sent_at: placeholder() }),
        1 => any::<bool>().prop_map(Input::Maintenance),
        1 => prop_oneof![Just(Ok(WriteVerified::assertion(Some(3)))), Just(Err("failed".to_string()))].prop_map(Input::PromotionFinished),
        2 => Just(Input::Tick),
    ]
}

/// Stands in for a witness round's send time until the test knows the time; replaced by the
/// time of the step, so a round answers after a mastership only if it comes after it.
fn placeholder() -> Instant {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn safety_invariants_hold(steps in proptest::collection::vec((0u64..150, input()), 1..150), confirmation in 0u64..2000) {
        let t0 = Instant::now();
        let mut policy = Policy::new(config(confirmation), t0);
        policy.start(t0);
        let mut now_ms = 0u64;
        let mut vrrp = State::Initialize;
        let mut last_peer_primary: Option<u64> = None;
        let mut maintenance = false;
        // The test's own model of "the local database is a writable primary", with fall = 2.
        let mut primary_role = false;
        let mut consecutive_bad = 0;
        let mut crashed = false;
        // When a write last proved a promotion, until the database is next seen down.
        let mut promoted_at_ms: Option<u64> = None;
        let mut vip = false;
        // When the current mastership began, why, and whether a witness round sent since then
        // reached the quorum.
        let mut master_reason = None;
        let mut witnessed_in_mastership = false;
        for (gap, input) in steps {
            now_ms += gap;
            let now = t0 + Duration::from_millis(now_ms);
            let input = match input {
                Input::Witness { quorum, .. } => Input::Witness { quorum, round_sent_at: now },
                other => other,
            };
            match &input {
                Input::Vrrp { to, reason } => {
                    if *to == State::Master && vrrp != State::Master {
                        witnessed_in_mastership = false;
                    }
                    master_reason = (*to == State::Master).then_some(*reason);
                    vrrp = *to;
                }
                Input::Witness { quorum: true, .. } if vrrp == State::Master => {
                    witnessed_in_mastership = true;
                }
                Input::Peer(PeerSample::Primary { .. } | PeerSample::AcceptingUnknownRole) => last_peer_primary = Some(now_ms),
                // A later answer that the database is down or a standby settles it (invariant 2).
                Input::Peer(PeerSample::DatabaseDown | PeerSample::Standby) => last_peer_primary = None,
                Input::Maintenance(on) => maintenance = *on,
                Input::Local(LocalSample::Primary { .. }) => {
                    primary_role = true;
                    consecutive_bad = 0;
                    crashed = false;
                }
                // An answer "in recovery" within the probe timeout (500 ms) of a proven
                // promotion, with nothing down in between, is from a probe asked before the proof.
                Input::Local(LocalSample::Standby { .. })
                    if promoted_at_ms.is_some_and(|at| now_ms - at < 500) => {}
                Input::Local(LocalSample::Standby { .. }) => {
                    primary_role = false;
                    consecutive_bad = 0;
                    crashed = false;
                }
                Input::Local(LocalSample::Unknown) => consecutive_bad += 1,
                Input::Local(_) => {
                    consecutive_bad += 1;
                    promoted_at_ms = None;
                }
                Input::PostmasterExited => {
                    crashed = true;
                    promoted_at_ms = None;
                }
                _ => {}
            }
            let promotion_result = matches!(input, Input::PromotionFinished(Ok(_)));
            let decisions = policy.handle(input, now);
            for decision in decisions {
                match decision {
                    Decision::Promote { .. } => {
                        // Invariant 2: never while the old primary answered within the window, and
                        // no answer since said it is down or a standby.
                        if let Some(at) = last_peer_primary {
                            prop_assert!(now_ms - at >= 100, "promoted {} ms after a primary answer", now_ms - at);
                        }
                        prop_assert!(!maintenance, "promoted in maintenance");
                        // Over a silent master, only once a witness answered a round sent during
                        // this mastership: an isolated node must not promote.
                        if master_reason != Some(TransitionReason::MasterResigned) {
                            prop_assert!(witnessed_in_mastership, "promoted over a silent master without a fresh witness answer");
                        }
                        prop_assert_eq!(vrrp, State::Master);
                    }
                    Decision::InstallVip => vip = true,
                    Decision::Notice(whpg_policy::Notice::PromotionSucceeded { .. }) if promotion_result => {
                        primary_role = true;
                        consecutive_bad = 0;
                        crashed = false;
                        promoted_at_ms = Some(now_ms);
                    }
                    Decision::RemoveVip => vip = false,
                    _ => {}
                }
            }
            // Invariant 1: the VIP only on a master whose database is (or was just verified) writable.
            if vip {
                prop_assert_eq!(vrrp, State::Master);
                prop_assert!(primary_role && consecutive_bad < 2 && !crashed);
                prop_assert!(!policy.status().needs_rejoin);
            }
        }
    }
}
