//! Synchronous replication managed by the daemons (`[replication] mode = "sync"`) on a real
//! PostgreSQL 15 pair in the namespace lab: the primary's daemon names the streaming standby in
//! `synchronous_standby_names`, commits alone once the standby's database is killed, requires it
//! again when it is back, and a crash of the primary then fails over without losing a commit
//! that was acknowledged. Times are printed; asserted bounds are the documented ones.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::daemon::{dump_logs, start_daemon, status};
use common::pg::{db_pair_builder, nodes, pair, write_through_vip, DbPairSettings, Pair, VIP};
use whpg_lab::postgres::PG_BIN_DIR;
use whpg_lab::{lab_or_skip, wait_until, Host, Lab, PgNode, Process};

const PREREQUISITES: &[&str] = &["user:postgres", "/usr/lib/postgresql/15/bin/initdb"];
/// `replication.sync_timeout` of the lab pair.
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);

fn start_sync_pair(lab: &Lab, p: &Pair) -> (Process, Process) {
    start_pair_in(lab, p, "sync")
}

fn start_pair_in(lab: &Lab, p: &Pair, mode: &str) -> (Process, Process) {
    let settings = DbPairSettings::default();
    let config = |db: &PgNode| {
        db_pair_builder(&settings, db, &nodes(), Some(PG_BIN_DIR))
            .set("replication", "mode", mode)
            .set("replication", "sync_timeout", "5s")
            .to_toml()
    };
    let d1 = start_daemon(lab, &p.n1, "n1", &config(&p.primary));
    let d2 = start_daemon(lab, &p.n2, "n2", &config(&p.standby));
    (d1, d2)
}

fn wait_for(
    what: &str,
    deadline: Duration,
    daemons: &[&Process],
    f: impl FnMut() -> bool,
) -> Duration {
    wait_until(deadline, Duration::from_millis(20), what, f)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", dump_logs(daemons)))
}

fn replication(host: &Host) -> serde_json::Value {
    status(host)
        .map(|s| s["database"]["replication"].clone())
        .unwrap_or_default()
}

/// The primary waits for its standby: `sync_state` is `sync` in its `pg_stat_replication`.
fn primary_waits_for_standby(primary: &PgNode) -> bool {
    primary
        .psql("SELECT sync_state FROM pg_stat_replication")
        .is_ok_and(|out| out.trim() == "sync")
}

/// Writes through the VIP, one id after another, until stopped; keeps the ids acknowledged.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<u64>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(client: &Host, first_id: u64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let next = Arc::new(AtomicU64::new(first_id));
        let thread = {
            let (client, stop, acked) = (client.clone(), Arc::clone(&stop), Arc::clone(&acked));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    if write_through_vip(&client, id) {
                        acked.lock().expect("writer lock").push(id);
                    } else {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })
        };
        Writer {
            stop,
            acked,
            thread: Some(thread),
        }
    }

    fn acked(&self) -> Vec<u64> {
        self.acked.lock().expect("writer lock").clone()
    }

    /// Stops and returns the acknowledged ids.
    fn finish(mut self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.acked()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn sync_mode_requires_the_standby_relaxes_when_it_dies_and_fails_over_without_loss() {
    let lab = lab_or_skip!("syncrep", PREREQUISITES);
    let p = pair(&lab);
    let (d1, d2) = start_sync_pair(&lab, &p);
    let daemons = [&d1, &d2];

    // 1. The streaming standby is named, and commits wait for it.
    let started = Instant::now();
    wait_for("VIP on n1", Duration::from_secs(15), &daemons, || {
        p.n1.has_address(VIP)
    });
    let required = wait_for(
        "n1 waits for its standby (sync_state sync)",
        Duration::from_secs(15),
        &daemons,
        || primary_waits_for_standby(&p.primary),
    );
    let names = p
        .primary
        .psql("SHOW synchronous_standby_names")
        .expect("query n1");
    println!("sync mode: n1 waits for its standby {required:?} after start ({names:?})");
    assert!(names.trim().starts_with('"'), "{names:?}");
    let view = replication(&p.n1);
    assert_eq!(view["mode"], "sync", "{view}");
    assert_eq!(view["synchronous"], true, "{view}");
    assert_eq!(view["synchronous_standby_names"], names.trim(), "{view}");
    assert!(write_through_vip(&p.client, 1), "a write while synchronous");
    assert!(started.elapsed() < Duration::from_secs(30));

    // 2. The standby's database dies: writes wait, then the primary commits alone.
    let killed = Instant::now();
    p.standby.kill9().expect("kill -9 the standby's postmaster");
    let mut id = 100;
    wait_for(
        "a write through the VIP after the standby died",
        SYNC_TIMEOUT + Duration::from_secs(5),
        &daemons,
        || {
            id += 1;
            write_through_vip(&p.client, id)
        },
    );
    let writable_again = killed.elapsed();
    println!(
        "sync mode: standby database killed: writes succeed again after {writable_again:?} \
         (target: within sync_timeout {SYNC_TIMEOUT:?} + 1 s)"
    );
    assert!(
        writable_again <= SYNC_TIMEOUT + Duration::from_secs(1),
        "{writable_again:?}\n{}",
        dump_logs(&daemons)
    );
    let alone = p
        .primary
        .psql("SHOW synchronous_standby_names")
        .expect("query n1");
    assert_eq!(alone.trim(), "", "n1 commits alone");

    // 3. The standby is back and streams: it is required again.
    p.standby.start().expect("start the standby again");
    let again = wait_for(
        "n1 waits for its standby again",
        Duration::from_secs(20),
        &daemons,
        || primary_waits_for_standby(&p.primary),
    );
    println!("sync mode: the restarted standby is required again {again:?} after its start");
    wait_for(
        "n2 is promotable",
        Duration::from_secs(10),
        &daemons,
        || replication(&p.n2)["promotable"] == true,
    );

    // 4. Clients write continuously; the primary crashes; every acknowledged commit is on the
    //    promoted standby.
    let writer = Writer::start(&p.client, 10_000);
    wait_for("writes flow", Duration::from_secs(10), &daemons, || {
        writer.acked().len() >= 50
    });
    let crash = Instant::now();
    p.primary.kill9().expect("kill -9 the primary's postmaster");
    let vip_moved = wait_for("VIP on n2", Duration::from_secs(20), &daemons, || {
        p.n2.has_address(VIP)
    });
    let before = writer.acked().len();
    wait_for(
        "writes through the VIP on n2",
        Duration::from_secs(10),
        &daemons,
        || writer.acked().len() > before + 5,
    );
    let acked = writer.finish();
    let on_n2: BTreeSet<u64> = p
        .standby
        .psql("SELECT id FROM writes WHERE id >= 10000")
        .expect("query n2")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let lost: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|id| !on_n2.contains(id))
        .collect();
    println!(
        "sync mode: primary crash: VIP on n2 after {vip_moved:?} ({:?} since the crash), {} \
         commits acknowledged, {} lost",
        crash.elapsed(),
        acked.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "lost {lost:?}\n{}", dump_logs(&daemons));
    assert!(
        !p.standby.is_in_recovery().expect("query n2"),
        "n2 promoted"
    );
    // The promoted node commits alone: its peer is the old primary.
    let names = p
        .standby
        .psql("SHOW synchronous_standby_names")
        .expect("query n2");
    assert_eq!(names.trim(), "", "n2 commits alone");
}

/// The standby's host is cut off entirely (its link down): `sync` commits alone after
/// `sync_timeout`; `sync-strict` never does, and writes flow again once the standby is back.
fn lost_standby_host(name: &str, mode: &str) {
    let lab = lab_or_skip!(name, PREREQUISITES);
    let p = pair(&lab);
    let (d1, d2) = start_pair_in(&lab, &p, mode);
    let daemons = [&d1, &d2];
    wait_for("VIP on n1", Duration::from_secs(15), &daemons, || {
        p.n1.has_address(VIP)
    });
    wait_for(
        "n1 waits for its standby",
        Duration::from_secs(15),
        &daemons,
        || primary_waits_for_standby(&p.primary),
    );
    assert!(write_through_vip(&p.client, 1), "a write while synchronous");
    let cut = Instant::now();
    lab.link_down(&p.n2).expect("n2's link down");
    let mut id = 100;
    let written = wait_until(
        Duration::from_secs(if mode == "sync" { 12 } else { 8 }),
        Duration::from_millis(20),
        "a write through the VIP with the standby's host gone",
        || {
            id += 1;
            write_through_vip(&p.client, id)
        },
    );
    let took = cut.elapsed();
    match mode {
        "sync" => {
            assert!(written.is_ok(), "{}", dump_logs(&daemons));
            println!(
                "sync mode: standby host lost: writes succeed again after {took:?} (target: \
                 within sync_timeout {SYNC_TIMEOUT:?} + 1 s)"
            );
            // Counted from the standby's last answer, at most one probe interval (100 ms)
            // before the cut.
            assert!(
                took + Duration::from_millis(100) >= SYNC_TIMEOUT,
                "relaxed before sync_timeout: {took:?}"
            );
            assert!(took <= SYNC_TIMEOUT + Duration::from_secs(1), "{took:?}");
        }
        _ => {
            assert!(
                written.is_err(),
                "sync-strict committed alone\n{}",
                dump_logs(&daemons)
            );
            println!("sync-strict mode: standby host lost: no write committed in {took:?}");
            let names = p
                .primary
                .psql("SHOW synchronous_standby_names")
                .expect("n1");
            assert!(
                names.trim().starts_with('"'),
                "still names the standby: {names:?}"
            );
            lab.link_up(&p.n2).expect("n2's link up");
            let back = Instant::now();
            let mut id = 1_000;
            wait_for(
                "a write once the standby is back",
                Duration::from_secs(40),
                &daemons,
                || {
                    id += 1;
                    write_through_vip(&p.client, id)
                },
            );
            println!(
                "sync-strict mode: the standby's host is back: writes succeed after {:?}",
                back.elapsed()
            );
            assert!(
                p.standby.is_in_recovery().expect("n2"),
                "n2 was never promoted"
            );
        }
    }
}

#[test]
fn sync_mode_commits_alone_after_the_sync_timeout_when_the_standby_host_is_lost() {
    lost_standby_host("syncrep_host_lost", "sync");
}

#[test]
fn sync_strict_mode_never_commits_alone_while_the_standby_host_is_lost() {
    lost_standby_host("syncrep_strict_host_lost", "sync-strict");
}
