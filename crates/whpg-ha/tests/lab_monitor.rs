//! Lab tests of the database monitor (`daemon::observers::Monitor`) with its held session against
//! real PostgreSQL 15 servers: steady state opens almost no new connections and keeps the WAL
//! receiver facts; a smart shutdown (`pg_ctl stop -m smart`, gpstop's default) is not held up by
//! the session, locally (postmaster.pid says "stopping") nor from the peer (a fresh probe answers
//! 57P03); a crash breaks the session at once. Needs root and the `postgresql-15` binaries;
//! without them it prints SKIPPED, and fails under CI=true.

mod common;

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use whpg_ha::config::{DbEndpoint, Health};
use whpg_ha::daemon::observers::{local_sample, peer_sample, Monitor, Seen};
use whpg_ha::db::query::StandbyIdentity;
use whpg_ha::db::{ConnParams, HeldSession, ProbeTarget};
use whpg_lab::postgres::{PG_BIN_DIR, PG_OS_USER};
use whpg_lab::{lab_or_skip, Host, PgNode};
use whpg_policy::{LocalSample, PeerSample, PrimaryPosition, StandbyRow};

const PREREQS: &[&str] = &[
    "runuser",
    "user:postgres",
    "initdb",
    "pg_ctl",
    "pg_basebackup",
    "psql",
];
const N1: &str = "10.77.0.11/24";
const N2: &str = "10.77.0.12/24";
/// Bound on opening a session in a namespace.
const STEP_LIMIT: Duration = Duration::from_secs(20);

fn health() -> Health {
    Health {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(500),
        fall: 3,
        rise: 2,
        held_session: true,
        connect_interval: Duration::from_secs(1),
    }
}

fn tcp(node: &PgNode) -> (ProbeTarget, ConnParams) {
    let addr: IpAddr = node.address().parse().unwrap();
    (
        ProbeTarget::tcp(addr, node.port()),
        ConnParams::new(
            DbEndpoint::Host(node.address().to_string()),
            node.port(),
            "postgres",
            "postgres",
        ),
    )
}

/// The local monitor of `node` (TCP to its own address, and its data directory).
fn local_monitor(node: &PgNode) -> Monitor {
    let (target, params) = tcp(node);
    Monitor::new(
        target,
        params,
        &health(),
        Some(node.data_dir().to_path_buf()),
    )
}

/// A monitor of `node` as the peer sees it: no data directory to read.
fn peer_monitor(node: &PgNode) -> Monitor {
    let (target, params) = tcp(node);
    Monitor::new(target, params, &health(), None)
}

/// One round's result, kept for assertions.
#[derive(Debug, Clone)]
struct Round {
    at: Instant,
    local: LocalSample,
    peer: PeerSample,
    held: bool,
}

/// A monitor running in `host`'s namespace every 100 ms (and at once when its session ends)
/// until stopped; records every round.
struct Running {
    stop: Arc<AtomicBool>,
    rounds: Arc<Mutex<Vec<Round>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(host: &Host, mut monitor: Monitor) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(Mutex::new(Vec::new()));
        let (stop2, rounds2) = (Arc::clone(&stop), Arc::clone(&rounds));
        let thread = whpg_lab::netns::spawn_in(host.netns(), move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let mut ticker = tokio::time::interval(Duration::from_millis(100));
                while !stop2.load(Ordering::Relaxed) {
                    tokio::select! {
                        _ = ticker.tick() => {}
                        () = monitor.session_ended() => {}
                    }
                    let seen: Seen = monitor.round().await;
                    rounds2.lock().unwrap().push(Round {
                        at: Instant::now(),
                        local: local_sample(&seen),
                        peer: peer_sample(&seen),
                        held: monitor.holds_session(),
                    });
                }
            });
        });
        Running {
            stop,
            rounds,
            thread: Some(thread),
        }
    }

    fn rounds(&self) -> Vec<Round> {
        self.rounds.lock().unwrap().clone()
    }

    fn wait_holding(&self) {
        whpg_lab::wait_until(
            Duration::from_secs(10),
            Duration::from_millis(50),
            "the monitor to hold its session",
            || self.rounds().last().is_some_and(|r| r.held),
        )
        .unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `pg_ctl stop -m smart -w -t <secs>`: whether it stopped, and how long it took.
fn smart_stop(node: &PgNode, secs: u32) -> (bool, Duration) {
    let pg_ctl = format!("{PG_BIN_DIR}/pg_ctl");
    let data = node.data_dir().to_string_lossy().into_owned();
    let wait = secs.to_string();
    let argv = [
        pg_ctl.as_str(),
        "-D",
        &data,
        "-m",
        "smart",
        "-w",
        "-t",
        &wait,
        "stop",
    ];
    let started = Instant::now();
    let out = node
        .host()
        .exec_as_timeout(PG_OS_USER, &argv, Duration::from_secs(u64::from(secs) + 10))
        .expect("running pg_ctl stop");
    (out.success(), started.elapsed())
}

/// A session opened and simply kept, on its own runtime in `host`, until dropped.
struct PlainSession {
    release: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PlainSession {
    fn open(host: &Host, node: &PgNode) -> PlainSession {
        let (_, params) = tcp(node);
        let (opened_tx, opened_rx) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let thread = whpg_lab::netns::spawn_in(host.netns(), move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let session = HeldSession::open(&params, Duration::from_secs(2)).await;
                let _ = opened_tx.send(session.as_ref().map(|_| ()).map_err(|e| e.to_string()));
                if session.is_ok() {
                    // Keep the runtime (and so the connection) alive until released.
                    let _keep = session;
                    while released.try_recv() == Err(std::sync::mpsc::TryRecvError::Empty) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            });
        });
        opened_rx
            .recv_timeout(STEP_LIMIT)
            .expect("the plain session thread answers")
            .expect("open a plain session");
        PlainSession {
            release: Some(release),
            thread: Some(thread),
        }
    }
}

impl Drop for PlainSession {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn sessions(node: &PgNode) -> u64 {
    node.psql("SELECT sum(sessions) FROM pg_stat_database")
        .unwrap()
        .parse()
        .unwrap()
}

fn postmaster_gone(data_dir: &Path) -> bool {
    !data_dir.join("postmaster.pid").exists()
}

#[test]
fn held_session_monitor_is_cheap_and_never_holds_up_a_smart_shutdown() {
    let lab = lab_or_skip!(&whpg_lab::prereq::current_test_name(), PREREQS);
    let n1 = lab.add_host("n1", N1).unwrap();
    let n2 = lab.add_host("n2", N2).unwrap();
    let (primary, standby) = common::pg::pg_pair(&lab, &n1, &n2);

    // The standby's monitor keeps the WAL receiver facts of the held session.
    {
        let running = Running::start(&n2, local_monitor(&standby));
        running.wait_holding();
        std::thread::sleep(Duration::from_millis(300));
        let last = running.rounds().last().cloned().unwrap();
        println!("standby: {last:?}");
        match last.local {
            LocalSample::Standby {
                timeline: Some(1),
                wal_receiver: Some(w),
                received,
            } => {
                assert!(w.streaming, "{w:?}");
                assert!(received.is_some_and(|lsn| lsn > 0), "{received:?}");
            }
            other => panic!("standby seen as {other:?}"),
        }
    }

    // The standby's view of the primary, in one snapshot: its WAL position and the walsender
    // row it lists for the standby (matched by the standby's address), streaming and caught up.
    {
        let identity = StandbyIdentity {
            address: standby.address().to_string(),
            application_name: None,
        };
        let running = Running::start(&n2, peer_monitor(&primary).with_standby(identity));
        running.wait_holding();
        std::thread::sleep(Duration::from_millis(300));
        let last = running.rounds().last().cloned().unwrap();
        println!("primary, as the standby sees it: {last:?}");
        match last.peer {
            PeerSample::Primary {
                timeline: Some(1),
                position:
                    Some(PrimaryPosition {
                        current,
                        standby:
                            Some(StandbyRow {
                                streaming: true,
                                synchronous: false,
                                flush: Some(flush),
                            }),
                    }),
            } => assert!(flush <= current && current - flush < 1 << 20, "{last:?}"),
            other => panic!("primary seen as {other:?}"),
        }
        // Under another identity the primary lists no walsender: the row is ours, not any.
        let stranger = StandbyIdentity {
            address: "10.77.0.99".into(),
            application_name: None,
        };
        let running = Running::start(&n2, peer_monitor(&primary).with_standby(stranger));
        running.wait_holding();
        std::thread::sleep(Duration::from_millis(300));
        let last = running.rounds().last().cloned().unwrap();
        assert!(
            matches!(
                last.peer,
                PeerSample::Primary {
                    position: Some(PrimaryPosition { standby: None, .. }),
                    ..
                }
            ),
            "{last:?}"
        );
    }

    // The peer's view of the standby: the role row says "in recovery".
    {
        let running = Running::start(&n1, peer_monitor(&standby));
        running.wait_holding();
        std::thread::sleep(Duration::from_millis(300));
        let last = running.rounds().last().cloned().unwrap();
        assert_eq!(last.peer, PeerSample::Standby, "{last:?}");
    }

    // Steady state on the primary: one session held, a fresh probe a second.
    let running = Running::start(&n1, local_monitor(&primary));
    running.wait_holding();
    let before = sessions(&primary);
    let window = Duration::from_secs(4);
    let start_rounds = running.rounds().len();
    std::thread::sleep(window);
    let rounds = running.rounds().len() - start_rounds;
    // Stats of other backends reach shared memory within a second.
    std::thread::sleep(Duration::from_millis(1200));
    let opened = sessions(&primary) - before;
    println!(
        "steady state: {rounds} rounds in {window:?}, {opened} new sessions (including 1 psql)"
    );
    assert!(rounds >= 30, "only {rounds} rounds");
    assert!(
        running.rounds().iter().skip(start_rounds).all(|r| matches!(
            r.local,
            LocalSample::Primary {
                timeline: Some(1),
                ..
            }
        ) && r.held),
        "{:?}",
        running.rounds()
    );
    // A new connection per round would be 2 × rounds; the fresh probes are one a second.
    assert!(opened <= 8, "{opened} new sessions in {window:?}");

    // The trap: a session that is simply kept holds a smart shutdown up.
    {
        let session = PlainSession::open(&n2, &primary);
        // The monitor lets go of its own at once; only the plain session remains.
        let (stopped, took) = smart_stop(&primary, 2);
        println!("smart stop with a plain held session: stopped {stopped} after {took:?}");
        assert!(
            !stopped,
            "a plain held session should have held the smart stop up"
        );
        let rounds = running.rounds();
        let last = rounds.last().unwrap();
        assert_eq!(last.local, LocalSample::NotAccepting, "{last:?}");
        assert!(!last.held, "the local monitor still holds its session");
        drop(session);
        whpg_lab::wait_until(
            Duration::from_secs(10),
            Duration::from_millis(50),
            "the server to finish its smart shutdown",
            || postmaster_gone(primary.data_dir()),
        )
        .unwrap();
    }
    drop(running);

    // The local monitor alone: let go at once.
    primary.start().unwrap();
    let running = Running::start(&n1, local_monitor(&primary));
    running.wait_holding();
    let (stopped, took) = smart_stop(&primary, 5);
    println!("smart stop beside the local monitor: stopped {stopped} after {took:?}");
    assert!(stopped, "the local monitor held the smart stop up");
    drop(running);

    // The peer's monitor: lets go at its next fresh probe (57P03), within connect_interval.
    primary.start().unwrap();
    let running = Running::start(&n2, peer_monitor(&primary));
    running.wait_holding();
    let last = running.rounds().last().cloned().unwrap();
    assert!(
        matches!(
            last.peer,
            PeerSample::Primary {
                timeline: Some(1),
                position: Some(_)
            }
        ),
        "{last:?}"
    );
    let (stopped, took) = smart_stop(&primary, 5);
    println!("smart stop beside the peer's monitor: stopped {stopped} after {took:?}");
    assert!(stopped, "the peer's monitor held the smart stop up");
    let rounds = running.rounds();
    assert_eq!(rounds.last().unwrap().peer, PeerSample::DatabaseDown);
    drop(running);

    // A crash: the held session ends with the postmaster, and the next rounds say so.
    primary.start().unwrap();
    let running = Running::start(&n2, peer_monitor(&primary));
    running.wait_holding();
    let killed_at = Instant::now();
    primary.kill9().unwrap();
    whpg_lab::wait_until(
        Duration::from_secs(5),
        Duration::from_millis(10),
        "the peer's monitor to see the crash",
        || {
            running
                .rounds()
                .iter()
                .any(|r| r.at > killed_at && r.peer == PeerSample::DatabaseDown)
        },
    )
    .unwrap();
    let rounds = running.rounds();
    let first_down = rounds
        .iter()
        .find(|r| r.at > killed_at && r.peer == PeerSample::DatabaseDown)
        .unwrap();
    let primary_after: Vec<_> = rounds
        .iter()
        .filter(|r| r.at > killed_at && matches!(r.peer, PeerSample::Primary { .. }))
        .collect();
    println!(
        "crash: first DatabaseDown {:?} after the kill; {} primary answer(s) after it",
        first_down.at - killed_at,
        primary_after.len()
    );
    // A backend without its postmaster must not go on answering for more than a round.
    assert!(primary_after.len() <= 1, "{primary_after:?}");
    drop(running);
}

/// The last statement of the monitor's backend on `node` (`pg_stat_activity.query`).
fn monitor_query(node: &PgNode) -> String {
    node.psql(&format!(
        "SELECT coalesce(string_agg(query, ' | '), '') FROM pg_stat_activity \
         WHERE application_name = '{}' AND pid <> pg_backend_pid()",
        whpg_ha::db::startup_probe::APPLICATION_NAME
    ))
    .unwrap()
}

fn walsender_pid(node: &PgNode) -> String {
    node.psql("SELECT coalesce(string_agg(pid::text, ','), '') FROM pg_stat_replication")
        .unwrap()
}

/// The streaming walsender row the primary's answer carries, if any.
fn streaming_row(round: &Round) -> Option<(u64, u64)> {
    match round.peer {
        PeerSample::Primary {
            position:
                Some(PrimaryPosition {
                    current,
                    standby:
                        Some(StandbyRow {
                            streaming: true,
                            flush: Some(flush),
                            ..
                        }),
                }),
            ..
        } => Some((current, flush)),
        _ => None,
    }
}

/// Once found by the standby's address, the walsender row is read by its pid (the cheap
/// statement, without every backend's status); when the standby reconnects under a new pid, the
/// next round finds the new walsender by the address again and goes on reading it by pid.
#[test]
fn the_walsender_row_is_read_by_pid_and_follows_a_reconnect() {
    let lab = lab_or_skip!(&whpg_lab::prereq::current_test_name(), PREREQS);
    let n1 = lab.add_host("n1", N1).unwrap();
    let n2 = lab.add_host("n2", N2).unwrap();
    let (primary, standby) = common::pg::pg_pair(&lab, &n1, &n2);
    let identity = StandbyIdentity {
        address: standby.address().to_string(),
        application_name: None,
    };
    let running = Running::start(&n2, peer_monitor(&primary).with_standby(identity));
    running.wait_holding();

    // Steady state: the statement the server runs is the by-pid one in most rounds (the
    // identity match comes back once every 20 rounds), and every answer is the streaming row.
    let mut by_pid = 0;
    let mut by_view = 0;
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(70));
        let query = monitor_query(&primary);
        if query.contains("pg_stat_get_wal_senders() WHERE") {
            by_pid += 1;
        } else if query.contains("FROM pg_stat_replication") {
            by_view += 1;
        }
    }
    println!("last statement seen: by pid {by_pid}, by the view {by_view} (of 30 looks)");
    assert!(by_pid >= 20, "by pid {by_pid}, by the view {by_view}");
    assert!(by_view >= 1, "the identity match never ran again");
    let steady = running.rounds();
    assert!(steady.len() >= 25, "{} rounds", steady.len());
    assert!(
        steady.iter().skip(3).all(|r| streaming_row(r).is_some()),
        "{steady:?}"
    );

    // The standby reconnects: a new walsender, under a new pid.
    let old_pid = walsender_pid(&primary);
    let before = Instant::now();
    standby.stop_fast().unwrap();
    primary
        .psql("CREATE TABLE after_reconnect AS SELECT generate_series(1, 10000) AS id")
        .unwrap();
    let current_before: u64 = {
        let lsn = primary.psql("SELECT pg_current_wal_lsn()").unwrap();
        lsn.parse::<whpg_ha::db::Lsn>().unwrap().0
    };
    standby.start().unwrap();
    whpg_lab::wait_until(
        Duration::from_secs(15),
        Duration::from_millis(50),
        "the restarted standby's walsender to stream",
        || {
            let pid = walsender_pid(&primary);
            !pid.is_empty() && pid != old_pid
        },
    )
    .unwrap();
    let new_pid = walsender_pid(&primary);
    whpg_lab::wait_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        "the monitor to see the new walsender caught up",
        || {
            running
                .rounds()
                .iter()
                .filter(|r| r.at > before)
                .filter_map(streaming_row)
                .any(|(_, flush)| flush >= current_before)
        },
    )
    .unwrap();
    let rounds = running.rounds();
    let after: Vec<_> = rounds.iter().filter(|r| r.at > before).collect();
    let without_row = after.iter().filter(|r| streaming_row(r).is_none()).count();
    println!(
        "walsender {old_pid} -> {new_pid}: {} rounds since the stop, {without_row} without a \
         streaming row",
        after.len()
    );
    // While the standby was down the primary listed no streaming walsender for it.
    assert!(without_row >= 1, "{after:?}");
    // And by pid again after it.
    std::thread::sleep(Duration::from_millis(500));
    let query = monitor_query(&primary);
    assert!(
        query.contains("pg_stat_get_wal_senders() WHERE")
            || query.contains("FROM pg_stat_replication"),
        "{query}"
    );
    drop(running);
}
