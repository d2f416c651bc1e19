//! Lab tests of the database shells (`db::startup_probe`, `db::query`, `db::postmaster`) against
//! real PostgreSQL 15 servers running as `postgres` inside lab host namespaces.
//!
//! Probes and queries run on a thread that has joined a host's namespace, so TCP goes over the
//! lab bridge. PostgreSQL has no SQLSTATE 57M02 (WarehousePG's "mirror ready"); that path is
//! covered by unit tests on crafted bytes. Each test needs root, `ip`, `nft` and the
//! `postgresql-15` binaries; without them it prints SKIPPED, and fails under CI=true.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::block_on_in_netns;
use whpg_ha::config::{DbEndpoint, Flavor};
use whpg_ha::db::query::{TimelineSource, WalReceiverStatus};
use whpg_ha::db::session::HeldSession;
use whpg_ha::db::{
    observe, probe, ConnParams, DbFacts, PostmasterWatch, ProbeOutcome, ProbeTarget, QueryError,
    SqlState, WriteProbe,
};
use whpg_lab::{lab_or_skip, Host, PgNode};

const PREREQS: &[&str] = &[
    "nft",
    "runuser",
    "user:postgres",
    "initdb",
    "pg_ctl",
    "pg_basebackup",
    "psql",
];
const N1: &str = "10.77.0.11/24";
const N2: &str = "10.77.0.12/24";
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on any single async step run in a namespace.
const STEP_LIMIT: Duration = Duration::from_secs(15);
const WAIT: Duration = Duration::from_secs(20);

fn tcp_target(node: &PgNode) -> ProbeTarget {
    let addr: IpAddr = node.address().parse().unwrap();
    ProbeTarget::tcp(addr, node.port())
}

fn unix_target(node: &PgNode) -> ProbeTarget {
    ProbeTarget::unix(node.socket_dir(), node.port())
}

fn unix_params(node: &PgNode) -> ConnParams {
    ConnParams::new(
        DbEndpoint::SocketDir(node.socket_dir().to_path_buf()),
        node.port(),
        "postgres",
        "postgres",
    )
}

fn tcp_params(node: &PgNode) -> ConnParams {
    ConnParams::new(
        DbEndpoint::Host(node.address().to_string()),
        node.port(),
        "postgres",
        "postgres",
    )
}

/// Probes `target` from inside `from`'s namespace; returns the outcome and how long it took.
fn probe_from(from: &Host, target: &ProbeTarget, timeout: Duration) -> (ProbeOutcome, Duration) {
    block_on_in_netns(from.netns(), STEP_LIMIT, || async move {
        let start = Instant::now();
        let outcome = probe(target, timeout).await;
        (outcome, start.elapsed())
    })
}

fn observe_from(from: &Host, params: &ConnParams) -> Result<DbFacts, QueryError> {
    block_on_in_netns(from.netns(), STEP_LIMIT, || async move {
        observe(params, QUERY_TIMEOUT).await
    })
}

/// One write check on a connection of its own; the timeline it wrote on.
fn write_check_from(
    from: &Host,
    params: &ConnParams,
    flavor: Flavor,
) -> Result<Option<u32>, QueryError> {
    block_on_in_netns(from.netns(), STEP_LIMIT, || async move {
        WriteProbe::new(params.clone(), flavor, QUERY_TIMEOUT)
            .attempt()
            .await
    })
}

/// n1 with a primary on port 54321 and n2 with its streaming standby on 54322, both started.
fn primary_and_standby(lab: &whpg_lab::Lab) -> (Host, Host, PgNode, PgNode) {
    let n1 = lab.add_host("n1", N1).unwrap();
    let n2 = lab.add_host("n2", N2).unwrap();
    let primary = PgNode::init_primary(lab, &n1, 54321).unwrap();
    primary.start().unwrap();
    let standby = PgNode::init_standby_from(lab, &n2, &primary, 54322).unwrap();
    standby.start().unwrap();
    (n1, n2, primary, standby)
}

#[test]
fn primary_accepts_then_times_out_and_refuses() {
    let lab = lab_or_skip!(&whpg_lab::prereq::current_test_name(), PREREQS);
    let n1 = lab.add_host("n1", N1).unwrap();
    let n2 = lab.add_host("n2", N2).unwrap();
    let primary = PgNode::init_primary(&lab, &n1, 54321).unwrap();
    primary.start().unwrap();

    let (outcome, took) = probe_from(&n2, &tcp_target(&primary), PROBE_TIMEOUT);
    println!("primary over TCP from n2: {outcome} in {took:?}");
    assert_eq!(outcome, ProbeOutcome::Accepting);
    let (outcome, _) = probe_from(&n1, &unix_target(&primary), PROBE_TIMEOUT);
    assert_eq!(outcome, ProbeOutcome::Accepting);
    // The server answers, but this login cannot succeed: alive, with the reason.
    let no_db = tcp_target(&primary).with_login("postgres", "no_such_db");
    let (outcome, _) = probe_from(&n2, &no_db, PROBE_TIMEOUT);
    assert_eq!(
        outcome,
        ProbeOutcome::Rejected {
            sqlstate: SqlState::parse("3D000").unwrap()
        }
    );

    let facts = observe_from(&n1, &unix_params(&primary)).unwrap();
    println!("primary: {facts:?}");
    assert!(!facts.in_recovery);
    assert_eq!(
        (facts.timeline, facts.timeline_source),
        (1, TimelineSource::Insert)
    );
    assert!(facts.current_lsn.is_some());
    assert_eq!(facts.wal_receiver, None);
    assert!(facts.replication.is_empty());
    for flavor in [Flavor::Postgres, Flavor::WarehousePg] {
        let timeline = write_check_from(&n2, &tcp_params(&primary), flavor)
            .unwrap_or_else(|e| panic!("write check ({flavor:?}) on the primary: {e}"));
        assert_eq!(timeline, Some(1), "{flavor:?}");
    }

    // Black hole: n1 drops everything from and to n2. The probe gives up at its deadline.
    lab.block_traffic_from(&n1, n2.address()).unwrap();
    let (outcome, took) = probe_from(&n2, &tcp_target(&primary), PROBE_TIMEOUT);
    println!("black-holed primary: {outcome} after {took:?} (timeout {PROBE_TIMEOUT:?})");
    assert_eq!(outcome, ProbeOutcome::TimedOut);
    assert!(took >= PROBE_TIMEOUT && took < PROBE_TIMEOUT + Duration::from_millis(200));
    let started = Instant::now();
    let err = observe_from(&n2, &tcp_params(&primary)).unwrap_err();
    assert!(matches!(err, QueryError::TimedOut { .. }), "{err}");
    assert!(started.elapsed() < QUERY_TIMEOUT + Duration::from_secs(1));
    lab.unblock_traffic_from(&n1, n2.address()).unwrap();
    let (outcome, _) = probe_from(&n2, &tcp_target(&primary), PROBE_TIMEOUT);
    assert_eq!(outcome, ProbeOutcome::Accepting);

    primary.stop_fast().unwrap();
    let (outcome, took) = probe_from(&n2, &tcp_target(&primary), PROBE_TIMEOUT);
    println!("stopped primary over TCP: {outcome} in {took:?}");
    assert_eq!(outcome, ProbeOutcome::Refused);
    let (outcome, _) = probe_from(&n1, &unix_target(&primary), PROBE_TIMEOUT);
    assert_eq!(outcome, ProbeOutcome::Refused);
    let err = observe_from(&n1, &unix_params(&primary)).unwrap_err();
    assert!(matches!(err, QueryError::Connect { .. }), "{err}");
}

#[test]
fn standby_accepts_rejects_writes_then_promotes() {
    let lab = lab_or_skip!(&whpg_lab::prereq::current_test_name(), PREREQS);
    let (n1, n2, primary, standby) = primary_and_standby(&lab);
    primary
        .wait_for_sql(
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
            "1",
            WAIT,
        )
        .unwrap();
    // Fresh WAL to the standby, so its receiver has just heard from the primary.
    primary
        .psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
        .unwrap();
    standby
        .wait_for_sql("SELECT count(*) FROM t", "1", WAIT)
        .unwrap();

    let (outcome, _) = probe_from(&n1, &tcp_target(&standby), PROBE_TIMEOUT);
    assert_eq!(
        outcome,
        ProbeOutcome::Accepting,
        "hot standby accepts logins"
    );
    let facts = observe_from(&n2, &unix_params(&standby)).unwrap();
    println!("standby: {facts:?}");
    assert!(facts.in_recovery);
    assert_eq!(
        (facts.timeline, facts.timeline_source),
        (1, TimelineSource::WalReceiver)
    );
    assert_eq!(facts.current_lsn, None);
    assert!(facts.receive_lsn.is_some() && facts.replay_lsn.is_some());
    let receiver = facts.wal_receiver.expect("a WAL receiver");
    assert_eq!(receiver.status, Some(WalReceiverStatus::Streaming));
    assert_eq!(receiver.sender_host.as_deref(), Some(primary.address()));
    assert_eq!(receiver.sender_port, Some(primary.port()));
    let age = receiver.last_msg_age.expect("a last message time");
    println!("standby WAL receiver: last message {age:?} ago");
    assert!(age < Duration::from_secs(3), "last message {age:?} ago");

    let facts = observe_from(&n2, &tcp_params(&primary)).unwrap();
    println!("primary: {facts:?}");
    assert!(!facts.in_recovery);
    let [peer] = facts.replication.as_slice() else {
        panic!("one replication peer expected: {:?}", facts.replication)
    };
    assert_eq!(peer.application_name, "n2");
    assert_eq!(peer.client_addr, Some(n2.address().parse().unwrap()));
    assert_eq!(peer.state.as_deref(), Some("streaming"));
    assert_eq!(peer.sync_state.as_deref(), Some("async"));
    assert!(peer.sent_lsn.is_some() && peer.flush_lsn.is_some() && peer.replay_lsn.is_some());

    for flavor in [Flavor::Postgres, Flavor::WarehousePg] {
        let err = write_check_from(&n2, &unix_params(&standby), flavor).unwrap_err();
        println!("write check ({flavor:?}) on the standby: {err}");
        assert!(matches!(err, QueryError::InRecovery { .. }), "{err}");
    }

    // Without hot standby the standby turns logins away with 57P03.
    standby.stop_fast().unwrap();
    standby.set("hot_standby", "off").unwrap();
    standby.start().unwrap();
    let (outcome, _) = probe_from(&n1, &tcp_target(&standby), PROBE_TIMEOUT);
    println!("standby with hot_standby = off: {outcome}");
    assert_eq!(outcome, ProbeOutcome::NotAccepting);
    let (outcome, _) = probe_from(&n2, &unix_target(&standby), PROBE_TIMEOUT);
    assert_eq!(outcome, ProbeOutcome::NotAccepting);
    let err = observe_from(&n2, &unix_params(&standby)).unwrap_err();
    assert_eq!(err.sqlstate(), Some(SqlState::CANNOT_CONNECT_NOW), "{err}");

    standby.promote().unwrap();
    let (outcome, _) = probe_from(&n1, &tcp_target(&standby), PROBE_TIMEOUT);
    assert_eq!(outcome, ProbeOutcome::Accepting);
    let facts = observe_from(&n2, &unix_params(&standby)).unwrap();
    let checkpoint_tli = standby
        .psql("SELECT timeline_id FROM pg_control_checkpoint()")
        .unwrap();
    println!(
        "promoted: timeline {} ({:?}); pg_control_checkpoint() says {checkpoint_tli}",
        facts.timeline, facts.timeline_source
    );
    assert!(!facts.in_recovery);
    assert_eq!(
        (facts.timeline, facts.timeline_source),
        (2, TimelineSource::Insert)
    );
    for flavor in [Flavor::Postgres, Flavor::WarehousePg] {
        let timeline = write_check_from(&n1, &tcp_params(&standby), flavor)
            .unwrap_or_else(|e| panic!("write check ({flavor:?}) after promotion: {e}"));
        assert_eq!(timeline, Some(2), "{flavor:?}");
    }
    // The old primary never learnt of it: still writable, on the older timeline.
    let old = observe_from(&n1, &unix_params(&primary)).unwrap();
    assert_eq!((old.in_recovery, old.timeline), (false, 1));
}

/// The promotion's proof keeps its connection while the standby refuses writes, and the same
/// connection proves the promotion once it is done: no backend per attempt.
#[test]
fn write_probe_keeps_its_standby_session_through_promotion() {
    let lab = lab_or_skip!(&whpg_lab::prereq::current_test_name(), PREREQS);
    let (_n1, n2, _primary, standby) = primary_and_standby(&lab);
    let params = unix_params(&standby);
    let backends = "SELECT string_agg(pid::text, ',') FROM pg_stat_activity \
                    WHERE application_name = 'whpg-ha'";
    let (before, after, timeline) = block_on_in_netns(n2.netns(), STEP_LIMIT, || async {
        let mut probe = WriteProbe::new(params.clone(), Flavor::Postgres, QUERY_TIMEOUT);
        for _ in 0..5 {
            let err = probe.attempt().await.unwrap_err();
            assert!(matches!(err, QueryError::InRecovery { .. }), "{err}");
        }
        let before = standby.psql(backends).unwrap();
        standby.promote().unwrap();
        let timeline = probe.attempt().await.expect("a write after the promotion");
        let after = standby.psql(backends).unwrap();
        (before, after, timeline)
    });
    println!("probe backends: {before:?} on the standby, {after:?} after the promotion");
    assert!(
        !before.is_empty() && !before.contains(','),
        "one backend for five attempts: {before:?}"
    );
    assert_eq!(before, after, "the same backend proved the promotion");
    assert_eq!(timeline, Some(2));
    // Asking for the recovery state first kept the attempts out of the server's log.
    let log = standby.log_contents();
    assert!(
        !log.contains("cannot execute"),
        "a write was tried during recovery:\n{log}"
    );
}

/// The default postgres promotion goes through SQL on the standby's monitoring session: a login
/// without the right to run `pg_promote` gets the server's refusal and keeps its session (the
/// daemon then runs the command), a superuser's session promotes, and the write probe, logged
/// in beside it, proves the write.
#[test]
fn sql_promotion_refused_without_the_right() {
    let lab = lab_or_skip!(&whpg_lab::prereq::current_test_name(), PREREQS);
    let (_n1, n2, primary, standby) = primary_and_standby(&lab);
    primary.psql("CREATE ROLE monitor LOGIN").unwrap();
    let replayed = (0..100).any(|_| {
        let seen = standby
            .psql("SELECT count(*) FROM pg_roles WHERE rolname = 'monitor'")
            .unwrap();
        seen.trim() == "1" || {
            std::thread::sleep(Duration::from_millis(50));
            false
        }
    });
    assert!(replayed, "the role never reached the standby");
    let mut unprivileged = unix_params(&standby);
    unprivileged.user = "monitor".into();
    let params = unix_params(&standby);
    let (refused, probe_refused, still_observed, attempts, timeline) =
        block_on_in_netns(n2.netns(), STEP_LIMIT, || async {
            let mut denied = HeldSession::open(&unprivileged, QUERY_TIMEOUT)
                .await
                .unwrap();
            let refused = denied.signal_promotion(QUERY_TIMEOUT).await.unwrap_err();
            let still_observed = denied.observe(QUERY_TIMEOUT).await.map(|f| f.in_recovery);
            let mut denied_probe = WriteProbe::new(unprivileged, Flavor::Postgres, QUERY_TIMEOUT);
            let probe_refused = denied_probe.signal_promotion().await.unwrap_err();
            let mut session = HeldSession::open(&params, QUERY_TIMEOUT).await.unwrap();
            let mut probe = WriteProbe::new(params.clone(), Flavor::Postgres, QUERY_TIMEOUT);
            probe.connect().await.unwrap();
            session
                .signal_promotion(QUERY_TIMEOUT)
                .await
                .expect("pg_promote as superuser");
            let mut attempts = 0;
            let timeline = loop {
                attempts += 1;
                match probe.attempt().await {
                    Ok(timeline) => break timeline,
                    Err(QueryError::InRecovery { .. }) if attempts < 2500 => {
                        tokio::time::sleep(Duration::from_millis(2)).await
                    }
                    Err(e) => panic!("no write after pg_promote: {e}"),
                }
            };
            (refused, probe_refused, still_observed, attempts, timeline)
        });
    println!("unprivileged pg_promote: {refused}; writable after {attempts} attempts of 2 ms");
    for e in [&refused, &probe_refused] {
        assert_eq!(
            e.sqlstate(),
            SqlState::parse("42501"),
            "insufficient privilege: {e}"
        );
    }
    assert!(
        matches!(still_observed, Ok(true)),
        "the refused session still observes a standby: {still_observed:?}"
    );
    assert!(
        attempts > 1,
        "writable before the promotion ran: {attempts} attempt(s)"
    );
    assert_eq!(timeline, Some(2));
    assert_eq!(
        standby.psql("SELECT pg_is_in_recovery()").unwrap().trim(),
        "f"
    );
}

#[test]
fn postmaster_watch_fires_on_kill9() {
    let lab = lab_or_skip!(&whpg_lab::prereq::current_test_name(), PREREQS);
    let n1 = lab.add_host("n1", N1).unwrap();
    let primary = PgNode::init_primary(&lab, &n1, 54321).unwrap();
    primary.start().unwrap();
    let pid = primary.postmaster_pid().unwrap();

    let (latency, killed) = block_on_in_netns(n1.netns(), STEP_LIMIT, || async {
        let watch = PostmasterWatch::open(primary.data_dir()).unwrap();
        assert_eq!(watch.pid(), pid);
        assert!(!watch.has_exited());
        let early = tokio::time::timeout(Duration::from_millis(100), watch.exited()).await;
        assert!(early.is_err(), "exited() resolved for a running postmaster");
        let start = Instant::now();
        let killed = primary.kill9().unwrap();
        tokio::time::timeout(Duration::from_secs(5), watch.exited())
            .await
            .expect("the pidfd reports the death");
        (start.elapsed(), killed)
    });
    println!("postmaster {killed} killed with SIGKILL; pidfd fired after {latency:?}");
    assert_eq!(killed, pid);
    assert!(latency < Duration::from_millis(100), "{latency:?}");

    // postmaster.pid outlives a crash: the stale pid is refused, the restarted server watched.
    let stale = block_on_in_netns(n1.netns(), STEP_LIMIT, || async {
        PostmasterWatch::open(primary.data_dir()).map(|w| w.pid())
    });
    assert!(stale.is_err(), "watching a dead postmaster: {stale:?}");
    println!("stale postmaster.pid: {}", stale.unwrap_err());
    primary.start().unwrap();
    let restarted = block_on_in_netns(n1.netns(), STEP_LIMIT, || async {
        PostmasterWatch::open(primary.data_dir()).map(|w| w.pid())
    })
    .unwrap();
    assert_ne!(restarted, pid);
    assert_eq!(restarted, primary.postmaster_pid().unwrap());
}

/// PostgreSQL 15 takes a promote request that comes just after its WAL receiver lost the
/// primary, then sleeps `wal_retrieve_retry_interval` (5 s) before acting on it: 5 of 6 runs of
/// this sequence by hand. The daemon signals again while the server is still in recovery 100 ms
/// later (`daemon/jobs.rs`, `RESIGNAL_AFTER`), as this test does: the second request wakes it.
#[test]
fn second_promote_request_wakes_the_server() {
    let lab = lab_or_skip!(&whpg_lab::prereq::current_test_name(), PREREQS);
    let (_n1, n2, primary, standby) = primary_and_standby(&lab);
    let params = unix_params(&standby);
    let (receiver_lost_after, slept, writable_after) =
        block_on_in_netns(n2.netns(), STEP_LIMIT, || async {
            let mut session = HeldSession::open(&params, QUERY_TIMEOUT).await.unwrap();
            let mut probe = WriteProbe::new(params.clone(), Flavor::Postgres, QUERY_TIMEOUT);
            probe.connect().await.unwrap();
            let killed = Instant::now();
            primary.kill9().unwrap();
            // As a fast failover does: promote as soon as the WAL receiver has lost the primary.
            loop {
                let facts = session.observe(QUERY_TIMEOUT).await.unwrap();
                let streaming = facts
                    .wal_receiver
                    .as_ref()
                    .is_some_and(|w| w.status == Some(WalReceiverStatus::Streaming));
                if !streaming {
                    break;
                }
                assert!(
                    killed.elapsed() < Duration::from_secs(5),
                    "the receiver streams on"
                );
            }
            let receiver_lost_after = killed.elapsed();
            session.signal_promotion(QUERY_TIMEOUT).await.unwrap();
            let signalled = Instant::now();
            let mut slept = false;
            loop {
                match probe.attempt().await {
                    Ok(_) => break,
                    Err(QueryError::InRecovery { .. }) => {}
                    Err(e) => panic!("while waiting for the promotion: {e}"),
                }
                if !slept && signalled.elapsed() >= Duration::from_millis(100) {
                    slept = true;
                    probe.signal_promotion().await.expect("the second request");
                }
                assert!(
                    signalled.elapsed() < Duration::from_secs(2),
                    "still in recovery 2 s after the promote request (slept on it: {slept})"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (receiver_lost_after, slept, signalled.elapsed())
        });
    println!(
        "WAL receiver lost the primary {receiver_lost_after:?} after the kill; writable \
         {writable_after:?} after the request; {}",
        if slept {
            "the server slept on the first request, the second one woke it"
        } else {
            "the first request was enough this time"
        }
    );
}
