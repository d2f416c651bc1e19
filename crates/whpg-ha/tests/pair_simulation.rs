//! The whole pair, simulated: two real nodes (the daemon's decision code) with fake databases on a
//! simulated network and clock. Each safety rule of the design has a named scenario here, and a
//! property test runs random sequences of crashes, link loss, partitions, heals, daemon restarts,
//! failing promotions and operator requests against every invariant at every step.
//! No root, no network: the whole file runs in seconds.

mod pair;

use std::time::Duration;

use pair::{Pair, PromoteMode, Role, Stream, A, B};
use proptest::prelude::*;
use whpg_ha::node::Request;
use whpg_vrrp::State;

/// The default profile: a silent master is promoted over after 3 s of confirmation.
const DEFAULT: &str = "3s";
/// The fast profile: no confirmation time.
const FAST: &str = "0s";

fn settled(extra: &str) -> Pair {
    let mut pair = Pair::new(extra);
    pair.run_until(5_000);
    assert_eq!(pair.vip_holders(), vec![A], "{}", pair.trace_text());
    assert_eq!(pair.state(A), Some(State::Master));
    assert_eq!(pair.state(B), Some(State::Backup));
    pair
}

#[test]
fn a_simultaneous_start_elects_the_primary_and_never_promotes_the_standby() {
    let pair = settled(DEFAULT);
    assert_eq!(pair.hosts[B].promotions, 0);
    assert_eq!(pair.hosts[B].db.role, Role::Standby);
    pair.assert_safe();
}

#[test]
fn the_backup_probes_the_peers_database_after_each_advert_it_accepts() {
    // The peer probes keep the adverts' phase, so the probe in flight at a cut times out before
    // the master-down interval ends. Only the backup hears adverts; none come over a cut link.
    let mut pair = settled(FAST);
    let (a0, b0) = (pair.hosts[A].peer_nudges, pair.hosts[B].peer_nudges);
    pair.run_until(7_000);
    let (a1, b1) = (pair.hosts[A].peer_nudges, pair.hosts[B].peer_nudges);
    assert_eq!(a1, a0, "the master hears no adverts to follow");
    assert!(
        (19..=21).contains(&(b1 - b0)),
        "the backup asked {} times for 20 adverts in 2 s",
        b1 - b0
    );
    pair.set_link(A, false);
    pair.run_until(7_200);
    let cut = pair.hosts[B].peer_nudges;
    pair.run_until(8_000);
    assert_eq!(pair.hosts[B].peer_nudges, cut, "no adverts over a cut link");
}

#[test]
fn a_database_crash_on_the_master_moves_the_vip_to_the_promoted_standby() {
    let mut pair = settled(DEFAULT);
    pair.crash_db(A);
    pair.run_until(5_500);
    assert_eq!(pair.vip_holders(), vec![B], "{}", pair.trace_text());
    assert_eq!(pair.hosts[B].db.role, Role::Primary);
    assert_eq!(pair.hosts[B].db.timeline, 2);
    pair.assert_safe();
}

#[test]
fn a_silent_master_is_promoted_over_only_after_the_confirmation_time() {
    let mut pair = settled(DEFAULT);
    pair.set_link(A, false);
    pair.run_until(7_000);
    assert_eq!(pair.hosts[B].promotions, 0, "{}", pair.trace_text());
    assert!(pair.vip_holders().is_empty() || pair.vip_holders() == vec![A]);
    pair.run_until(10_000);
    assert_eq!(pair.vip_holders(), vec![B], "{}", pair.trace_text());
    pair.assert_safe();
}

#[test]
fn a_blip_shorter_than_the_confirmation_time_leaves_the_pair_as_it_was() {
    let mut pair = settled(DEFAULT);
    pair.set_link(A, false);
    pair.run_until(6_000);
    pair.set_link(A, true);
    pair.run_until(15_000);
    assert_eq!(pair.hosts[B].promotions, 0, "{}", pair.trace_text());
    assert_eq!(pair.vip_holders(), vec![A]);
    assert_eq!(pair.hosts[A].db.timeline, 1);
    pair.assert_safe();
}

#[test]
fn a_standby_cut_off_from_the_primary_and_the_witness_never_promotes() {
    let mut pair = settled(FAST);
    pair.set_link(B, false);
    pair.run_until(20_000);
    assert_eq!(pair.hosts[B].promotions, 0, "{}", pair.trace_text());
    assert_eq!(pair.vip_holders(), vec![A]);
    pair.assert_safe();
}

#[test]
fn an_isolated_master_drops_the_vip_and_fences_its_database() {
    let mut pair = settled(DEFAULT);
    pair.set_link(A, false);
    pair.run_until(12_000);
    assert!(pair.hosts[A].fences >= 1, "{}", pair.trace_text());
    assert!(!pair.hosts[A].vip);
    assert!(!pair.hosts[A].db.up, "fenced");
    assert_eq!(pair.vip_holders(), vec![B]);
    pair.assert_safe();
}

#[test]
fn a_promotion_that_fails_hangs_or_lies_never_puts_the_vip_on_a_read_only_database() {
    for mode in [PromoteMode::Fails, PromoteMode::Hangs, PromoteMode::Lies] {
        let mut pair = settled(DEFAULT);
        pair.set_promote_mode(B, mode);
        pair.crash_db(A);
        // Three attempts, each bounded by the promote command's timeout or the verification.
        let attempt = pair.hosts[B].config.commands.promote.timeout + Duration::from_secs(35);
        pair.run_until(10_000 + 3 * attempt.as_millis() as u64);
        assert!(pair.hosts[B].promotions >= 1, "{mode:?}");
        assert!(
            pair.vip_holders().is_empty(),
            "{mode:?}: {}",
            pair.trace_text()
        );
        // Invariant 3: after the last attempt the node gives up and releases the mastership (with
        // no other candidate VRRP may elect it again, but it never retries nor takes the VIP).
        let policy = pair.hosts[B]
            .node
            .as_ref()
            .unwrap()
            .policy_status()
            .unwrap();
        assert!(policy.promotion_gave_up, "{mode:?}: {}", pair.trace_text());
        assert!(
            pair.trace_text().contains("host 1: promote attempt 3"),
            "{mode:?}: three attempts: {}",
            pair.trace_text()
        );
        pair.assert_safe();
    }
}

#[test]
fn an_old_primary_restarted_after_a_failover_is_fenced_and_never_takes_the_vip() {
    let mut pair = settled(DEFAULT);
    pair.crash_db(A);
    pair.run_until(6_000);
    assert_eq!(pair.vip_holders(), vec![B]);
    pair.restart_db(A);
    pair.run_until(12_000);
    assert_eq!(pair.vip_holders(), vec![B], "{}", pair.trace_text());
    assert!(pair.hosts[A].fences >= 1);
    assert!(!pair.hosts[A].db.up);
    pair.assert_safe();
}

#[test]
fn a_healed_partition_leaves_the_vip_with_the_newest_primary() {
    let mut pair = settled(FAST);
    pair.check_single_holder = false;
    pair.set_partition(true);
    pair.run_until(9_000);
    assert_eq!(
        pair.hosts[B].db.role,
        Role::Primary,
        "{}",
        pair.trace_text()
    );
    pair.set_partition(false);
    pair.check_single_holder = true;
    pair.run_until(15_000);
    assert_eq!(pair.vip_holders(), vec![B], "{}", pair.trace_text());
    pair.assert_safe();
}

#[test]
fn a_restart_of_the_masters_daemon_does_not_promote_the_standby() {
    let mut pair = settled(FAST);
    pair.kill_daemon(A);
    pair.run_until(6_000);
    pair.start_daemon(A);
    pair.run_until(12_000);
    assert_eq!(pair.hosts[B].promotions, 0, "{}", pair.trace_text());
    assert_eq!(pair.vip_holders(), vec![A]);
    pair.assert_safe();
}

#[test]
fn maintenance_mode_holds_failover_on_a_crash() {
    let mut pair = settled(DEFAULT);
    assert_eq!(pair.request(B, Request::Maintenance(true)), Some(Ok(())));
    assert_eq!(pair.request(A, Request::Maintenance(true)), Some(Ok(())));
    pair.crash_db(A);
    pair.run_until(15_000);
    assert_eq!(pair.hosts[B].promotions, 0, "{}", pair.trace_text());
    pair.assert_safe();
}

#[test]
fn maintenance_mode_survives_a_restart_of_either_daemon() {
    let mut pair = settled(DEFAULT);
    assert_eq!(pair.request(A, Request::Maintenance(true)), Some(Ok(())));
    assert_eq!(pair.request(B, Request::Maintenance(true)), Some(Ok(())));
    for i in [A, B] {
        pair.kill_daemon(i);
        let at = pair.ms() + 500;
        pair.run_until(at);
        pair.start_daemon(i);
        let at = pair.ms() + 3000;
        pair.run_until(at);
        let policy = pair.hosts[i]
            .node
            .as_ref()
            .unwrap()
            .policy_status()
            .unwrap();
        assert!(policy.maintenance, "host {i}: {}", pair.trace_text());
    }
    pair.crash_db(A);
    let at = pair.ms() + 15_000;
    pair.run_until(at);
    assert_eq!(pair.hosts[B].promotions, 0, "{}", pair.trace_text());
    // Turned off, it stays off after a restart too.
    assert_eq!(pair.request(B, Request::Maintenance(false)), Some(Ok(())));
    pair.kill_daemon(B);
    pair.start_daemon(B);
    let at = pair.ms() + 3000;
    pair.run_until(at);
    let policy = pair.hosts[B]
        .node
        .as_ref()
        .unwrap()
        .policy_status()
        .unwrap();
    assert!(!policy.maintenance);
    pair.assert_safe();
}

#[test]
fn probes_failing_for_a_local_reason_neither_drop_the_vip_nor_promote() {
    let mut pair = settled(FAST);
    pair.fail_probes_locally(A, Duration::from_secs(10));
    pair.fail_probes_locally(B, Duration::from_secs(10));
    pair.run_until(15_000);
    assert_eq!(pair.vip_holders(), vec![A], "{}", pair.trace_text());
    assert_eq!(pair.hosts[B].promotions, 0);
    pair.assert_safe();
}

#[test]
fn a_planned_promotion_beside_a_live_primary_is_refused_whatever_the_caller_says() {
    // The master's daemon is gone (no adverts), its database serves on: the standby becomes
    // VRRP master, and a caller asks it to promote "from 0/0".
    let mut pair = settled(FAST);
    pair.kill_daemon(A);
    pair.run_until(6_000);
    assert_eq!(pair.state(B), Some(State::Master), "{}", pair.trace_text());
    let planned = Request::PlannedPromotion {
        shutdown_checkpoint: 0,
        received: 0,
    };
    let refused = pair.request(B, planned).expect("daemon runs");
    let why = refused.unwrap_err();
    assert!(why.contains("still answers as a primary"), "{why}");
    pair.run_until(10_000);
    assert_eq!(pair.hosts[B].promotions, 0, "{}", pair.trace_text());
    assert_eq!(pair.hosts[B].db.role, Role::Standby);
    pair.assert_safe();
}

#[test]
fn a_demote_is_refused_unless_the_database_is_a_healthy_primary() {
    let mut pair = settled(DEFAULT);
    let refused = pair.request(B, Request::Demote).expect("daemon runs");
    assert!(refused.unwrap_err().contains("not a healthy primary"));
    assert_eq!(pair.request(A, Request::Demote), Some(Ok(())));
    pair.run_until(6_000);
    assert!(pair.vip_holders().is_empty(), "{}", pair.trace_text());
    pair.assert_safe();
}

/// The stream breaks (or is cut silently) while the primary lives and clients commit; after
/// `cut_for_ms` the primary's database crashes.
fn stream_lost_then_primary_crash(stream: Stream, cut_for_ms: u64) -> Pair {
    let mut pair = settled(DEFAULT);
    pair.set_stream(stream);
    pair.run_until(5_000 + cut_for_ms);
    pair.crash_db(A);
    pair.run_until(5_000 + cut_for_ms + 10_000);
    pair
}

#[test]
fn a_standby_whose_stream_broke_while_the_primary_lived_is_never_promoted() {
    let pair = stream_lost_then_primary_crash(Stream::Broken, 3_000);
    assert_eq!(pair.hosts[B].promotions, 0, "{}", pair.trace_text());
    assert_eq!(pair.hosts[B].db.role, Role::Standby);
    assert!(pair.vip_holders().is_empty(), "{}", pair.trace_text());
    let missing = pair.hosts[A].db.wal - pair.hosts[B].db.wal;
    assert!(missing >= 29_000, "the standby misses {missing} bytes");
    pair.assert_safe();
}

#[test]
fn a_silently_cut_stream_is_noticed_within_the_lag_time_and_nothing_is_lost() {
    // 1.5 s of commits (15 kB), far under maximum_lag: only the lag time can tell.
    let pair = stream_lost_then_primary_crash(Stream::SilentlyCut, 1_500);
    assert_eq!(pair.hosts[B].promotions, 0, "{}", pair.trace_text());
    assert!(pair.vip_holders().is_empty(), "{}", pair.trace_text());
    pair.assert_safe();
}

#[test]
fn the_old_primary_restarted_after_a_refused_failover_serves_again_with_everything() {
    let mut pair = stream_lost_then_primary_crash(Stream::Broken, 3_000);
    pair.restart_db(A);
    pair.set_stream(Stream::Connected);
    pair.run_until(25_000);
    assert_eq!(pair.vip_holders(), vec![A], "{}", pair.trace_text());
    assert_eq!(pair.hosts[B].promotions, 0);
    // The standby streams again and catches up: a later crash fails over as usual.
    assert_eq!(pair.hosts[B].db.wal, pair.hosts[A].db.wal);
    pair.crash_db(A);
    pair.run_until(26_000);
    assert_eq!(pair.vip_holders(), vec![B], "{}", pair.trace_text());
    assert_eq!(pair.lost_bytes, vec![0]);
    pair.assert_safe();
}

#[test]
fn a_stream_healed_before_the_crash_fails_over_as_usual() {
    let mut pair = settled(DEFAULT);
    pair.set_stream(Stream::Broken);
    pair.run_until(7_000);
    pair.set_stream(Stream::Connected);
    pair.run_until(8_000);
    pair.crash_db(A);
    pair.run_until(8_500);
    assert_eq!(pair.vip_holders(), vec![B], "{}", pair.trace_text());
    assert_eq!(pair.lost_bytes, vec![0]);
    pair.assert_safe();
}

#[test]
fn the_not_promotable_mark_survives_a_restart_of_the_standbys_daemon() {
    let mut pair = settled(DEFAULT);
    pair.set_stream(Stream::SilentlyCut);
    pair.run_until(6_500);
    assert!(
        pair.hosts[B].remembered_not_promotable.is_some(),
        "{}",
        pair.trace_text()
    );
    pair.kill_daemon(B);
    pair.run_until(6_600);
    pair.start_daemon(B);
    // Within the lag time of the restart, a fresh daemon alone could not tell the cut yet.
    pair.run_until(6_900);
    pair.crash_db(A);
    pair.run_until(16_900);
    assert_eq!(pair.hosts[B].promotions, 0, "{}", pair.trace_text());
    pair.assert_safe();
}

#[test]
fn the_operator_may_promote_a_standby_that_misses_commits_but_never_beside_a_live_primary() {
    let mut pair = settled(DEFAULT);
    pair.set_stream(Stream::Broken);
    pair.run_until(7_000);
    let refused = pair.promote_accepting_loss(B).expect("daemon runs");
    assert!(refused.is_err(), "promoted beside a live primary");
    pair.crash_db(A);
    pair.run_until(9_000);
    assert_eq!(pair.hosts[B].promotions, 0);
    assert_eq!(pair.promote_accepting_loss(B), Some(Ok(())));
    pair.run_until(10_000);
    assert_eq!(pair.vip_holders(), vec![B], "{}", pair.trace_text());
    assert!(pair.lost_bytes[0] >= 19_000, "{:?}", pair.lost_bytes);
    pair.assert_safe();
}

#[test]
fn the_checker_sees_a_breach_of_each_invariant() {
    // Forced by hand, past what the nodes would do: the checker must report it.
    let mut pair = settled(DEFAULT);
    pair.hosts[B].vip = true;
    pair.run_until(7_000);
    let rules: Vec<&str> = pair.violations.iter().map(|v| v.rule).collect();
    assert!(rules.contains(&"one VIP holder"), "{rules:?}");
    assert!(
        rules.contains(&"the VIP only on a writable database"),
        "{rules:?}"
    );
    // A promotion forced past the guard without the operator's word is a loss the checker sees.
    let mut pair = stream_lost_then_primary_crash(Stream::Broken, 3_000);
    pair.loss_accepted[B] = false;
    let _ = pair.request(B, Request::PromoteAcceptingDataLoss);
    pair.run_until(20_000);
    let rules: Vec<&str> = pair.violations.iter().map(|v| v.rule).collect();
    assert!(
        rules.contains(&"no acknowledged commit lost beyond the mode's allowance"),
        "{rules:?}"
    );
}

// ---- synchronous replication managed by the primary ([replication] mode) --------------------

const SYNC: &str = "sync";
const SYNC_STRICT: &str = "sync-strict";

/// A settled pair in `mode` (sync_timeout 10 s), the standby required by the primary.
fn settled_sync(mode: &str) -> Pair {
    let mut pair = Pair::with_replication(DEFAULT, mode, "10s");
    pair.run_until(5_000);
    assert_eq!(pair.vip_holders(), vec![A], "{}", pair.trace_text());
    assert!(pair.hosts[A].db.sync_standby, "{}", pair.trace_text());
    pair
}

/// Runs in 10 ms steps until host `i` acknowledges a new commit; the ms it took, or `None`
/// within `limit_ms`.
fn acks_again_within(pair: &mut Pair, i: usize, limit_ms: u64) -> Option<u64> {
    let from = pair.ms();
    let acked = pair.hosts[i].db.acked;
    while pair.ms() < from + limit_ms {
        pair.run_until(pair.ms() + 10);
        if pair.hosts[i].db.acked > acked + 200 {
            return Some(pair.ms() - from);
        }
    }
    None
}

#[test]
fn sync_the_primary_requires_its_streaming_standby_and_commits_keep_flowing() {
    for mode in [SYNC, SYNC_STRICT] {
        let mut pair = settled_sync(mode);
        let acked = pair.hosts[A].db.acked;
        pair.run_until(6_000);
        assert!(
            pair.hosts[A].db.acked >= acked + 9_000,
            "{mode}: commits flow"
        );
        assert_eq!(pair.hosts[A].db.acked, pair.hosts[B].db.wal, "{mode}");
        pair.assert_safe();
    }
}

#[test]
fn sync_a_dead_standby_database_relaxes_the_primary_at_once() {
    for mode in [SYNC, SYNC_STRICT] {
        let mut pair = settled_sync(mode);
        pair.crash_db(B);
        let took = acks_again_within(&mut pair, A, 3_000);
        println!("{mode}: standby database killed: the primary commits again after {took:?} ms");
        assert!(
            took.is_some_and(|ms| ms <= 1_000),
            "{took:?}\n{}",
            pair.trace_text()
        );
        assert!(!pair.hosts[A].db.sync_standby);
        // It comes back, catches up and is required again; a primary crash then loses nothing.
        pair.restart_db(B);
        pair.run_until(pair.ms() + 3_000);
        assert!(pair.hosts[A].db.sync_standby, "{}", pair.trace_text());
        pair.crash_db(A);
        pair.run_until(pair.ms() + 2_000);
        assert_eq!(pair.vip_holders(), vec![B], "{}", pair.trace_text());
        assert_eq!(pair.lost_bytes, vec![0], "{mode}");
        pair.assert_safe();
    }
}

#[test]
fn sync_a_lost_standby_host_relaxes_after_the_sync_timeout_and_strict_never() {
    let mut pair = settled_sync(SYNC);
    pair.set_link(B, false);
    let took = acks_again_within(&mut pair, A, 15_000);
    println!(
        "sync: standby host lost: the primary commits again after {took:?} ms (sync_timeout 10 s)"
    );
    assert!(
        took.is_some_and(|ms| (10_000..=11_000).contains(&ms)),
        "{took:?}\n{}",
        pair.trace_text()
    );
    pair.assert_safe();

    let mut pair = settled_sync(SYNC_STRICT);
    pair.set_link(B, false);
    assert_eq!(acks_again_within(&mut pair, A, 30_000), None);
    assert!(pair.hosts[A].db.sync_standby);
    // The standby's host is back: commits flow at once, and nothing was lost.
    pair.set_link(B, true);
    assert!(
        acks_again_within(&mut pair, A, 2_000).is_some(),
        "{}",
        pair.trace_text()
    );
    pair.assert_safe();
}

#[test]
fn sync_a_primary_crash_and_a_primary_link_loss_lose_nothing() {
    for mode in [SYNC, SYNC_STRICT] {
        let mut pair = settled_sync(mode);
        pair.crash_db(A);
        pair.run_until(6_000);
        assert_eq!(pair.vip_holders(), vec![B], "{mode}\n{}", pair.trace_text());
        assert_eq!(pair.lost_bytes, vec![0], "{mode}");
        pair.assert_safe();

        let mut pair = settled_sync(mode);
        pair.set_link(A, false);
        pair.run_until(12_000);
        assert_eq!(pair.hosts[B].promotions, 1, "{mode}\n{}", pair.trace_text());
        assert_eq!(pair.lost_bytes, vec![0], "{mode}");
        pair.assert_safe();
    }
}

#[test]
fn sync_a_partition_healed_before_the_sync_timeout_loses_nothing() {
    // Both hosts reach the witness: the standby is promoted after the confirmation time while
    // the old primary keeps its VIP. Its commits wait instead of being acknowledged alone.
    for mode in [SYNC, SYNC_STRICT] {
        let mut pair = settled_sync(mode);
        pair.check_single_holder = false;
        pair.set_partition(true);
        pair.run_until(13_000);
        assert_eq!(pair.hosts[B].promotions, 1, "{mode}\n{}", pair.trace_text());
        pair.set_partition(false);
        pair.run_until(16_000);
        assert_eq!(pair.lost_bytes, vec![0], "{mode}");
        pair.assert_safe();
    }
    // Without synchronous replication the same partition loses what the old primary
    // acknowledged during the confirmation time.
    let mut pair = settled(DEFAULT);
    pair.check_single_holder = false;
    pair.set_partition(true);
    pair.run_until(13_000);
    assert!(pair.lost_bytes[0] >= 20_000, "{:?}", pair.lost_bytes);
}

#[test]
fn sync_a_partition_longer_than_the_sync_timeout_loses_only_what_was_acknowledged_after_it() {
    let mut pair = settled_sync(SYNC);
    pair.check_single_holder = false;
    pair.set_partition(true);
    pair.run_until(25_000);
    let acked_alone = pair.acknowledged_alone(A).unwrap_or(0);
    println!(
        "sync: 20 s partition: the old primary acknowledged {acked_alone} bytes alone after the \
         sync timeout; lost at the promotion: {:?}",
        pair.lost_bytes
    );
    assert_eq!(
        pair.lost_bytes,
        vec![0],
        "the standby was promoted before the timeout"
    );
    // Relaxed 10 s after the standby's last answer (at most one probe interval before the
    // partition): about 10 s of commits at 10 bytes/ms, acknowledged alone.
    assert!(
        (90_000..=101_000).contains(&acked_alone),
        "{acked_alone}\n{}",
        pair.trace_text()
    );
    pair.assert_safe();

    let mut pair = settled_sync(SYNC_STRICT);
    pair.check_single_holder = false;
    pair.set_partition(true);
    pair.run_until(25_000);
    assert!(pair.hosts[A].db.sync_standby, "sync-strict never relaxes");
    assert_eq!(pair.acknowledged_alone(A), None);
    pair.assert_safe();
}

#[test]
fn sync_a_link_loss_during_a_silent_cut_never_relaxes_on_answers_from_before_it() {
    // Found by the property test: the WAL sender was gone only while the primary's link was
    // down, so the standby never saw the primary without it; answers from before the silence are
    // no evidence that the standby marked itself.
    let pair = run_faults(
        settled_sync(SYNC),
        &[
            (1551, Fault::Stream(Stream::SilentlyCut)),
            (871, Fault::Link(A, false)),
            (1478, Fault::Link(A, true)),
            (106, Fault::CrashDb(A)),
        ],
    );
    assert!(
        pair.lost_bytes.iter().all(|&l| l == 0),
        "{:?}",
        pair.lost_bytes
    );
    pair.assert_safe();
}

#[test]
fn the_checker_sees_a_sync_strict_primary_acknowledging_alone() {
    let mut pair = settled_sync(SYNC_STRICT);
    pair.check_single_holder = false;
    pair.set_partition(true);
    pair.run_until(6_000);
    // Forced by hand, past what the node would do.
    pair.hosts[A].db.sync_standby = false;
    pair.run_until(7_000);
    let rules: Vec<&str> = pair.violations.iter().map(|v| v.rule).collect();
    assert!(
        rules.contains(&"a sync-strict primary never acknowledges alone"),
        "{rules:?}"
    );
}

/// One thing that happens to the pair.
#[derive(Debug, Clone)]
enum Fault {
    CrashDb(usize),
    RestartDb(usize),
    Link(usize, bool),
    Partition(bool),
    KillDaemon(usize),
    StartDaemon(usize),
    Maintenance(usize, bool),
    PromoteMode(usize, PromoteMode),
    LocalFailure(usize, u64),
    Stream(Stream),
    /// The whole etcd cluster down (`true`) or back (with an arbiter only).
    Etcd(bool),
}

fn host() -> impl Strategy<Value = usize> {
    0usize..2
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        3 => host().prop_map(Fault::CrashDb),
        2 => host().prop_map(Fault::RestartDb),
        3 => (host(), any::<bool>()).prop_map(|(h, up)| Fault::Link(h, up)),
        2 => any::<bool>().prop_map(Fault::Partition),
        1 => host().prop_map(Fault::KillDaemon),
        2 => host().prop_map(Fault::StartDaemon),
        1 => (host(), any::<bool>()).prop_map(|(h, on)| Fault::Maintenance(h, on)),
        1 => (host(), prop_oneof![
            Just(PromoteMode::Succeeds),
            Just(PromoteMode::Fails),
            Just(PromoteMode::Hangs),
            Just(PromoteMode::Lies)
        ]).prop_map(|(h, m)| Fault::PromoteMode(h, m)),
        1 => (host(), 100u64..3000).prop_map(|(h, ms)| Fault::LocalFailure(h, ms)),
        2 => prop_oneof![
            Just(Stream::Connected),
            Just(Stream::Broken),
            Just(Stream::SilentlyCut)
        ].prop_map(Fault::Stream),
    ]
}

fn apply(pair: &mut Pair, fault: &Fault) {
    match *fault {
        Fault::CrashDb(i) => pair.crash_db(i),
        Fault::RestartDb(i) => pair.restart_db(i),
        Fault::Link(i, up) => pair.set_link(i, up),
        Fault::Partition(on) => pair.set_partition(on),
        Fault::KillDaemon(i) => pair.kill_daemon(i),
        Fault::StartDaemon(i) => pair.start_daemon(i),
        Fault::Maintenance(i, on) => {
            let _ = pair.request(i, Request::Maintenance(on));
        }
        Fault::PromoteMode(i, mode) => pair.set_promote_mode(i, mode),
        Fault::LocalFailure(i, ms) => pair.fail_probes_locally(i, Duration::from_millis(ms)),
        Fault::Stream(stream) => pair.set_stream(stream),
        Fault::Etcd(down) => pair.set_etcd_down(down),
    }
    // A symmetric partition is the case no two-node protocol can settle: two holders are
    // allowed while it lasts (the arbiter closes it), every other invariant still holds.
    pair.check_single_holder = !pair.partitioned || pair.etcd.is_some();
}

/// Every fault of [`fault`], and the etcd cluster going down and coming back.
fn arbiter_fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        6 => fault(),
        1 => any::<bool>().prop_map(Fault::Etcd),
    ]
}

fn settled_with_arbiter(profile: &str) -> Pair {
    let mut pair = Pair::with_arbiter(profile);
    pair.run_until(5_000);
    assert_eq!(pair.vip_holders(), vec![A], "{}", pair.trace_text());
    assert_eq!(
        pair.etcd.as_ref().and_then(|e| e.holder).map(|(h, _)| h),
        Some(A)
    );
    pair
}

fn run_sequence_with_arbiter(profile: &str, faults: &[(u64, Fault)]) -> Pair {
    let mut pair = settled_with_arbiter(profile);
    let mut at = pair.ms();
    for (gap, fault) in faults {
        at += gap;
        pair.run_until(at);
        apply(&mut pair, fault);
    }
    pair.run_until(at + 10_000);
    pair
}

/// Found by the sync-strict property test: the new primary is isolated and fenced while its
/// probes fail for a local reason, the network heals — the VIP must not go back on the stopped
/// database on the strength of its answers from before the fence.
#[test]
fn a_database_fenced_for_isolation_never_gets_the_vip_back_while_probes_fail_locally() {
    let faults = [
        (1535, Fault::CrashDb(0)),
        (465, Fault::Link(1, false)),
        (775, Fault::CrashDb(0)),
        (1425, Fault::LocalFailure(1, 901)),
        (0, Fault::Link(1, true)),
    ];
    for pair in [
        run_faults(settled_sync(SYNC_STRICT), &faults),
        run_sequence(DEFAULT, &faults),
        run_sequence(FAST, &faults),
    ] {
        pair.assert_safe();
    }
}

fn run_sequence(profile: &str, faults: &[(u64, Fault)]) -> Pair {
    run_faults(settled(profile), faults)
}

fn run_faults(mut pair: Pair, faults: &[(u64, Fault)]) -> Pair {
    let mut at = pair.ms();
    for (gap, fault) in faults {
        at += gap;
        pair.run_until(at);
        apply(&mut pair, fault);
    }
    pair.run_until(at + 10_000);
    pair
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn no_random_sequence_breaks_an_invariant_default_profile(
        faults in prop::collection::vec((0u64..4000, fault()), 1..12)
    ) {
        let pair = run_sequence(DEFAULT, &faults);
        prop_assert!(pair.violations.is_empty(), "{:?}\n{}", pair.violations, pair.trace_text());
    }

    #[test]
    fn no_random_sequence_breaks_an_invariant_sync(
        faults in prop::collection::vec((0u64..4000, fault()), 1..12)
    ) {
        let pair = run_faults(settled_sync(SYNC), &faults);
        prop_assert!(pair.violations.is_empty(), "{:?}\n{}", pair.violations, pair.trace_text());
    }

    #[test]
    fn no_random_sequence_breaks_an_invariant_sync_strict(
        faults in prop::collection::vec((0u64..4000, fault()), 1..12)
    ) {
        let pair = run_faults(settled_sync(SYNC_STRICT), &faults);
        prop_assert!(pair.violations.is_empty(), "{:?}\n{}", pair.violations, pair.trace_text());
    }

    #[test]
    fn no_random_sequence_breaks_an_invariant_fast_profile(
        faults in prop::collection::vec((0u64..4000, fault()), 1..12)
    ) {
        let pair = run_sequence(FAST, &faults);
        prop_assert!(pair.violations.is_empty(), "{:?}\n{}", pair.violations, pair.trace_text());
    }
}

// ---- with an etcd arbiter (invariant 10) -----------------------------------------------------

#[test]
fn with_an_arbiter_a_symmetric_partition_leaves_one_vip_holder() {
    // The fast profile: without an arbiter the standby promotes at once and both hold the VIP.
    let mut pair = settled_with_arbiter(FAST);
    pair.set_partition(true);
    pair.run_until(30_000);
    assert_eq!(pair.vip_holders(), vec![A], "{}", pair.trace_text());
    assert_eq!(pair.hosts[B].promotions, 0, "{}", pair.trace_text());
    assert_eq!(
        pair.hosts[A].fences, 0,
        "the primary keeps its key and serves"
    );
    pair.set_partition(false);
    pair.run_until(40_000);
    assert_eq!(pair.vip_holders(), vec![A], "{}", pair.trace_text());
    pair.assert_safe();
}

#[test]
fn with_an_arbiter_a_failing_but_live_primary_is_fenced_once_the_standby_holds_the_key() {
    // Cut from its standby (both still reach etcd), the primary's database then refuses new
    // logins (waiting commits used up max_connections): its health fails and it releases the
    // key; the standby takes it and promotes, and the old database, still a primary, is fenced.
    let mut pair = settled_with_arbiter(DEFAULT);
    pair.set_partition(true);
    pair.run_until(6_000);
    assert_eq!(pair.hosts[B].promotions, 0, "{}", pair.trace_text());
    pair.hosts[A].db.refusing = true;
    pair.run_until(20_000);
    assert_eq!(pair.vip_holders(), vec![B], "{}", pair.trace_text());
    assert_eq!(pair.hosts[B].db.role, Role::Primary);
    assert_eq!(pair.hosts[A].fences, 1, "{}", pair.trace_text());
    assert!(!pair.hosts[A].db.up, "{}", pair.trace_text());
    pair.assert_safe();
}

#[test]
fn with_an_arbiter_a_database_crash_fails_over_without_waiting_for_the_lease() {
    let mut pair = settled_with_arbiter(DEFAULT);
    pair.crash_db(A);
    // As fast as without an arbiter (the same bound as that test): the crashed node releases
    // the key at once, well before its 2 s lease would run out.
    pair.run_until(5_500);
    assert_eq!(pair.vip_holders(), vec![B], "{}", pair.trace_text());
    assert_eq!(pair.hosts[B].db.role, Role::Primary);
    assert_eq!(
        pair.etcd.as_ref().and_then(|e| e.holder).map(|(h, _)| h),
        Some(B)
    );
    pair.assert_safe();
}

#[test]
fn with_an_arbiter_an_etcd_outage_alone_changes_nothing() {
    let mut pair = settled_with_arbiter(DEFAULT);
    pair.set_etcd_down(true);
    pair.run_until(30_000);
    assert_eq!(pair.vip_holders(), vec![A], "{}", pair.trace_text());
    assert_eq!(pair.hosts[A].fences, 0, "{}", pair.trace_text());
    assert_eq!(pair.hosts[B].promotions, 0);
    // ... but then a crash of the primary fails over to nobody: the standby cannot take the key.
    pair.crash_db(A);
    pair.run_until(40_000);
    assert!(pair.vip_holders().is_empty(), "{}", pair.trace_text());
    assert_eq!(
        pair.hosts[B].promotions, 0,
        "no promotion on an arbiter error"
    );
    // etcd back: the key is free (the crashed node released nothing it could reach, and its
    // lease ran out), the standby takes it and promotes.
    pair.set_etcd_down(false);
    pair.run_until(45_000);
    assert_eq!(pair.vip_holders(), vec![B], "{}", pair.trace_text());
    pair.assert_safe();
}

#[test]
fn with_an_arbiter_link_loss_moves_the_vip_only_after_the_old_lease() {
    let mut pair = settled_with_arbiter(FAST);
    pair.set_link(A, false);
    pair.run_until(15_000);
    assert_eq!(pair.vip_holders(), vec![B], "{}", pair.trace_text());
    assert!(!pair.hosts[A].vip);
    pair.assert_safe();
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// With the arbiter, two VIP holders are a violation at every step, partitions included.
    #[test]
    fn no_random_sequence_breaks_an_invariant_with_an_arbiter(
        faults in prop::collection::vec((0u64..4000, arbiter_fault()), 1..12)
    ) {
        let pair = run_sequence_with_arbiter(FAST, &faults);
        prop_assert!(pair.violations.is_empty(), "{:?}\n{}", pair.violations, pair.trace_text());
    }
}

// ---- sync modes with an arbiter: etcd's sync record before the primary commits alone --------

/// A settled pair in `mode` with an arbiter (sync_timeout 10 s): the primary requires its
/// standby, holds the key, and etcd's sync record names the standby.
fn settled_sync_with_arbiter(mode: &str) -> Pair {
    let mut pair = Pair::with_arbiter_and_replication(DEFAULT, mode, "10s");
    pair.run_until(5_000);
    assert_eq!(pair.vip_holders(), vec![A], "{}", pair.trace_text());
    assert!(pair.hosts[A].db.sync_standby, "{}", pair.trace_text());
    let etcd = pair.etcd.as_ref().expect("an arbiter");
    assert_eq!(etcd.holder.map(|(h, _)| h), Some(A));
    assert_eq!(
        etcd.record,
        Some(Some(B)),
        "the record names the standby once it is listed sync: {}",
        pair.trace_text()
    );
    pair
}

fn record(pair: &Pair) -> Option<Option<usize>> {
    pair.etcd.as_ref().and_then(|e| e.record)
}

#[test]
fn sync_arbiter_a_primary_crash_promotes_the_standby_the_record_names() {
    let mut pair = settled_sync_with_arbiter(SYNC);
    pair.crash_db(A);
    pair.run_until(8_000);
    assert_eq!(pair.vip_holders(), vec![B], "{}", pair.trace_text());
    assert_eq!(pair.lost_bytes, vec![0], "{}", pair.trace_text());
    // The new primary has no standby (the old one needs a rejoin): "none" before alone.
    assert_eq!(record(&pair), Some(None), "{}", pair.trace_text());
    pair.assert_safe();
}

#[test]
fn sync_arbiter_a_dead_standby_host_relaxes_the_primary_after_the_record_says_none() {
    let mut pair = settled_sync_with_arbiter(SYNC);
    pair.set_link(B, false);
    let took = acks_again_within(&mut pair, A, 15_000).expect("the primary commits again");
    println!("sync + arbiter: standby host lost: the primary commits again after {took} ms");
    assert!(took >= 9_000, "not before sync_timeout: {took} ms");
    assert!(
        took <= 11_000,
        "within sync_timeout + 1 s: {took} ms\n{}",
        pair.trace_text()
    );
    assert_eq!(record(&pair), Some(None));
    pair.assert_safe();
}

#[test]
fn sync_arbiter_an_etcd_outage_holds_the_relax() {
    // The standby's host is lost, and etcd goes down just before sync_timeout: the record cannot
    // say none, so the primary never commits alone (writes wait, as in sync-strict) — until its
    // lease runs out and it stops serving anyway (invariant 10: nobody confirms it).
    let mut pair = settled_sync_with_arbiter(SYNC);
    pair.set_link(B, false);
    pair.run_until(14_000);
    pair.set_etcd_down(true);
    pair.run_until(40_000);
    assert!(pair.hosts[A].db.sync_standby, "{}", pair.trace_text());
    assert_eq!(pair.acknowledged_alone(A), None);
    assert_eq!(record(&pair), Some(Some(B)));
    assert_eq!(pair.hosts[B].promotions, 0);
    pair.assert_safe();
}

#[test]
fn sync_arbiter_a_partition_longer_than_the_sync_timeout_then_the_standby_side_taking_the_key_loses_nothing(
) {
    let mut pair = settled_sync_with_arbiter(SYNC);
    // Both sides reach etcd: the primary keeps its key, writes none after sync_timeout and
    // commits alone.
    pair.set_partition(true);
    pair.run_until(20_000);
    assert_eq!(record(&pair), Some(None), "{}", pair.trace_text());
    let alone = pair.acknowledged_alone(A).expect("relaxed");
    assert!(alone > 0, "the primary committed alone");
    assert_eq!(pair.hosts[B].promotions, 0);
    // Then the primary's side loses the etcd quorum: its lease runs out, the standby side
    // takes the expired key — and reads "none".
    pair.set_etcd_cut(A, true);
    pair.run_until(40_000);
    assert_eq!(
        pair.etcd.as_ref().and_then(|e| e.holder).map(|(h, _)| h),
        Some(B),
        "{}",
        pair.trace_text()
    );
    assert_eq!(pair.hosts[B].promotions, 0, "{}", pair.trace_text());
    assert!(pair.vip_holders().is_empty(), "{}", pair.trace_text());
    assert!(pair.lost_bytes.is_empty());
    println!(
        "sync + arbiter: 20 s partition, then the primary's side loses etcd: {} bytes \
         acknowledged alone, none lost (no promotion: the record says none)",
        pair.acknowledged_alone(A).unwrap_or(0)
    );
    // The operator may still choose availability.
    assert_eq!(pair.promote_accepting_loss(B), Some(Ok(())));
    pair.run_until(42_000);
    assert_eq!(pair.vip_holders(), vec![B], "{}", pair.trace_text());
    pair.assert_safe();
}

/// The checker sees a breach of each new rule (a checker that cannot fail proves nothing): an
/// etcd that acknowledges writes it does not store and names every reader lets the daemon relax
/// while the record still names the standby, and promote a standby it does not name.
#[test]
fn the_checker_sees_a_relax_before_the_record_and_a_promotion_it_does_not_name() {
    let mut pair = settled_sync_with_arbiter(SYNC);
    pair.etcd.as_mut().unwrap().lies = true;
    pair.set_link(B, false);
    pair.run_until(20_000);
    let rules: Vec<_> = pair.violations.iter().map(|v| v.rule).collect();
    assert!(
        rules.contains(
            &"with an arbiter, a primary commits alone only after etcd's record says none"
        ),
        "{rules:?}\n{}",
        pair.trace_text()
    );

    let mut pair = settled_sync_with_arbiter(SYNC);
    pair.etcd.as_mut().unwrap().record = Some(None);
    pair.etcd.as_mut().unwrap().lies = true;
    pair.crash_db(A);
    pair.run_until(8_000);
    let rules: Vec<_> = pair.violations.iter().map(|v| v.rule).collect();
    assert!(
        rules.contains(
            &"with an arbiter, a standby the sync record does not name is never promoted"
        ),
        "{rules:?}\n{}",
        pair.trace_text()
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Sync with an arbiter: never a relax before the record says none, never a promotion of a
    /// standby the record does not name, nothing acknowledged lost.
    #[test]
    fn no_random_sequence_breaks_an_invariant_sync_with_an_arbiter(
        faults in prop::collection::vec((0u64..4000, arbiter_fault()), 1..12)
    ) {
        let pair = run_faults(settled_sync_with_arbiter(SYNC), &faults);
        prop_assert!(pair.violations.is_empty(), "{:?}\n{}", pair.violations, pair.trace_text());
    }
}

/// Found by the arbiter's property test once the backup probed the peer after each advert: the
/// takeover came sooner, while the local probe asked at the mastership was still out; its answer
/// ("in recovery", from before the proof) made the new primary drop the VIP and promote again,
/// against a sync record that by then said none.
#[test]
fn a_local_answer_from_before_the_proof_does_not_promote_twice() {
    let faults = [(1619, Fault::Partition(false)), (3931, Fault::CrashDb(0))];
    let pair = run_faults(settled_sync_with_arbiter(SYNC), &faults);
    assert_eq!(pair.hosts[B].promotions, 1, "{}", pair.trace_text());
    assert_eq!(pair.vip_holders(), vec![B], "{}", pair.trace_text());
    pair.assert_safe();
}
