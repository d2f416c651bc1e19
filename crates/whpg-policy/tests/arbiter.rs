//! Invariant 10, the arbiter: with a leader key configured, the VIP and promotion only while
//! holding it. One scenario per test: inputs at given times (ms from start) and the decisions
//! they must and must not produce.

use std::time::{Duration, Instant};

use whpg_policy::{
    ArbiterAction, ArbiterRules, ArbiterSample, Decision, FenceReason, Hold, Input, KeyState,
    LocalSample, Notice, PeerSample, Policy, PolicyConfig, PrimaryPosition, RecordRefusal,
    ReplicationConfig, StandbyRow, SyncConfig, SyncMode, SyncRecord, SyncRecordWrite, SyncTarget,
    Triggers,
};
use whpg_vrrp::{State, TransitionReason};

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
        witness_enabled: false,
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

const RULES: ArbiterRules = ArbiterRules {
    fence_on_loss: true,
    failsafe: true,
};

const WAL_AT: u64 = 0x3000060;

const fn streaming(streaming: bool) -> Option<PrimaryPosition> {
    Some(PrimaryPosition {
        current: WAL_AT,
        standby: Some(StandbyRow {
            streaming,
            synchronous: false,
            flush: Some(WAL_AT),
        }),
    })
}

/// A primary whose standby streams from it.
const PRIMARY: LocalSample = LocalSample::Primary {
    timeline: Some(1),
    position: streaming(true),
};
const STANDBY: LocalSample = LocalSample::Standby {
    timeline: Some(1),
    wal_receiver: None,
    received: Some(WAL_AT),
};
const PEER_PRIMARY: PeerSample = PeerSample::Primary {
    timeline: Some(1),
    position: streaming(true),
};

struct Run {
    policy: Policy,
    t0: Instant,
    log: Vec<(u64, Decision)>,
}

/// etcd says `holder` holds the leader key.
fn held_by(holder: &str) -> Input {
    Input::Arbiter(ArbiterSample::HeldByOther {
        holder: holder.into(),
    })
}

impl Run {
    fn new(rules: ArbiterRules) -> Run {
        Run::with_config(config(), rules)
    }

    fn with_config(config: PolicyConfig, rules: ArbiterRules) -> Run {
        let t0 = Instant::now();
        let mut policy = Policy::new(config, t0).with_arbiter(rules);
        let log = policy.start(t0).into_iter().map(|d| (0, d)).collect();
        Run { policy, t0, log }
    }

    fn t(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn at(&mut self, ms: u64, input: Input) -> Vec<Decision> {
        let out = self.policy.handle(input, self.t(ms));
        self.log.extend(out.iter().cloned().map(|d| (ms, d)));
        out
    }

    fn probes(&mut self, from: u64, to: u64, local: LocalSample, peer: PeerSample) {
        let mut ms = from;
        while ms <= to {
            self.at(ms, Input::Local(local));
            self.at(ms, Input::Peer(peer));
            ms += 100;
        }
    }

    fn vrrp(&mut self, ms: u64, to: State, reason: TransitionReason) -> Vec<Decision> {
        self.at(ms, Input::Vrrp { to, reason })
    }

    /// The key is ours until `until_ms`.
    fn held(&mut self, ms: u64, until_ms: u64) -> Vec<Decision> {
        let valid_until = self.t(until_ms);
        self.at(ms, Input::Arbiter(ArbiterSample::Held { valid_until }))
    }

    fn etcd_silent(&mut self, ms: u64) -> Vec<Decision> {
        self.at(
            ms,
            Input::Arbiter(ArbiterSample::Unknown {
                reason: "etcd read at http://10.0.0.3:2379 gave no answer".into(),
            }),
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

    /// A primary node, VRRP master, the peer a standby streaming from it, the key held until
    /// 5 s.
    fn serving_primary(rules: ArbiterRules) -> Run {
        let mut run = Run::new(rules);
        run.probes(0, 500, PRIMARY, PeerSample::Standby);
        run.vrrp(500, State::Master, TransitionReason::MasterDown);
        run.held(510, 5000);
        assert_eq!(run.when(&Decision::InstallVip), Some(510));
        run
    }

    /// A standby node, VRRP backup, the peer a live primary.
    fn standby(rules: ArbiterRules) -> Run {
        let mut run = Run::new(rules);
        run.probes(0, 500, STANDBY, PEER_PRIMARY);
        run.vrrp(500, State::Backup, TransitionReason::Startup);
        run.at(500, held_by("b"));
        run
    }

    /// The peer's database crashed at 520 and its node resigned at 560.
    fn peer_crashed(&mut self) -> Vec<Decision> {
        self.at(520, Input::Peer(PeerSample::DatabaseDown));
        self.vrrp(560, State::Master, TransitionReason::MasterResigned);
        self.at(600, Input::Peer(PeerSample::DatabaseDown));
        self.at(600, Input::Tick)
    }
}

#[test]
fn a_primary_asks_for_the_key_and_installs_the_vip_only_once_it_holds_it() {
    let mut run = Run::new(RULES);
    run.probes(0, 500, PRIMARY, PeerSample::Standby);
    assert_eq!(
        run.when(&Decision::Arbiter(ArbiterAction::Campaign)),
        Some(100),
        "a healthy primary asks for the key once its start-up checks are done"
    );
    let out = run.vrrp(500, State::Master, TransitionReason::MasterDown);
    assert!(
        !out.contains(&Decision::InstallVip),
        "master, but not the key holder: {out:?}"
    );
    run.at(505, Input::Arbiter(ArbiterSample::Free));
    assert!(
        !run.decided(|d| *d == Decision::InstallVip),
        "free is not ours"
    );
    let out = run.held(510, 5000);
    assert!(out.contains(&Decision::InstallVip), "{out:?}");
    assert_eq!(
        run.policy.status().arbiter.map(|a| (a.held, a.held_until)),
        Some((true, Some(run.t(5000))))
    );
}

#[test]
fn the_key_held_by_the_peer_keeps_the_vip_off() {
    let mut run = Run::new(RULES);
    run.probes(0, 500, PRIMARY, PeerSample::Standby);
    run.vrrp(500, State::Master, TransitionReason::MasterDown);
    run.at(510, held_by("b"));
    run.probes(600, 3000, PRIMARY, PeerSample::Standby);
    assert!(!run.decided(|d| *d == Decision::InstallVip));
    // It never held the key nor gave it up (a restarted daemon sees its earlier run's key so,
    // before it adopts it): its database is not fenced for it.
    assert!(
        !run.decided(|d| matches!(d, Decision::Fence(_))),
        "{:?}",
        run.log
    );

    // A serving master whose key etcd now says is the peer's drops the VIP at once: the
    // failsafe covers a silent etcd, never one that answers.
    let mut run = Run::serving_primary(RULES);
    run.probes(600, 1000, PRIMARY, PeerSample::Standby);
    let out = run.at(1000, held_by("b"));
    assert!(out.contains(&Decision::RemoveVip), "{out:?}");
    assert!(
        out.contains(&Decision::Fence(FenceReason::LeaseLost)),
        "{out:?}"
    );
}

#[test]
fn a_standby_promotes_only_once_it_holds_the_leader_key() {
    let mut run = Run::standby(RULES);
    run.probes(600, 2000, STANDBY, PEER_PRIMARY);
    run.vrrp(2000, State::Master, TransitionReason::MasterDown);
    run.probes(2000, 2500, STANDBY, PEER_PRIMARY);
    assert!(
        !run.decided(|d| *d == Decision::Arbiter(ArbiterAction::Campaign)),
        "never asks for the key while the primary answers"
    );

    let mut run = Run::standby(RULES);
    run.peer_crashed();
    assert_eq!(
        run.when(&Decision::Arbiter(ArbiterAction::Campaign)),
        Some(560),
        "asked for once master, the old primary seen down (invariant 2)"
    );
    assert!(run.decided(|d| *d
        == Decision::Notice(Notice::PromotionHeld(Hold::ArbiterKey(
            KeyState::HeldByOther
        )))));
    assert!(!run.decided(|d| matches!(d, Decision::Promote { .. })));
    // The old primary's lease still runs: etcd says it is held.
    run.at(700, held_by("b"));
    run.at(800, Input::Arbiter(ArbiterSample::Free));
    assert!(
        !run.decided(|d| matches!(d, Decision::Promote { .. })),
        "free is not ours yet"
    );
    let out = run.held(850, 5850);
    assert!(out.contains(&Decision::Promote { attempt: 1 }), "{out:?}");
}

#[test]
fn an_arbiter_error_never_promotes() {
    let mut run = Run::standby(RULES);
    run.peer_crashed();
    run.etcd_silent(650);
    let mut ms = 700;
    while ms <= 20_000 {
        run.at(ms, Input::Peer(PeerSample::DatabaseDown));
        run.at(ms, Input::Local(STANDBY));
        ms += 100;
    }
    assert!(!run.decided(|d| matches!(d, Decision::Promote { .. })));
    assert_eq!(
        run.policy.status().hold,
        Some(Hold::ArbiterKey(KeyState::Unknown))
    );
    // Nothing was released: the node still wants the key.
    assert!(!run.decided(|d| *d == Decision::Arbiter(ArbiterAction::Release)));
}

#[test]
fn a_master_whose_lease_runs_out_drops_the_vip_and_fences() {
    let mut run = Run::serving_primary(RULES);
    // The standby's host is gone and etcd does not answer: no confirmation.
    run.probes(600, 4900, PRIMARY, PeerSample::Unreachable);
    run.etcd_silent(1000);
    assert!(
        !run.decided(|d| *d == Decision::RemoveVip),
        "the lease still runs"
    );
    assert_eq!(run.policy.next_wakeup(), Some(run.t(5000)));
    let out = run.at(5000, Input::Tick);
    assert!(
        out.contains(&Decision::Notice(Notice::LeaseLost)),
        "{out:?}"
    );
    let remove = out.iter().position(|d| *d == Decision::RemoveVip);
    let fence = out
        .iter()
        .position(|d| *d == Decision::Fence(FenceReason::LeaseLost));
    assert!(
        matches!((remove, fence), (Some(r), Some(f)) if r < f),
        "{out:?}"
    );
    // While the fence runs the database still answers as a healthy primary: it stays fenced,
    // gives the key up and never asks for it again.
    run.probes(5100, 8000, PRIMARY, PeerSample::Unreachable);
    run.held(8000, 13_000);
    assert_eq!(
        run.policy.status().fenced,
        Some(FenceReason::LeaseLost),
        "{:?}",
        run.log
    );
    let last_ask = run
        .log
        .iter()
        .rev()
        .find_map(|(_, d)| matches!(d, Decision::Arbiter(_)).then_some(d.clone()));
    assert_eq!(last_ask, Some(Decision::Arbiter(ArbiterAction::Release)));
    assert_eq!(run.decided_count(|d| *d == Decision::InstallVip), 1);

    // on_lease_loss = "remove-vip": the VIP goes, the database keeps running.
    let mut run = Run::serving_primary(ArbiterRules {
        fence_on_loss: false,
        ..RULES
    });
    run.probes(600, 4900, PRIMARY, PeerSample::Unreachable);
    run.etcd_silent(1000);
    let out = run.at(5000, Input::Tick);
    assert!(out.contains(&Decision::RemoveVip), "{out:?}");
    assert!(!run.decided(|d| matches!(d, Decision::Fence(_))));
    // A refresh that gets through again gives the VIP back.
    let out = run.held(5100, 10_000);
    assert!(out.contains(&Decision::InstallVip), "{out:?}");
}

#[test]
fn the_failsafe_keeps_a_master_serving_while_the_peer_streams_from_it() {
    let mut run = Run::serving_primary(RULES);
    run.etcd_silent(1000);
    run.probes(600, 9000, PRIMARY, PeerSample::Standby);
    assert!(
        !run.decided(|d| *d == Decision::RemoveVip || matches!(d, Decision::Fence(_))),
        "an etcd outage alone with both nodes up causes no outage"
    );
    assert_eq!(
        run.policy.status().arbiter.map(|a| a.failsafe_active),
        Some(true)
    );
    // The standby stops streaming from us: the confirmation is gone.
    let not_streaming = LocalSample::Primary {
        timeline: Some(1),
        position: streaming(false),
    };
    let out = run.at(9100, Input::Local(not_streaming));
    assert!(out.contains(&Decision::RemoveVip), "{out:?}");

    // The standby's host stops answering: no confirmation from then on.
    let mut run = Run::serving_primary(RULES);
    run.etcd_silent(1000);
    run.probes(600, 6000, PRIMARY, PeerSample::Standby);
    run.at(6100, Input::Local(PRIMARY));
    run.at(6100, Input::Peer(PeerSample::Unreachable));
    assert_eq!(run.when(&Decision::RemoveVip), Some(6100));

    // failsafe = false: the lease decides alone.
    let mut run = Run::serving_primary(ArbiterRules {
        failsafe: false,
        ..RULES
    });
    run.etcd_silent(1000);
    run.probes(600, 6000, PRIMARY, PeerSample::Standby);
    assert_eq!(run.when(&Decision::RemoveVip), Some(5000));
}

#[test]
fn a_database_crash_releases_the_key_at_once_after_the_vip() {
    let mut run = Run::serving_primary(RULES);
    run.probes(600, 1000, PRIMARY, PeerSample::Standby);
    let out = run.at(1010, Input::PostmasterExited);
    let remove = out.iter().position(|d| *d == Decision::RemoveVip);
    let release = out
        .iter()
        .position(|d| *d == Decision::Arbiter(ArbiterAction::Release));
    assert!(
        matches!((remove, release), (Some(r), Some(k)) if r < k),
        "{out:?}"
    );
    assert!(
        !out.iter().any(|d| matches!(d, Decision::Fence(_))),
        "a crashed database is not fenced for the lease: {out:?}"
    );
}

#[test]
fn a_live_primary_that_released_the_key_is_fenced_once_the_peer_holds_it() {
    let mut run = Run::serving_primary(RULES);
    run.probes(600, 1000, PRIMARY, PeerSample::Standby);
    // Its database stops taking new connections (too many clients): `fall` failures.
    for ms in [1100, 1200, 1300] {
        run.at(ms, Input::Local(LocalSample::NotAccepting));
    }
    assert!(
        run.decided(|d| *d == Decision::Arbiter(ArbiterAction::Release)),
        "{:?}",
        run.log
    );
    assert!(
        !run.decided(|d| matches!(d, Decision::Fence(_))),
        "{:?}",
        run.log
    );
    // The standby takes the key to promote: this database must not stay a primary beside it.
    let out = run.at(1500, held_by("n2"));
    assert!(
        out.contains(&Decision::Fence(FenceReason::LeaseLost)),
        "{out:?}"
    );
    // Once.
    let out = run.at(2500, held_by("n2"));
    assert!(
        !out.iter().any(|d| matches!(d, Decision::Fence(_))),
        "{out:?}"
    );
}

#[test]
fn a_crashed_primary_is_not_fenced_when_the_peer_takes_the_key() {
    let mut run = Run::serving_primary(RULES);
    run.probes(600, 1000, PRIMARY, PeerSample::Standby);
    run.at(1010, Input::PostmasterExited);
    let out = run.at(1500, held_by("n2"));
    assert!(
        !out.iter().any(|d| matches!(d, Decision::Fence(_))),
        "{out:?}"
    );
}

#[test]
fn a_refresh_that_arrives_after_the_release_is_not_a_key_held() {
    let mut run = Run::standby(RULES);
    run.peer_crashed();
    // The old primary answers again before the key came: the standby gives the request up.
    run.at(620, Input::Peer(PEER_PRIMARY));
    assert_eq!(
        run.when(&Decision::Arbiter(ArbiterAction::Release)),
        Some(620),
        "{:?}",
        run.log
    );
    // The grant that was in flight arrives now.
    run.held(630, 5630);
    assert_eq!(run.policy.status().arbiter.map(|a| a.held), Some(false));
    // The primary dies again: the standby asks again and promotes only on a fresh grant.
    run.at(700, Input::Peer(PeerSample::DatabaseDown));
    run.at(800, Input::Peer(PeerSample::DatabaseDown));
    assert!(
        !run.decided(|d| matches!(d, Decision::Promote { .. })),
        "{:?}",
        run.log
    );
    let out = run.held(850, 5850);
    assert!(out.contains(&Decision::Promote { attempt: 1 }), "{out:?}");
}

#[test]
fn without_an_arbiter_nothing_asks_for_a_key() {
    let t0 = Instant::now();
    let mut policy = Policy::new(config(), t0);
    let mut all = policy.start(t0);
    for ms in (0..=500).step_by(100) {
        let now = t0 + Duration::from_millis(ms);
        all.extend(policy.handle(Input::Local(PRIMARY), now));
        all.extend(policy.handle(Input::Peer(PeerSample::Standby), now));
    }
    all.extend(policy.handle(
        Input::Vrrp {
            to: State::Master,
            reason: TransitionReason::MasterDown,
        },
        t0 + Duration::from_millis(500),
    ));
    assert!(all.contains(&Decision::InstallVip));
    assert!(!all.iter().any(|d| matches!(d, Decision::Arbiter(_))));
    assert_eq!(policy.status().arbiter, None);
}

// ---- sync modes with an arbiter: etcd's sync record (Patroni's ordering contract) -----------

fn sync_config() -> PolicyConfig {
    PolicyConfig {
        replication: ReplicationConfig {
            synchronous_required: true,
            ..config().replication
        },
        sync: SyncConfig {
            mode: SyncMode::Sync,
            timeout: Duration::from_secs(10),
            maximum_lag: 1 << 20,
            not_streaming_grace: Duration::from_millis(500),
            retry_delay: Duration::from_secs(2),
        },
        ..config()
    }
}

/// The local primary, its standby streaming; `sync`: listed `sync_state` sync.
fn primary_listing(sync: bool) -> LocalSample {
    LocalSample::Primary {
        timeline: Some(1),
        position: Some(PrimaryPosition {
            current: WAL_AT,
            standby: Some(StandbyRow {
                streaming: true,
                synchronous: sync,
                flush: Some(WAL_AT),
            }),
        }),
    }
}

fn relaxes(d: &Decision) -> bool {
    *d == Decision::SetSynchronousStandby(SyncTarget::Alone)
}

fn record_write(d: &Decision, what: SyncRecordWrite) -> bool {
    *d == Decision::WriteSyncRecord(what)
}

impl Run {
    /// A sync-mode primary holding the key (until 5 s), its standby set as synchronous and
    /// listed sync from 700 ms.
    fn sync_primary() -> Run {
        let mut run = Run::with_config(sync_config(), RULES);
        run.probes(0, 500, primary_listing(false), PeerSample::Standby);
        run.vrrp(500, State::Master, TransitionReason::MasterDown);
        run.held(510, 5000);
        run.at(
            600,
            Input::SynchronousStandbySet {
                target: SyncTarget::Standby,
                result: Ok("\"b\"".into()),
            },
        );
        run
    }

    /// Probes every 100 ms and a lease refresh every 500 ms (each valid for 2 s more).
    fn serve(&mut self, from: u64, to: u64, local: LocalSample, peer: PeerSample) {
        let mut ms = from;
        while ms <= to {
            if ms % 500 == 0 {
                self.held(ms, ms + 2000);
            }
            self.at(ms, Input::Local(local));
            self.at(ms, Input::Peer(peer));
            ms += 100;
        }
    }

    /// A sync-mode standby whose primary listed it sync, and then crashed (resigned at 560).
    fn sync_standby_after_crash() -> Run {
        let peer_sync = PeerSample::Primary {
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
        let mut run = Run::with_config(sync_config(), RULES);
        run.probes(0, 500, STANDBY, peer_sync);
        run.vrrp(500, State::Backup, TransitionReason::Startup);
        run.at(500, held_by("a"));
        run.peer_crashed();
        assert_eq!(
            run.when(&Decision::Arbiter(ArbiterAction::Campaign)),
            Some(560)
        );
        run
    }
}

#[test]
fn sync_the_record_names_the_standby_once_it_is_listed_sync() {
    let mut run = Run::sync_primary();
    run.serve(700, 1000, primary_listing(false), PeerSample::Standby);
    assert!(
        !run.decided(|d| matches!(d, Decision::WriteSyncRecord(_))),
        "set, but not yet listed sync: {:?}",
        run.log
    );
    run.serve(1100, 1500, primary_listing(true), PeerSample::Standby);
    assert_eq!(
        run.when(&Decision::WriteSyncRecord(SyncRecordWrite::Standby)),
        Some(1100)
    );
    assert_eq!(
        run.decided_count(|d| matches!(d, Decision::WriteSyncRecord(_))),
        1,
        "one write in flight at a time"
    );
    run.at(
        1510,
        Input::SyncRecordWritten {
            record: SyncRecordWrite::Standby,
            result: Ok(()),
        },
    );
    run.serve(1600, 3000, primary_listing(true), PeerSample::Standby);
    assert_eq!(
        run.decided_count(|d| matches!(d, Decision::WriteSyncRecord(_))),
        1,
        "written once"
    );
    let status = run.policy.status().arbiter.expect("an arbiter");
    assert_eq!(status.sync_record_written, Some(SyncRecordWrite::Standby));

    // Not while the key is not ours: a primary that never held it writes nothing.
    let mut run = Run::with_config(sync_config(), RULES);
    run.probes(0, 500, primary_listing(false), PeerSample::Standby);
    run.at(
        600,
        Input::SynchronousStandbySet {
            target: SyncTarget::Standby,
            result: Ok("\"b\"".into()),
        },
    );
    run.probes(700, 3000, primary_listing(true), PeerSample::Standby);
    assert!(!run.decided(|d| matches!(d, Decision::WriteSyncRecord(_))));
}

#[test]
fn sync_the_primary_commits_alone_only_after_etcd_acknowledged_none() {
    let mut run = Run::sync_primary();
    run.serve(700, 1000, primary_listing(true), PeerSample::Standby);
    run.at(
        1010,
        Input::SyncRecordWritten {
            record: SyncRecordWrite::Standby,
            result: Ok(()),
        },
    );
    // The standby's host goes silent after its answer at 1 s: sync_timeout ends at 11 s.
    run.serve(1100, 12_000, primary_listing(true), PeerSample::Unreachable);
    assert_eq!(
        run.when(&Decision::WriteSyncRecord(SyncRecordWrite::None)),
        Some(11_000),
        "{:?}",
        run.log
    );
    assert!(
        !run.decided(relaxes),
        "no relax before etcd acknowledged none"
    );
    assert!(run.policy.status().arbiter.unwrap().relax_waits_for_record);
    let out = run.at(
        12_050,
        Input::SyncRecordWritten {
            record: SyncRecordWrite::None,
            result: Ok(()),
        },
    );
    assert!(
        out.iter().any(relaxes),
        "relaxed on the acknowledgement: {out:?}"
    );
    let first_none = run
        .log
        .iter()
        .position(|(_, d)| *d == Decision::Notice(Notice::SyncRecordWritten(SyncRecordWrite::None)))
        .expect("the acknowledgement is said");
    let first_relax = run.log.iter().position(|(_, d)| relaxes(d)).unwrap();
    assert!(first_none < first_relax);

    // The standby streams again: required first, then named again once listed sync.
    run.at(
        12_100,
        Input::SynchronousStandbySet {
            target: SyncTarget::Alone,
            result: Ok(String::new()),
        },
    );
    run.serve(12_200, 12_500, primary_listing(false), PeerSample::Standby);
    assert!(run.decided(|d| *d == Decision::SetSynchronousStandby(SyncTarget::Standby)));
    assert!(!run
        .log
        .iter()
        .any(|(ms, d)| *ms > 12_050 && record_write(d, SyncRecordWrite::Standby)));
}

#[test]
fn sync_an_etcd_error_holds_the_relax_and_is_said_once() {
    let mut run = Run::sync_primary();
    run.serve(700, 1000, primary_listing(true), PeerSample::Standby);
    run.at(
        1010,
        Input::SyncRecordWritten {
            record: SyncRecordWrite::Standby,
            result: Ok(()),
        },
    );
    run.serve(1100, 11_000, primary_listing(true), PeerSample::Unreachable);
    let error = "etcd sync record write at http://10.0.0.3:2379 gave no answer within 1s";
    let fail = Input::SyncRecordWritten {
        record: SyncRecordWrite::None,
        result: Err(error.into()),
    };
    run.at(11_010, fail.clone());
    run.serve(
        11_100,
        13_100,
        primary_listing(true),
        PeerSample::Unreachable,
    );
    assert_eq!(
        run.when(&Decision::WriteSyncRecord(SyncRecordWrite::None)),
        Some(11_000)
    );
    // Retried after the retry delay (2 s from 11.01 s: the first evaluation after), and
    // failing the same way again.
    let retries: Vec<u64> = run
        .log
        .iter()
        .filter(|(_, d)| record_write(d, SyncRecordWrite::None))
        .map(|(ms, _)| *ms)
        .collect();
    assert_eq!(retries, vec![11_000, 13_100]);
    run.at(13_110, fail);
    assert_eq!(
        run.decided_count(|d| matches!(d, Decision::Notice(Notice::SyncRecordFailed { .. }))),
        1,
        "said once"
    );
    assert!(!run.decided(relaxes), "an etcd error is no relax");
    let status = run.policy.status().arbiter.unwrap();
    assert_eq!(status.sync_record_error.as_deref(), Some(error));
    assert!(status.relax_waits_for_record);

    // etcd silent and the lease run out: nothing is asked any more, and still no relax.
    let mut ms = 13_200;
    while ms <= 30_000 {
        run.at(ms, Input::Local(primary_listing(true)));
        run.at(ms, Input::Peer(PeerSample::Unreachable));
        ms += 100;
    }
    assert!(!run.decided(relaxes));
    assert!(!run
        .log
        .iter()
        .any(|(ms, d)| *ms > 15_000 && matches!(d, Decision::WriteSyncRecord(_))));
}

#[test]
fn sync_a_standby_promotes_only_on_a_record_read_under_the_key_naming_it() {
    let mut run = Run::sync_standby_after_crash();
    run.held(700, 5000);
    assert!(!run.decided(|d| matches!(d, Decision::Promote { .. })));
    assert_eq!(
        run.policy.status().hold,
        Some(Hold::SyncRecord(RecordRefusal::NotRead))
    );
    let out = run.at(
        710,
        Input::SyncRecord {
            record: SyncRecord::NamesThisNode,
            under_key: true,
        },
    );
    assert!(out.contains(&Decision::Promote { attempt: 1 }), "{out:?}");

    // "none": refused, loudly, and the key is kept so the operator can override.
    for record in [
        SyncRecord::NamesNone {
            since_unix_ms: Some(1_700_000_000_000),
        },
        SyncRecord::Absent,
        SyncRecord::NamesOther { node: "c".into() },
        SyncRecord::Unknown {
            reason: "etcd read at http://10.0.0.3:2379 failed".into(),
        },
    ] {
        let mut run = Run::sync_standby_after_crash();
        run.held(700, 5000);
        run.at(
            710,
            Input::SyncRecord {
                record: record.clone(),
                under_key: true,
            },
        );
        let mut ms = 800;
        while ms <= 4000 {
            run.at(ms, Input::Peer(PeerSample::DatabaseDown));
            run.at(ms, Input::Local(STANDBY));
            ms += 100;
        }
        assert!(
            !run.decided(|d| matches!(d, Decision::Promote { .. })),
            "{record:?}"
        );
        assert!(matches!(
            run.policy.status().hold,
            Some(Hold::SyncRecord(_))
        ));
        assert!(!run.decided(|d| *d == Decision::Arbiter(ArbiterAction::Release)));
        let out = run.at(4010, Input::AcceptDataLoss);
        assert!(
            out.contains(&Decision::Promote { attempt: 1 }),
            "the operator's override: {out:?}"
        );
    }
}

#[test]
fn sync_a_record_read_before_the_key_does_not_count() {
    // Read while the old primary still held the key: it could write "none" afterwards.
    let mut run = Run::sync_standby_after_crash();
    run.at(
        650,
        Input::SyncRecord {
            record: SyncRecord::NamesThisNode,
            under_key: true,
        },
    );
    run.held(700, 5000);
    assert!(!run.decided(|d| matches!(d, Decision::Promote { .. })));
    // A read the client made outside the key (for /status) counts neither.
    run.at(
        710,
        Input::SyncRecord {
            record: SyncRecord::NamesThisNode,
            under_key: false,
        },
    );
    assert!(!run.decided(|d| matches!(d, Decision::Promote { .. })));
    assert_eq!(
        run.policy.status().hold,
        Some(Hold::SyncRecord(RecordRefusal::NotRead))
    );

    // A read under an earlier holding does not count for a new one.
    let mut run = Run::sync_standby_after_crash();
    run.held(700, 900);
    run.at(
        710,
        Input::SyncRecord {
            record: SyncRecord::NamesNone {
                since_unix_ms: None,
            },
            under_key: true,
        },
    );
    run.at(1000, Input::Arbiter(ArbiterSample::Free));
    run.at(1100, Input::Peer(PeerSample::DatabaseDown));
    run.held(1200, 5000);
    assert_eq!(
        run.policy.status().hold,
        Some(Hold::SyncRecord(RecordRefusal::NotRead)),
        "the earlier read is void"
    );

    // Without a sync mode the record plays no part.
    let mut run = Run::standby(RULES);
    run.peer_crashed();
    let out = run.held(700, 5000);
    assert!(out.contains(&Decision::Promote { attempt: 1 }), "{out:?}");
}
