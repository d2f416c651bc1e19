//! The etcd arbiter on a real 3-member etcd cluster in the namespace lab: one member on each
//! coordinator host and one on the client (witness) host, so a partition between the
//! coordinators leaves both sides reaching the quorum through the third member. The daemons and
//! a PostgreSQL 15 pair are real. Times are printed; asserted bounds are generous.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::daemon::{dump_logs, start_daemon, status};
use common::pg::{db_pair_builder, nodes, pair, write_through_vip, DbPairSettings, Pair, VIP};
use whpg_lab::etcd::EtcdCluster;
use whpg_lab::postgres::PG_BIN_DIR;
use whpg_lab::{lab_or_skip, wait_until, Host, Lab, Process};

const PREREQUISITES: &[&str] = &[
    "user:postgres",
    "/usr/lib/postgresql/15/bin/initdb",
    "nft",
    "etcd",
    "etcdctl",
];
const CLIENT: &str = "10.77.0.99";
/// The etcd members' names and addresses: on n1, n2 and the client host.
const MEMBERS: [(&str, &str); 3] = [("e1", "10.77.0.11"), ("e2", "10.77.0.12"), ("e3", CLIENT)];

/// One etcd member per host (n1, n2, client), started together; returns once the cluster
/// answers a health check from the client host.
fn etcd_cluster(lab: &Lab, p: &Pair) -> EtcdCluster {
    let members = [
        (MEMBERS[0].0, &p.n1),
        (MEMBERS[1].0, &p.n2),
        (MEMBERS[2].0, &p.client),
    ];
    EtcdCluster::start(lab.dir(), &members, &p.client, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// The leader key's value (its holder), read on the client host; a read that fails (a member
/// re-electing) is tried again, up to five times.
fn key_holder(p: &Pair) -> Option<String> {
    for _ in 0..5 {
        let out = p.client.exec_timeout(
            &[
                "etcdctl",
                // The client host's own member: on the majority side in every test here.
                "--endpoints",
                "http://127.0.0.1:2379",
                "get",
                "--print-value-only",
                "/whpg-ha/lab/leader",
            ],
            Duration::from_secs(5),
        );
        match out {
            Ok(o) if o.status.success() => {
                let text = o.stdout.trim().to_string();
                return (!text.is_empty()).then_some(text);
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    None
}

fn config(p: &Pair, node: &str, settings: &DbPairSettings, arbiter: bool) -> String {
    let db = if node == "n1" { &p.primary } else { &p.standby };
    let builder = db_pair_builder(settings, db, &nodes(), Some(PG_BIN_DIR));
    if !arbiter {
        return builder.to_toml();
    }
    builder.section("[arbiter]", &arbiter_section()).to_toml()
}

fn arbiter_section() -> String {
    format!(
        "kind = \"etcd\"\nendpoints = [{}]\nkey_prefix = \"/whpg-ha/lab\"\n\
         lease_ttl = \"5s\"\ntimeout = \"1s\"\nkeepalive_interval = \"1s\"",
        MEMBERS
            .iter()
            .map(|(_, ip)| format!("\"http://{ip}:2379\""))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The fast profile with the client as the witness: without an arbiter a partition between the
/// coordinators promotes the standby at once (both see the witness).
fn fast_with_witness() -> DbPairSettings {
    DbPairSettings {
        confirmation: "0s",
        witness: Some(CLIENT),
        ..DbPairSettings::default()
    }
}

fn serving(lab: &Lab, p: &Pair, settings: &DbPairSettings, arbiter: bool) -> (Process, Process) {
    let d1 = start_daemon(lab, &p.n1, "n1", &config(p, "n1", settings, arbiter));
    let d2 = start_daemon(lab, &p.n2, "n2", &config(p, "n2", settings, arbiter));
    let up = wait_until(
        Duration::from_secs(20),
        Duration::from_millis(20),
        "VIP on n1",
        || p.n1.has_address(VIP),
    );
    if let Err(e) = up {
        panic!("{e:#}\n{}", dump_logs(&[&d1, &d2]));
    }
    assert!(!p.n2.has_address(VIP));
    if arbiter {
        assert_eq!(key_holder(p).as_deref(), Some("n1"));
        // /status shows the arbiter on both nodes.
        let seen = wait_until(
            Duration::from_secs(5),
            Duration::from_millis(50),
            "both daemons show n1 holding the key",
            || {
                let a = status(&p.n1)
                    .map(|s| s["arbiter"].clone())
                    .unwrap_or_default();
                let b = status(&p.n2)
                    .map(|s| s["arbiter"].clone())
                    .unwrap_or_default();
                a["held"] == true
                    && a["lease_left_ms"].as_u64().is_some_and(|ms| ms > 0)
                    && a["reachable"] == true
                    && b["holder"] == "n1"
                    && b["held"] == false
            },
        );
        assert!(
            seen.is_ok(),
            "n1 {:?}\nn2 {:?}",
            status(&p.n1),
            status(&p.n2)
        );
    }
    assert!(write_through_vip(&p.client, 1), "a write before the fault");
    (d1, d2)
}

/// Samples both hosts' VIPs every 20 ms until dropped.
struct PairWatch {
    stop: Arc<AtomicBool>,
    both: Arc<AtomicU32>,
    n2: Arc<AtomicU32>,
    samples: Arc<AtomicU32>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PairWatch {
    fn start(n1: &Host, n2: &Host) -> PairWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let both = Arc::new(AtomicU32::new(0));
        let on_n2 = Arc::new(AtomicU32::new(0));
        let samples = Arc::new(AtomicU32::new(0));
        let thread = {
            let (n1, n2) = (n1.clone(), n2.clone());
            let (stop, both, on_n2, samples) = (
                Arc::clone(&stop),
                Arc::clone(&both),
                Arc::clone(&on_n2),
                Arc::clone(&samples),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (a, b) = (n1.has_address(VIP), n2.has_address(VIP));
                    samples.fetch_add(1, Ordering::Relaxed);
                    if a && b {
                        both.fetch_add(1, Ordering::Relaxed);
                    }
                    if b {
                        on_n2.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        PairWatch {
            stop,
            both,
            n2: on_n2,
            samples,
            thread: Some(thread),
        }
    }

    fn counts(&self) -> (u32, u32, u32) {
        (
            self.both.load(Ordering::Relaxed),
            self.n2.load(Ordering::Relaxed),
            self.samples.load(Ordering::Relaxed),
        )
    }
}

impl Drop for PairWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn a_symmetric_partition_with_the_arbiter_leaves_one_vip_holder() {
    let lab = lab_or_skip!("arbiter_partition", PREREQUISITES);
    let p = pair(&lab);
    let etcd = etcd_cluster(&lab, &p);
    let (d1, d2) = serving(&lab, &p, &fast_with_witness(), true);
    let mut logs: Vec<&Process> = vec![&d1, &d2];
    logs.extend(etcd.members().iter());

    let watch = PairWatch::start(&p.n1, &p.n2);
    lab.partition(&p.n1, &p.n2).expect("cut n1 from n2");
    // Three lease TTLs: long past the standby's promotion without an arbiter (at once) and past
    // any lease the primary could have lost.
    std::thread::sleep(Duration::from_secs(15));
    let (both, on_n2, samples) = watch.counts();
    let n2 = status(&p.n2).unwrap_or_default();
    println!(
        "symmetric partition with the arbiter, 15 s: {samples} samples, {both} with two VIP \
         holders, {on_n2} with the VIP on n2; key holder {:?}; n2's hold: {}",
        key_holder(&p),
        n2["database"]["promotion_hold"]
    );
    assert_eq!(both, 0, "two VIP holders\n{}", dump_logs(&logs));
    assert_eq!(on_n2, 0, "the standby took the VIP\n{}", dump_logs(&logs));
    assert!(
        p.n1.has_address(VIP),
        "the primary keeps serving\n{}",
        dump_logs(&logs)
    );
    assert!(
        p.standby.is_in_recovery().expect("query n2's database"),
        "the standby was promoted beside the primary\n{}",
        dump_logs(&logs)
    );
    assert_eq!(key_holder(&p).as_deref(), Some("n1"));
    let mut id = 2;
    let written = wait_until(
        Duration::from_secs(5),
        Duration::from_millis(20),
        "a write through the VIP during the partition",
        || {
            id += 1;
            write_through_vip(&p.client, id)
        },
    );
    assert!(written.is_ok(), "{}", dump_logs(&logs));

    lab.heal(&p.n1, &p.n2).expect("heal");
    std::thread::sleep(Duration::from_secs(2));
    let (both, on_n2, _) = watch.counts();
    assert_eq!((both, on_n2), (0, 0), "{}", dump_logs(&logs));
    assert!(p.n1.has_address(VIP));
}

#[test]
fn a_database_crash_with_the_arbiter_fails_over_without_waiting_for_the_lease() {
    let lab = lab_or_skip!("arbiter_db_crash", PREREQUISITES);
    let p = pair(&lab);
    let etcd = etcd_cluster(&lab, &p);
    let (d1, d2) = serving(&lab, &p, &DbPairSettings::default(), true);
    let mut logs: Vec<&Process> = vec![&d1, &d2];
    logs.extend(etcd.members().iter());
    let standby = wait_until(
        Duration::from_secs(5),
        Duration::from_millis(50),
        "n2 reports a standby",
        || status(&p.n2).is_some_and(|s| s["database"]["role"] == "standby"),
    );
    assert!(standby.is_ok(), "{}", dump_logs(&logs));

    let crash = Instant::now();
    p.primary.kill9().expect("kill -9 the primary's postmaster");
    let moved = wait_until(
        Duration::from_secs(20),
        Duration::from_millis(10),
        "VIP on n2",
        || p.n2.has_address(VIP),
    );
    let moved = moved.unwrap_or_else(|e| panic!("{e:#}\n{}", dump_logs(&logs)));
    let mut id = 2;
    let written = wait_until(
        Duration::from_secs(10),
        Duration::from_millis(10),
        "a write through the VIP",
        || {
            id += 1;
            write_through_vip(&p.client, id)
        },
    );
    assert!(written.is_ok(), "{}", dump_logs(&logs));
    let first_write = crash.elapsed();
    println!(
        "database crash with the arbiter (lease TTL 5 s): VIP on n2 after {moved:?}, first \
         committed write after {first_write:?}; key holder {:?}",
        key_holder(&p)
    );
    assert_eq!(key_holder(&p).as_deref(), Some("n2"));
    assert!(!p.n1.has_address(VIP));
    // The crashed primary released its key (the takeover did not wait for its lease).
    let n1_log = std::fs::read_to_string(d1.log_path()).unwrap_or_default();
    assert!(
        n1_log.contains("released the leader key"),
        "n1 did not release the key\n{}",
        dump_logs(&logs)
    );
}

/// The control: the same partition without the arbiter gives two VIP holders (the known
/// exception of a two-node pair), so the test above shows what the arbiter changes.
#[test]
fn the_same_partition_without_the_arbiter_gives_two_vip_holders() {
    let lab = lab_or_skip!("arbiter_partition_control", PREREQUISITES);
    let p = pair(&lab);
    let (d1, d2) = serving(&lab, &p, &fast_with_witness(), false);
    let watch = PairWatch::start(&p.n1, &p.n2);
    lab.partition(&p.n1, &p.n2).expect("cut n1 from n2");
    let both = wait_until(
        Duration::from_secs(10),
        Duration::from_millis(50),
        "two VIP holders",
        || watch.counts().0 > 0,
    );
    let (twice, on_n2, samples) = watch.counts();
    println!(
        "symmetric partition without the arbiter: two VIP holders after {both:?} ({twice} of \
         {samples} samples, {on_n2} with the VIP on n2)"
    );
    assert!(both.is_ok(), "{}", dump_logs(&[&d1, &d2]));
}

/// Two lease TTLs with the etcd members in `down` stopped: the pair must go on as it was.
fn etcd_outage_changes_nothing(test: &str, down: &[usize]) {
    let lab = lab_or_skip!(test, PREREQUISITES);
    let p = pair(&lab);
    let etcd = etcd_cluster(&lab, &p);
    let (d1, d2) = serving(&lab, &p, &DbPairSettings::default(), true);
    let mut logs: Vec<&Process> = vec![&d1, &d2];
    logs.extend(etcd.members().iter());
    let watch = PairWatch::start(&p.n1, &p.n2);
    let on_n1 = Arc::new(AtomicU32::new(0));
    for &i in down {
        etcd.kill9(i).expect("kill -9 an etcd member");
    }
    let stopped: Vec<&str> = down.iter().map(|&i| MEMBERS[i].0).collect();
    let mut id = 2;
    let (mut writes, mut tries) = (0, 0);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        id += 1;
        tries += 1;
        if write_through_vip(&p.client, id) {
            writes += 1;
        }
        if p.n1.has_address(VIP) {
            on_n1.fetch_add(1, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (both, on_n2, samples) = watch.counts();
    let n1 = status(&p.n1).unwrap_or_default();
    println!(
        "etcd members {stopped:?} down for 10 s: {writes} of {tries} writes through the VIP \
         committed, VIP on n1 in {} of them, on n2 in {on_n2} of {samples} samples, two holders \
         in {both}; n1's arbiter: {}",
        on_n1.load(Ordering::Relaxed),
        n1["arbiter"]
    );
    assert_eq!((both, on_n2), (0, 0), "{}", dump_logs(&logs));
    assert_eq!(
        writes,
        tries,
        "writes failed during the outage\n{}",
        dump_logs(&logs)
    );
    assert!(p.n1.has_address(VIP), "{}", dump_logs(&logs));
    assert!(
        common::pg::db_running(&p.primary),
        "the primary was stopped\n{}",
        dump_logs(&logs)
    );
    assert!(p.standby.is_in_recovery().expect("query n2's database"));
    assert_eq!(n1["database"]["fenced"], serde_json::Value::Null, "{n1}");
    assert!(write_through_vip(&p.client, id + 1), "{}", dump_logs(&logs));
}

#[test]
fn one_etcd_member_down_changes_nothing() {
    // n1's own member: its client must carry on with the other two.
    etcd_outage_changes_nothing("arbiter_member_down", &[0]);
}

#[test]
fn the_whole_etcd_cluster_down_with_both_nodes_up_causes_no_outage() {
    etcd_outage_changes_nothing("arbiter_etcd_down", &[0, 1, 2]);
}

/// The master cut off from everything, its link up (no witness configured, so only the lease
/// can stop it): it drops the VIP and fences when its lease runs out, and the standby takes the
/// key and the VIP only after that.
#[test]
fn an_isolated_master_gives_up_the_vip_at_its_lease_and_the_standby_takes_over_after_it() {
    let lab = lab_or_skip!("arbiter_isolation", PREREQUISITES);
    let p = pair(&lab);
    let etcd = etcd_cluster(&lab, &p);
    let (d1, d2) = serving(&lab, &p, &DbPairSettings::default(), true);
    let mut logs: Vec<&Process> = vec![&d1, &d2];
    logs.extend(etcd.members().iter());

    let fault = Instant::now();
    lab.isolate(&p.n1).expect("isolate n1");
    let (mut dropped, mut fenced, mut moved) = (None, None, None);
    let done = wait_until(
        Duration::from_secs(20),
        Duration::from_millis(10),
        "the VIP off n1, n1 fenced, the VIP on n2",
        || {
            if dropped.is_none() && !p.n1.has_address(VIP) {
                dropped = Some(fault.elapsed());
            }
            if fenced.is_none() && !common::pg::db_running(&p.primary) {
                fenced = Some(fault.elapsed());
            }
            if moved.is_none() && p.n2.has_address(VIP) {
                moved = Some(fault.elapsed());
            }
            dropped.is_some() && fenced.is_some() && moved.is_some()
        },
    );
    assert!(done.is_ok(), "{}", dump_logs(&logs));
    let (dropped, fenced, moved) = (
        dropped.unwrap_or_default(),
        fenced.unwrap_or_default(),
        moved.unwrap_or_default(),
    );
    let mut id = 2;
    let written = wait_until(
        Duration::from_secs(10),
        Duration::from_millis(10),
        "a write through the VIP",
        || {
            id += 1;
            write_through_vip(&p.client, id)
        },
    );
    assert!(written.is_ok(), "{}", dump_logs(&logs));
    let first_write = fault.elapsed();
    let n1 = status(&p.n1).unwrap_or_default();
    println!(
        "isolated master with the arbiter (lease TTL 5 s, confirmation 3 s): VIP off n1 after \
         {dropped:?}, n1's database stopped after {fenced:?}, VIP on n2 after {moved:?}, first \
         committed write after {first_write:?}"
    );
    assert!(
        dropped < moved && fenced < moved,
        "the cut-off master stops serving before the standby takes over\n{}",
        dump_logs(&logs)
    );
    assert!(
        n1["events"].to_string().contains("lease ran out"),
        "n1's events say why the VIP went: {n1}"
    );
    assert_eq!(n1["database"]["fenced"], "LeaseLost", "{n1}");
    assert_eq!(key_holder(&p).as_deref(), Some("n2"));
}

/// SIGKILL of the master's daemon, database up, and a new daemon at once (as systemd does): the
/// key is still on its lease; the new daemon keeps it and serves again, and the standby, which
/// sees the primary answer all along, never asks for it.
#[test]
fn a_restarted_master_daemon_keeps_its_key() {
    let lab = lab_or_skip!("arbiter_restart", PREREQUISITES);
    let p = pair(&lab);
    let etcd = etcd_cluster(&lab, &p);
    let settings = DbPairSettings::default();
    let (d1, d2) = serving(&lab, &p, &settings, true);
    let watch = PairWatch::start(&p.n1, &p.n2);
    d1.kill9();
    let d1 = start_daemon(&lab, &p.n1, "n1", &config(&p, "n1", &settings, true));
    let mut logs: Vec<&Process> = vec![&d1, &d2];
    logs.extend(etcd.members().iter());
    let back = wait_until(
        Duration::from_secs(20),
        Duration::from_millis(10),
        "the VIP back on n1",
        || p.n1.has_address(VIP) && status(&p.n1).is_some_and(|s| s["arbiter"]["held"] == true),
    );
    let back = back.unwrap_or_else(|e| panic!("{e:#}\n{}", dump_logs(&logs)));
    std::thread::sleep(Duration::from_secs(2));
    let (both, on_n2, samples) = watch.counts();
    println!(
        "master daemon restarted (SIGKILL): VIP and key back on n1 after {back:?}; VIP on n2 in \
         {on_n2} of {samples} samples, two holders in {both}"
    );
    assert_eq!((both, on_n2), (0, 0), "{}", dump_logs(&logs));
    assert_eq!(key_holder(&p).as_deref(), Some("n1"));
    let n1_log = std::fs::read_to_string(d1.log_path()).unwrap_or_default();
    assert!(
        n1_log.contains("from an earlier run: keeping it"),
        "the new daemon did not keep the key\n{}",
        dump_logs(&logs)
    );
    assert!(p.standby.is_in_recovery().expect("query n2's database"));
}

// ---- sync mode with the arbiter: etcd's sync record before the primary commits alone -------

/// `replication.sync_timeout` of the sync test.
const SYNC_TIMEOUT: Duration = Duration::from_secs(2);

/// `<prefix>/sync` read on the client host (its member is on the majority side here), as JSON.
fn sync_record(p: &Pair) -> Option<serde_json::Value> {
    for _ in 0..5 {
        let out = p.client.exec_timeout(
            &[
                "etcdctl",
                "--endpoints",
                "http://127.0.0.1:2379",
                "get",
                "--print-value-only",
                "/whpg-ha/lab/sync",
            ],
            Duration::from_secs(5),
        );
        match out {
            Ok(o) if o.status.success() => {
                let text = o.stdout.trim();
                return (!text.is_empty())
                    .then(|| serde_json::from_str(text).expect("the sync record is JSON"));
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    None
}

fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

#[test]
fn sync_mode_with_the_arbiter_relaxes_only_after_etcds_record_says_none() {
    let lab = lab_or_skip!("arbiter_sync", PREREQUISITES);
    let p = pair(&lab);
    let etcd = etcd_cluster(&lab, &p);
    let settings = DbPairSettings::default();
    let config = |node: &str| {
        let db = if node == "n1" { &p.primary } else { &p.standby };
        db_pair_builder(&settings, db, &nodes(), Some(PG_BIN_DIR))
            .set("replication", "mode", "sync")
            .set("replication", "sync_timeout", "2s")
            .section("[arbiter]", &arbiter_section())
            .to_toml()
    };
    let d1 = start_daemon(&lab, &p.n1, "n1", &config("n1"));
    let d2 = start_daemon(&lab, &p.n2, "n2", &config("n2"));
    let mut logs: Vec<&Process> = vec![&d1, &d2];
    logs.extend(etcd.members().iter());
    let wait = |what: &str, within: Duration, f: &mut dyn FnMut() -> bool| {
        if let Err(e) = wait_until(within, Duration::from_millis(50), what, f) {
            panic!("{e:#}\n{}", dump_logs(&logs));
        }
    };
    wait("VIP on n1", Duration::from_secs(20), &mut || {
        p.n1.has_address(VIP)
    });
    wait(
        "etcd's sync record names n2",
        Duration::from_secs(20),
        &mut || sync_record(&p).is_some_and(|r| r["sync_standby"] == "n2" && r["primary"] == "n1"),
    );
    assert_eq!(
        p.primary
            .psql("SELECT sync_state FROM pg_stat_replication")
            .expect("n1")
            .trim(),
        "sync",
        "named only once listed sync"
    );
    wait(
        "both daemons show the record in /status",
        Duration::from_secs(5),
        &mut || {
            let a = status(&p.n1)
                .map(|s| s["arbiter"].clone())
                .unwrap_or_default();
            let b = status(&p.n2)
                .map(|s| s["arbiter"].clone())
                .unwrap_or_default();
            a["sync_record"] == "names n2"
                && a["sync_record_written"] == "standby"
                && b["sync_record"] == "names n2 (this node)"
        },
    );
    assert!(write_through_vip(&p.client, 1), "a write while synchronous");

    // The standby's host is cut off (its etcd member with it: the other two keep the quorum).
    let cut = Instant::now();
    lab.link_down(&p.n2).expect("n2's link down");
    let mut id = 100;
    let written = wait_until(
        Duration::from_secs(10),
        Duration::from_millis(20),
        "a write through the VIP with the standby's host gone",
        || {
            id += 1;
            write_through_vip(&p.client, id)
        },
    );
    let took = cut.elapsed();
    let acked_at_ms = unix_ms_now();
    assert!(written.is_ok(), "{}", dump_logs(&logs));
    let record = sync_record(&p).expect("the sync record");
    println!(
        "sync mode with the arbiter: standby host lost: writes succeed again after {took:?} \
         (sync_timeout {SYNC_TIMEOUT:?}); etcd's record then: {record}"
    );
    assert!(
        took + Duration::from_millis(100) >= SYNC_TIMEOUT,
        "relaxed before sync_timeout: {took:?}"
    );
    assert!(took <= SYNC_TIMEOUT + Duration::from_secs(1), "{took:?}");
    assert_eq!(record["sync_standby"], serde_json::Value::Null, "{record}");
    let since = record["since_unix_ms"].as_u64().expect("since_unix_ms");
    assert!(since <= acked_at_ms, "written before the first write alone");
    // The order, as n1's journal has it: etcd acknowledged none, then the relax.
    let path = lab.dir().join("n1.journal").join("journal.jsonl");
    let needles = [
        "etcd's sync record says none (acknowledged)",
        "commit alone: synchronous_standby_names = ''",
    ];
    // The journal is written in the background: both lines within a moment.
    wait(
        "n1's journal has the record and the relax",
        Duration::from_secs(5),
        &mut || std::fs::read_to_string(&path).is_ok_and(|j| needles.iter().all(|n| j.contains(n))),
    );
    let journal = std::fs::read_to_string(&path).expect("n1's journal");
    let line = |needle: &str| {
        journal
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in n1's journal:\n{journal}"))
    };
    let acknowledged = line(needles[0]);
    let relaxed = line(needles[1]);
    assert!(
        acknowledged < relaxed,
        "the relax came before etcd acknowledged none:\n{journal}"
    );
    let n1 = status(&p.n1).unwrap_or_default();
    let arbiter = &n1["arbiter"];
    println!("n1's /status arbiter: {arbiter}");
    assert_eq!(arbiter["sync_record_written"], "none", "{arbiter}");
    assert!(
        arbiter["sync_record"]
            .as_str()
            .is_some_and(|t| t.starts_with("names none since")),
        "{arbiter}"
    );
    // Commits go on, alone.
    for more in 0..5 {
        assert!(
            write_through_vip(&p.client, 10_000 + more),
            "{}",
            dump_logs(&logs)
        );
    }
    assert_eq!(
        p.primary
            .psql("SHOW synchronous_standby_names")
            .expect("n1")
            .trim(),
        ""
    );
}
