//! Database-aware failover on a real PostgreSQL 15 pair in the namespace lab: the VIP follows the
//! writable database, the standby is promoted only when it is safe, a node that must not serve is
//! fenced. Times are printed; asserted bounds are generous (the benchmark measures precisely).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::daemon::{dump_logs, start_daemon, status};
use common::pg::{
    db_pair_config, db_pair_config_with_bin_dir, db_running, fake_gphome, nodes, pair,
    write_through_vip, DbPairSettings, Pair, VIP,
};
use whpg_lab::postgres::PG_BIN_DIR;
use whpg_lab::{lab_or_skip, wait_until, Host, Lab, Process};

const PREREQUISITES: &[&str] = &["user:postgres", "/usr/lib/postgresql/15/bin/initdb"];
/// The client host, also the witness where one is configured.
const CLIENT: &str = "10.77.0.99";

fn start_pair(lab: &Lab, p: &Pair, settings: &DbPairSettings) -> (Process, Process) {
    let d1 = start_daemon(
        lab,
        &p.n1,
        "n1",
        &db_pair_config(settings, &p.primary, &nodes()),
    );
    let d2 = start_daemon(
        lab,
        &p.n2,
        "n2",
        &db_pair_config(settings, &p.standby, &nodes()),
    );
    (d1, d2)
}

fn wait_for(what: &str, deadline: Duration, f: impl FnMut() -> bool) -> Duration {
    wait_until(deadline, Duration::from_millis(10), what, f).unwrap_or_else(|e| panic!("{e:#}"))
}

fn db_field(host: &Host, field: &str) -> serde_json::Value {
    status(host)
        .map(|s| s["database"][field].clone())
        .unwrap_or_default()
}

#[test]
fn database_crash_promotes_the_standby_and_moves_the_vip() {
    let lab = lab_or_skip!("db_crash", PREREQUISITES);
    let p = pair(&lab);
    let (d1, d2) = start_pair(&lab, &p, &DbPairSettings::default());
    wait_for("VIP on n1", Duration::from_secs(15), || {
        p.n1.has_address(VIP)
    });
    assert!(!p.n2.has_address(VIP));
    assert!(
        write_through_vip(&p.client, 1),
        "a write through the VIP before the fault"
    );
    let standby_seen = wait_until(
        Duration::from_secs(5),
        Duration::from_millis(50),
        "n2 reports a standby",
        || db_field(&p.n2, "role") == "standby",
    );
    assert!(standby_seen.is_ok(), "n2 status: {:?}", status(&p.n2));

    let crash = Instant::now();
    p.primary.kill9().expect("kill -9 the primary's postmaster");
    let vip_moved = wait_for("VIP on n2", Duration::from_secs(20), || {
        p.n2.has_address(VIP)
    });
    let mut id = 2;
    wait_for("a write through the VIP", Duration::from_secs(10), || {
        id += 1;
        write_through_vip(&p.client, id)
    });
    let first_write = crash.elapsed();
    println!("database crash: VIP on n2 after {vip_moved:?}, first committed write after {first_write:?}");
    assert!(
        !p.standby.is_in_recovery().expect("query n2"),
        "n2 was promoted"
    );
    assert_eq!(db_field(&p.n2, "role"), "primary");
    // The old node does not take the VIP back.
    std::thread::sleep(Duration::from_secs(2));
    assert!(!p.n1.has_address(VIP), "{}", dump_logs(&[&d1, &d2]));
    assert!(p.n2.has_address(VIP));
}

/// Samples `host.has_address(VIP)` every 20 ms on a background thread until dropped; counts the
/// samples in which the host held the VIP.
struct VipWatch {
    stop: Arc<AtomicBool>,
    held: Arc<AtomicU32>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl VipWatch {
    fn start(host: &Host) -> VipWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicU32::new(0));
        let thread = {
            let (host, stop, held) = (host.clone(), Arc::clone(&stop), Arc::clone(&held));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if host.has_address(VIP) {
                        held.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        VipWatch {
            stop,
            held,
            thread: Some(thread),
        }
    }

    /// Samples so far in which the host held the VIP.
    fn held(&self) -> u32 {
        self.held.load(Ordering::Relaxed)
    }
}

impl Drop for VipWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The pair running, n1 serving the VIP, n2 a healthy standby, one write through the VIP done.
fn serving(lab: &Lab, p: &Pair, settings: &DbPairSettings) -> (Process, Process) {
    let (d1, d2) = start_pair(lab, p, settings);
    let settled = wait_until(
        Duration::from_secs(15),
        Duration::from_millis(10),
        "VIP on n1",
        || p.n1.has_address(VIP),
    );
    assert!(settled.is_ok(), "{}", dump_logs(&[&d1, &d2]));
    let standby_seen = wait_until(
        Duration::from_secs(5),
        Duration::from_millis(50),
        "n2 reports a healthy standby",
        || db_field(&p.n2, "role") == "standby" && db_field(&p.n2, "healthy") == true,
    );
    assert!(standby_seen.is_ok(), "n2 status: {:?}", status(&p.n2));
    assert!(!p.n2.has_address(VIP));
    assert!(
        write_through_vip(&p.client, 1),
        "a write through the VIP before the fault"
    );
    (d1, d2)
}

/// Waits for `f`, failing with the daemons' logs.
fn wait_logged(
    what: &str,
    deadline: Duration,
    daemons: &[&Process],
    f: impl FnMut() -> bool,
) -> Duration {
    wait_until(deadline, Duration::from_millis(10), what, f)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", dump_logs(daemons)))
}

/// Writes through the VIP (ids from `first` up) until one commits.
fn first_write(client: &Host, first: u64, deadline: Duration, daemons: &[&Process]) -> Duration {
    let mut id = first;
    wait_logged("a write through the VIP", deadline, daemons, || {
        id += 1;
        write_through_vip(client, id)
    })
}

/// The `detail` of every event of `kind` in the node's `/status`.
fn events(host: &Host, kind: &str) -> Vec<String> {
    status(host)
        .and_then(|s| s["events"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|e| e["kind"] == kind)
        .filter_map(|e| e["detail"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn link_loss_of_the_master_promotes_after_confirmation_and_fences_the_old_master() {
    let lab = lab_or_skip!("link_loss", PREREQUISITES);
    let p = pair(&lab);
    let settings = DbPairSettings {
        confirmation: "1s",
        witness: Some(CLIENT),
        ..DbPairSettings::default()
    };
    let (d1, d2) = serving(&lab, &p, &settings);
    let logs = [&d1, &d2];

    let fault = Instant::now();
    lab.link_down(&p.n1).expect("n1's link down");
    let vip_moved = wait_logged("VIP on n2", Duration::from_secs(20), &logs, || {
        p.n2.has_address(VIP)
    });
    first_write(&p.client, 1, Duration::from_secs(10), &logs);
    let written = fault.elapsed();
    wait_logged(
        "n1's database stopped",
        Duration::from_secs(10),
        &logs,
        || !db_running(&p.primary),
    );
    let fenced = fault.elapsed();
    println!(
        "link loss of the master: VIP on n2 after {vip_moved:?}, first committed write after \
         {written:?}; n1's database stopped after {fenced:?}"
    );
    // Promotion waited out the confirmation time (counted from the last answer of n1's database,
    // at most one probe interval before the fault).
    assert!(
        vip_moved >= Duration::from_millis(800),
        "promoted before the 1 s confirmation: {vip_moved:?}"
    );
    assert!(
        !p.standby.is_in_recovery().expect("query n2"),
        "n2 promoted"
    );
    assert!(!p.n1.has_address(VIP));
    let n1 = status(&p.n1).expect("n1's status");
    assert_eq!(n1["database"]["fenced"], "Isolated", "{n1}");

    // The link comes back: the old master, fenced, does not take the VIP back.
    lab.link_up(&p.n1).expect("n1's link up");
    let watch = VipWatch::start(&p.n1);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        watch.held(),
        0,
        "n1 took the VIP back\n{}",
        dump_logs(&logs)
    );
    assert!(p.n2.has_address(VIP));
    assert!(!db_running(&p.primary), "n1's database stays fenced");
    first_write(&p.client, 100, Duration::from_secs(5), &logs);
}

#[test]
fn daemon_sigkill_on_the_master_with_a_healthy_database_does_not_promote() {
    daemon_sigkill_on_the_master("daemon_kill", "3s");
}

#[test]
fn daemon_sigkill_on_the_master_does_not_promote_in_the_fast_profile_either() {
    daemon_sigkill_on_the_master("daemon_kill_fast", "0s");
}

/// kill -9 of n1's daemon, its database healthy, with the given confirmation time.
fn daemon_sigkill_on_the_master(name: &str, confirmation: &'static str) {
    let lab = lab_or_skip!(name, PREREQUISITES);
    let p = pair(&lab);
    let settings = DbPairSettings {
        confirmation,
        ..DbPairSettings::default()
    };
    let (d1, d2) = serving(&lab, &p, &settings);
    let logs = [&d1, &d2];

    let fault = Instant::now();
    d1.kill9();
    let n2_vip = VipWatch::start(&p.n2);
    let mut hold_seen = None;
    let mut id = 10;
    while fault.elapsed() < Duration::from_secs(5) {
        let n2 = status(&p.n2);
        let hold = n2
            .as_ref()
            .and_then(|s| s["database"]["promotion_hold"].as_str().map(str::to_owned));
        if hold_seen.is_none() && hold.as_deref() == Some("PeerPrimaryAlive") {
            hold_seen = Some(fault.elapsed());
        }
        assert!(p.n1.has_address(VIP), "kill -9 leaves the VIP on n1");
        id += 1;
        assert!(
            write_through_vip(&p.client, id),
            "write {id} through the VIP failed\n{}",
            dump_logs(&logs)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let n2 = status(&p.n2).expect("n2's status");
    println!(
        "daemon SIGKILL on the master (confirmation {confirmation}): n2 VRRP {} after 5 s, promotion hold PeerPrimaryAlive \
         first seen after {hold_seen:?}, {} writes through the VIP committed",
        n2["vrrp"]["state"],
        id - 10
    );
    assert_eq!(n2_vip.held(), 0, "n2 took the VIP\n{}", dump_logs(&logs));
    assert!(
        p.standby.is_in_recovery().expect("query n2"),
        "n2 was promoted beside a live primary\n{}",
        dump_logs(&logs)
    );
    assert!(
        hold_seen.is_some(),
        "n2 never reported the PeerPrimaryAlive hold: {n2}"
    );
    assert_eq!(n2["vrrp"]["state"], "MASTER", "{n2}");
    assert!(events(&p.n2, "promotion").is_empty(), "{n2}");
}

/// A promotion command that cannot promote: attempts, retries, then the mastership is released;
/// n2 never holds the VIP over its read-only database.
fn promotion_that_cannot_succeed(name: &str, argv: &str, timeout: &'static str) {
    let lab = lab_or_skip!(name, PREREQUISITES);
    let p = pair(&lab);
    let settings = DbPairSettings {
        promote: Some((argv.to_string(), timeout)),
        ..DbPairSettings::default()
    };
    let (d1, d2) = serving(&lab, &p, &settings);
    let logs = [&d1, &d2];
    let n2_vip = VipWatch::start(&p.n2);

    let crash = Instant::now();
    p.primary.kill9().expect("kill -9 the primary's postmaster");
    wait_logged(
        "n2 starts promoting",
        Duration::from_secs(10),
        &logs,
        || !events(&p.n2, "promotion").is_empty(),
    );
    let first_attempt = crash.elapsed();
    wait_logged(
        "n2 gives the promotion up",
        Duration::from_secs(30),
        &logs,
        || db_field(&p.n2, "promotion_gave_up") == true,
    );
    let gave_up = crash.elapsed();
    // Long enough for a resigned node to be elected again and, if it were to, retry.
    std::thread::sleep(Duration::from_secs(4));
    let n2 = status(&p.n2).expect("n2's status");
    let attempts = events(&p.n2, "promotion");
    println!(
        "promotion {argv} (timeout {timeout}): first attempt {first_attempt:?} after the crash, \
         gave up after {gave_up:?}; {} attempts; n2 VRRP {} at priority {}",
        attempts.len(),
        n2["vrrp"]["state"],
        n2["vrrp"]["priority"]
    );
    assert_eq!(n2_vip.held(), 0, "n2 held the VIP\n{}", dump_logs(&logs));
    assert!(!p.n2.has_address(VIP));
    assert!(!p.n1.has_address(VIP));
    assert!(p.standby.is_in_recovery().expect("query n2"));
    assert_eq!(n2["database"]["promotion_gave_up"], true, "{n2}");
    assert_eq!(
        attempts,
        [
            "attempt 1 started",
            "attempt 2 started",
            "attempt 3 started"
        ],
        "three attempts, no more\n{}",
        dump_logs(&logs)
    );
    assert!(
        events(&p.n2, "policy")
            .iter()
            .any(|e| e.contains("attempt 3 failed") && e.contains("giving up")),
        "{n2}"
    );
    assert!(d2
        .log_contents()
        .contains("giving up and releasing the mastership"));
    assert!(
        n2["vrrp"]["counters"]["priority_zero_sent"].as_u64() >= Some(1),
        "the mastership was released with a priority-0 advert: {n2}"
    );
    assert!(crash.elapsed() < Duration::from_secs(40));
}

#[test]
fn a_failing_promotion_command_releases_the_mastership() {
    promotion_that_cannot_succeed("promote_fails", r#"["/bin/false"]"#, "5s");
}

#[test]
fn a_hanging_promotion_command_is_bounded_and_releases_the_mastership() {
    promotion_that_cannot_succeed("promote_hangs", r#"["/bin/sleep", "600"]"#, "1s");
}

/// A promote command that goes on after the database left recovery does not hold the VIP back:
/// the write that proves the promotion is tried while the command runs (postgres flavor).
#[test]
fn the_vip_moves_once_the_database_is_writable_even_if_the_promote_command_lingers() {
    use std::os::unix::fs::PermissionsExt;
    let lab = lab_or_skip!("promote_lingers", PREREQUISITES);
    let p = pair(&lab);
    let standin = lab.dir().join("promote-then-linger");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/standins/promote-then-linger"
        ),
        &standin,
    )
    .expect("copying the promote stand-in");
    std::fs::set_permissions(&standin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let linger_s = 20;
    let settings = DbPairSettings {
        promote: Some((
            format!(
                r#"["{}", "{PG_BIN_DIR}/pg_ctl", "{{data_directory}}", "{linger_s}"]"#,
                standin.display()
            ),
            "60s",
        )),
        ..DbPairSettings::default()
    };
    let (d1, d2) = serving(&lab, &p, &settings);
    let logs = [&d1, &d2];

    let crash = Instant::now();
    p.primary.kill9().expect("kill -9 the primary's postmaster");
    wait_logged("VIP on n2", Duration::from_secs(15), &logs, || {
        p.n2.has_address(VIP)
    });
    let vip_after = crash.elapsed();
    first_write(&p.client, 1, Duration::from_secs(5), &logs);
    let write_after = crash.elapsed();
    println!(
        "promote command lingering {linger_s} s: VIP on n2 after {vip_after:?}, first write \
         after {write_after:?}"
    );
    assert!(
        write_after < Duration::from_secs(linger_s / 2),
        "the failover waited for the promote command\n{}",
        dump_logs(&logs)
    );
    assert!(
        d2.log_contents().contains("left to finish on its own"),
        "{}",
        dump_logs(&logs)
    );
    let n2 = status(&p.n2).expect("n2's status");
    assert_eq!(n2["database"]["role"], "primary", "{n2}");
}

#[test]
fn an_old_primary_restarted_after_a_failover_is_fenced_and_needs_rejoin() {
    let lab = lab_or_skip!("old_primary", PREREQUISITES);
    let p = pair(&lab);
    let (d1, d2) = serving(&lab, &p, &DbPairSettings::default());
    let logs = [&d1, &d2];

    p.primary.kill9().expect("kill -9 the primary's postmaster");
    wait_logged("VIP on n2", Duration::from_secs(20), &logs, || {
        p.n2.has_address(VIP)
    });
    first_write(&p.client, 1, Duration::from_secs(10), &logs);
    assert!(!p.standby.is_in_recovery().expect("query n2"));

    // The old primary comes back on its old timeline, n1's daemon still running.
    let n1_vip = VipWatch::start(&p.n1);
    let restart = Instant::now();
    if let Err(e) = p.primary.start() {
        // The fence may stop it before pg_ctl saw it ready.
        println!("starting the old primary: {e:#}");
    }
    let started = restart.elapsed();
    wait_logged(
        "n1 fenced and needs rejoin",
        Duration::from_secs(15),
        &logs,
        || db_field(&p.n1, "needs_rejoin") == true && !db_running(&p.primary),
    );
    let fenced = restart.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let n1 = status(&p.n1).expect("n1's status");
    println!(
        "old primary restarted: pg_ctl start returned after {started:?}, fenced with needs_rejoin \
         after {fenced:?}; n1 VRRP {}",
        n1["vrrp"]["state"]
    );
    assert_eq!(n1_vip.held(), 0, "n1 held the VIP\n{}", dump_logs(&logs));
    assert!(!db_running(&p.primary), "the old primary stays stopped");
    assert_eq!(n1["database"]["needs_rejoin"], true, "{n1}");
    assert!(
        n1["database"]["fenced"]
            .as_str()
            .is_some_and(|f| f.starts_with("OlderTimeline")),
        "{n1}"
    );
    assert!(p.n2.has_address(VIP));
    first_write(&p.client, 100, Duration::from_secs(5), &logs);
}

#[test]
fn an_isolated_master_fences_its_database_and_drops_the_vip() {
    let lab = lab_or_skip!("isolation", PREREQUISITES);
    let p = pair(&lab);
    let settings = DbPairSettings {
        witness: Some(CLIENT),
        ..DbPairSettings::default()
    };
    let (d1, d2) = serving(&lab, &p, &settings);
    let logs = [&d1, &d2];

    let fault = Instant::now();
    lab.partition(&p.n1, &p.n2).expect("cut n1 from n2");
    lab.partition(&p.n1, &p.client)
        .expect("cut n1 from the client");
    let mut vip_dropped = None;
    let mut fenced = None;
    let mut vip_moved = None;
    wait_logged(
        "n1 fenced, the VIP on n2",
        Duration::from_secs(20),
        &logs,
        || {
            if vip_dropped.is_none() && !p.n1.has_address(VIP) {
                vip_dropped = Some(fault.elapsed());
            }
            if fenced.is_none() && !db_running(&p.primary) {
                fenced = Some(fault.elapsed());
            }
            if vip_moved.is_none() && p.n2.has_address(VIP) {
                vip_moved = Some(fault.elapsed());
            }
            vip_dropped.is_some() && fenced.is_some() && vip_moved.is_some()
        },
    );
    let (vip_dropped, fenced, vip_moved) = (
        vip_dropped.unwrap_or_default(),
        fenced.unwrap_or_default(),
        vip_moved.unwrap_or_default(),
    );
    first_write(&p.client, 1, Duration::from_secs(10), &logs);
    let written = fault.elapsed();
    let n1 = status(&p.n1).expect("n1's status");
    println!(
        "isolation of the master: n1's database stopped after {fenced:?}, VIP off n1 after \
         {vip_dropped:?}, on n2 after {vip_moved:?}, first committed write after {written:?}"
    );
    assert_eq!(n1["database"]["isolated"], true, "{n1}");
    assert_eq!(n1["database"]["fenced"], "Isolated", "{n1}");
    assert!(
        vip_dropped < vip_moved && fenced < vip_moved,
        "the isolated side drops the VIP and is fenced before the other side promotes"
    );

    // After the heal the fenced node stays out.
    lab.heal(&p.n1, &p.n2).expect("heal n1-n2");
    lab.heal(&p.n1, &p.client).expect("heal n1-client");
    let watch = VipWatch::start(&p.n1);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        watch.held(),
        0,
        "n1 took the VIP back\n{}",
        dump_logs(&logs)
    );
    assert!(!db_running(&p.primary));
    assert!(p.n2.has_address(VIP));

    // The fence job's report reached n1's journal and its /status events.
    let journal = lab.dir().join("n1.journal").join("journal.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap_or_default();
    assert!(
        text.contains("fenced the local database (Isolated)"),
        "n1's journal {}:\n{text}",
        journal.display()
    );
    let events = status(&p.n1).expect("n1's status")["events"].to_string();
    assert!(events.contains("fenced the local database"), "{events}");
}

#[test]
fn a_network_blip_shorter_than_the_confirmation_leaves_the_pair_as_it_was() {
    let lab = lab_or_skip!("blip", PREREQUISITES);
    let p = pair(&lab);
    let (d1, d2) = serving(&lab, &p, &DbPairSettings::default());
    let logs = [&d1, &d2];
    let n2_vip = VipWatch::start(&p.n2);

    lab.partition(&p.n1, &p.n2).expect("partition");
    std::thread::sleep(Duration::from_secs(1));
    lab.heal(&p.n1, &p.n2).expect("heal");
    let healed = Instant::now();
    let streaming = p
        .standby
        .wait_for_sql(
            "SELECT status FROM pg_stat_wal_receiver",
            "streaming",
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("{e:#}\n{}", dump_logs(&logs)));
    // Past the confirmation time of the blip.
    std::thread::sleep(Duration::from_secs(4).saturating_sub(healed.elapsed()));
    let n2 = status(&p.n2).expect("n2's status");
    println!(
        "1 s blip: n2 streaming {streaming:?} after the heal; n2 VRRP {} 4 s after",
        n2["vrrp"]["state"]
    );
    assert_eq!(n2_vip.held(), 0, "n2 took the VIP\n{}", dump_logs(&logs));
    assert!(p.n1.has_address(VIP), "the VIP stays on n1");
    assert!(
        p.standby.is_in_recovery().expect("query n2"),
        "n2 not promoted"
    );
    assert!(events(&p.n2, "promotion").is_empty(), "{n2}");
    assert_eq!(n2["vrrp"]["state"], "BACKUP", "{n2}");
    first_write(&p.client, 10, Duration::from_secs(5), &logs);
    p.standby
        .wait_for_sql(
            "SELECT status FROM pg_stat_wal_receiver",
            "streaming",
            Duration::from_secs(5),
        )
        .expect("n2 still streams");
}

#[test]
fn both_daemons_started_together_ten_times_never_promote_the_standby() {
    let lab = lab_or_skip!("simultaneous", PREREQUISITES);
    let p = pair(&lab);
    let settings = DbPairSettings::default();
    let c1 = db_pair_config(&settings, &p.primary, &nodes());
    let c2 = db_pair_config(&settings, &p.standby, &nodes());
    let mut settle_times = Vec::new();
    for run in 0..10 {
        let barrier = std::sync::Barrier::new(2);
        let (d1, d2) = std::thread::scope(|s| {
            let a = s.spawn(|| {
                barrier.wait();
                start_daemon(&lab, &p.n1, "n1", &c1)
            });
            let b = s.spawn(|| {
                barrier.wait();
                start_daemon(&lab, &p.n2, "n2", &c2)
            });
            (a.join().expect("n1"), b.join().expect("n2"))
        });
        let logs = [&d1, &d2];
        let settled = wait_logged(
            &format!("run {run}: VIP on n1"),
            Duration::from_secs(15),
            &logs,
            || p.n1.has_address(VIP),
        );
        // Let the election settle past a few master-down intervals.
        std::thread::sleep(Duration::from_millis(700));
        settle_times.push(settled);
        assert!(
            p.standby.is_in_recovery().expect("query n2"),
            "run {run}: n2 promoted\n{}",
            dump_logs(&logs)
        );
        assert!(p.n1.has_address(VIP), "run {run}");
        assert!(!p.n2.has_address(VIP), "run {run}");
        assert!(events(&p.n2, "promotion").is_empty(), "run {run}");
        assert!(
            write_through_vip(&p.client, 1000 + run),
            "run {run}: write through the VIP"
        );
        d1.sigterm().expect("SIGTERM n1");
        d2.sigterm().expect("SIGTERM n2");
        for d in logs {
            d.wait_exit(Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("run {run}: {e:#}"));
        }
        assert!(
            p.standby.is_in_recovery().expect("query n2"),
            "run {run}: n2 promoted while stopping\n{}",
            dump_logs(&logs)
        );
        assert!(!p.n1.has_address(VIP) && !p.n2.has_address(VIP));
    }
    println!("simultaneous starts: VIP on n1 after {settle_times:?}");
}

#[test]
fn warehousepg_flavor_promotes_with_gpactivatestandby() {
    let lab = lab_or_skip!("whpg_flavor", PREREQUISITES);
    let p = pair(&lab);
    let greenplum_path = fake_gphome(&lab);
    let settings = DbPairSettings {
        flavor: "warehousepg",
        greenplum_path: Some(greenplum_path.display().to_string()),
        ..DbPairSettings::default()
    };
    let d1 = start_daemon(
        &lab,
        &p.n1,
        "n1",
        &db_pair_config_with_bin_dir(&settings, &p.primary, &nodes(), None),
    );
    let d2 = start_daemon(
        &lab,
        &p.n2,
        "n2",
        &db_pair_config_with_bin_dir(&settings, &p.standby, &nodes(), None),
    );
    let logs = [&d1, &d2];
    wait_logged("VIP on n1", Duration::from_secs(15), &logs, || {
        p.n1.has_address(VIP)
    });
    wait_logged(
        "n2 reports a standby",
        Duration::from_secs(5),
        &logs,
        || db_field(&p.n2, "role") == "standby" && db_field(&p.n2, "healthy") == true,
    );

    let crash = Instant::now();
    p.primary.kill9().expect("kill -9 the primary's postmaster");
    let vip_moved = wait_logged("VIP on n2", Duration::from_secs(20), &logs, || {
        p.n2.has_address(VIP)
    });
    first_write(&p.client, 1, Duration::from_secs(10), &logs);
    let written = crash.elapsed();
    println!(
        "warehousepg flavor: VIP on n2 after {vip_moved:?}, first committed write after {written:?}"
    );
    assert!(!p.standby.is_in_recovery().expect("query n2"));
    let log = d2.log_contents();
    assert!(
        log.contains("gpactivatestandby"),
        "n2 ran gpactivatestandby\n{log}"
    );
    assert!(
        !log.contains("[CRITICAL]"),
        "the stand-in refused our command line or environment\n{log}"
    );
    assert_eq!(
        events(&p.n2, "promotion"),
        ["attempt 1 started"],
        "promoted at the first attempt\n{log}"
    );
}

#[test]
fn graceful_stop_of_the_master_daemon_with_a_healthy_database_does_not_promote() {
    let lab = lab_or_skip!("daemon_stop", PREREQUISITES);
    let p = pair(&lab);
    let settings = DbPairSettings::default();
    let c1 = db_pair_config(&settings, &p.primary, &nodes());
    let (d1, d2) = serving(&lab, &p, &settings);
    let mut d1 = d1;
    let n2_vip = VipWatch::start(&p.n2);
    for round in 0..5 {
        // SIGTERM: n1 resigns with a priority-0 advert (the "certain" path on n2), the
        // database stays up.
        d1.sigterm().expect("SIGTERM n1");
        d1.wait_exit(Duration::from_secs(10)).expect("n1 exits");
        std::thread::sleep(Duration::from_millis(1500));
        assert!(
            p.standby.is_in_recovery().expect("query n2"),
            "round {round}: n2 was promoted beside a live primary\n{}",
            dump_logs(&[&d1, &d2])
        );
        d1 = start_daemon(&lab, &p.n1, "n1", &c1);
        wait_logged(
            &format!("round {round}: VIP back on n1"),
            Duration::from_secs(15),
            &[&d1, &d2],
            || p.n1.has_address(VIP),
        );
    }
    assert_eq!(n2_vip.held(), 0, "n2 held the VIP");
}
