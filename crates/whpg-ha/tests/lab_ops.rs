//! Planned switchover and rejoin in the namespace lab, with a PostgreSQL 15 pair and the CLI run
//! on a lab host: no acknowledged commit lost under a steady write load, a crashed primary rebuilt
//! as a streaming standby, and bad requests refused with the pair left as it was.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::daemon::{code, dump_logs, start_daemon, status, API_PORT};
use common::in_netns;
use common::pg::{
    db_pair_builder, fake_gphome, nodes, pair, write_through_vip, DbPairSettings, Pair, VIP,
};
use whpg_ha::client::Request;
use whpg_ha::config::testing::TestConfig;
use whpg_lab::postgres::{PG_BIN_DIR, PG_OS_USER};
use whpg_lab::{lab_or_skip, wait_until, Host, Lab, PgNode, Process};

const PREREQUISITES: &[&str] = &["user:postgres", "/usr/lib/postgresql/15/bin/initdb"];
const TOKEN: &str = "lab-ops-token-0123456789abcdef0123456789";

/// The configuration of one node: the API on every address with a token file, and a start
/// command that keeps this node's own socket directory and name (a base backup copies the
/// primary's `postgresql.conf`, and the lab hosts share one file system).
fn config(lab: &Lab, db: &PgNode, name: &str) -> String {
    let config = db_pair_builder(&DbPairSettings::default(), db, &nodes(), Some(PG_BIN_DIR));
    with_api_and_start(lab, config, db, name).to_toml()
}

/// `config` with the API on every address (with a token file) and this node's start command.
fn with_api_and_start(lab: &Lab, config: TestConfig, db: &PgNode, name: &str) -> TestConfig {
    let token = lab
        .write_file("token", &format!("{TOKEN}\n"))
        .expect("writing the token file");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let own = format!(
        "-c unix_socket_directories={} -c cluster_name={name}",
        db.socket_dir().display()
    );
    let pg_ctl = format!("{PG_BIN_DIR}/pg_ctl");
    config
        .api(&[&format!("0.0.0.0:{API_PORT}")], Some(&token))
        .command(
            "start",
            &[
                &pg_ctl,
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                "{data_directory}",
                "-l",
                "{data_directory}/whpg-ha-start.log",
                "-o",
                &own,
            ],
            None,
        )
}

fn start_pair(lab: &Lab, p: &Pair) -> (Process, Process) {
    let d1 = start_daemon(lab, &p.n1, "n1", &config(lab, &p.primary, "n1"));
    let d2 = start_daemon(lab, &p.n2, "n2", &config(lab, &p.standby, "n2"));
    (d1, d2)
}

fn wait_logged(what: &str, limit: Duration, daemons: &[&Process], f: impl FnMut() -> bool) {
    wait_until(limit, Duration::from_millis(50), what, f)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", dump_logs(daemons)));
}

/// The pair settled: n1 serves the VIP, n2 is a streaming standby.
fn settle(p: &Pair, daemons: &[&Process]) {
    wait_logged("VIP on n1", Duration::from_secs(20), daemons, || {
        p.n1.has_address(VIP)
    });
    wait_logged("/primary on n1", Duration::from_secs(10), daemons, || {
        code(&p.n1, "/primary") == Some(200)
    });
    wait_logged("/standby on n2", Duration::from_secs(10), daemons, || {
        code(&p.n2, "/standby") == Some(200)
    });
}

/// `whpg-ha ARGS --config <node's file> --node NODE` run inside `host`.
fn cli(host: &Host, lab: &Lab, node: &str, args: &[&str], limit: Duration) -> (bool, String) {
    let config = lab.dir().join(format!("{node}.toml"));
    let config = config.to_string_lossy().into_owned();
    let mut argv = vec![env!("CARGO_BIN_EXE_whpg-ha")];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--config", config.as_str(), "--node", node]);
    // The lab's API has no TLS; its network is the test's own namespaces.
    argv.push("--insecure-token-over-http");
    let output = host.exec_timeout(&argv, limit).expect("running the CLI");
    (
        output.success(),
        format!("{}{}", output.stdout, output.stderr),
    )
}

/// Who serves: (n1 holds the VIP, n2 holds it, n1 /primary, n2 /standby).
fn layout(p: &Pair) -> (bool, bool, Option<u16>, Option<u16>) {
    (
        p.n1.has_address(VIP),
        p.n2.has_address(VIP),
        code(&p.n1, "/primary"),
        code(&p.n2, "/standby"),
    )
}

/// INSERTs through the VIP from the client every ~30 ms, each on its own connection; records
/// the acknowledged ids with the time of their acknowledgement.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(u64, Instant)>>>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Writer {
    fn start(client: &Host, first_id: u64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (client, stop, acked) = (client.clone(), Arc::clone(&stop), Arc::clone(&acked));
            std::thread::spawn(move || {
                let mut id = first_id;
                while !stop.load(Ordering::Relaxed) {
                    if write_through_vip(&client, id) {
                        acked.lock().unwrap().push((id, Instant::now()));
                    }
                    id += 1;
                    std::thread::sleep(Duration::from_millis(30));
                }
                id - first_id
            })
        };
        Writer {
            stop,
            acked,
            thread: Some(thread),
        }
    }

    /// Stop; the acknowledged ids and how many writes were tried.
    fn finish(mut self) -> (Vec<(u64, Instant)>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let tried = self.thread.take().map_or(0, |t| t.join().expect("writer"));
        let acked = std::mem::take(&mut *self.acked.lock().unwrap());
        (acked, tried)
    }
}

fn ids_on(db: &PgNode) -> std::collections::BTreeSet<u64> {
    db.psql("SELECT id FROM writes")
        .expect("reading the writes")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn switchover_under_a_steady_write_load_loses_no_acknowledged_commit() {
    let lab = lab_or_skip!("ops_switchover", PREREQUISITES);
    let p = pair(&lab);
    let (d1, d2) = start_pair(&lab, &p);
    let daemons = [&d1, &d2];
    settle(&p, &daemons);

    let writer = Writer::start(&p.client, 1000);
    wait_logged(
        "writes acknowledged",
        Duration::from_secs(10),
        &daemons,
        || writer.acked.lock().unwrap().len() >= 10,
    );
    let (ok, out) = cli(
        &p.n1,
        &lab,
        "n1",
        &["switchover", "--yes"],
        Duration::from_secs(240),
    );
    let cli_done = Instant::now();
    println!("whpg-ha switchover --yes:\n{out}");
    assert!(ok, "switchover failed:\n{out}\n{}", dump_logs(&daemons));
    // Keep writing on the new primary until a write is acknowledged there (bounded: a loaded
    // machine makes each client connection slow, and a fixed wait would flake).
    wait_logged(
        "a write acknowledged after the switchover",
        Duration::from_secs(30),
        &daemons,
        || {
            writer
                .acked
                .lock()
                .unwrap()
                .iter()
                .any(|(_, at)| *at > cli_done)
        },
    );
    let (acked, tried) = writer.finish();

    assert!(p.n2.has_address(VIP) && !p.n1.has_address(VIP));
    assert_eq!(code(&p.n2, "/primary"), Some(200));
    assert!(!p.standby.is_in_recovery().expect("query n2"));
    let present = ids_on(&p.standby);
    let lost: Vec<u64> = acked
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !present.contains(id))
        .collect();
    let gap = acked
        .windows(2)
        .map(|w| w[1].1.duration_since(w[0].1))
        .max()
        .unwrap_or_default();
    println!(
        "writes tried {tried}, acknowledged {}, lost {}, longest gap between acknowledged writes {:.3} s",
        acked.len(),
        lost.len(),
        gap.as_secs_f64()
    );
    assert!(lost.is_empty(), "acknowledged but missing on n2: {lost:?}");
    assert!(
        acked.iter().any(|(_, at)| *at > cli_done),
        "no write acknowledged after the switchover"
    );
    assert!(gap < Duration::from_secs(10), "write gap {gap:?}");
    let maint = status(&p.n2).map(|s| s["database"]["maintenance"].clone());
    assert_eq!(maint, Some(serde_json::Value::Bool(false)));
    assert!(out.contains("write gap"), "{out}");
}

#[test]
fn rejoin_after_a_failover_restores_streaming() {
    let lab = lab_or_skip!("ops_rejoin", PREREQUISITES);
    let p = pair(&lab);
    let (d1, d2) = start_pair(&lab, &p);
    let daemons = [&d1, &d2];
    settle(&p, &daemons);

    p.primary.kill9().expect("kill -9 the primary's postmaster");
    wait_logged("failover to n2", Duration::from_secs(30), &daemons, || {
        p.n2.has_address(VIP) && code(&p.n2, "/primary") == Some(200)
    });
    assert!(write_through_vip(&p.client, 2001));

    let (ok, out) = cli(&p.n1, &lab, "n1", &["rejoin"], Duration::from_secs(240));
    println!("whpg-ha rejoin:\n{out}");
    assert!(ok, "rejoin failed:\n{out}\n{}", dump_logs(&daemons));

    assert_eq!(code(&p.n1, "/standby"), Some(200));
    let db = status(&p.n1).expect("n1 status")["database"].clone();
    assert_eq!(db["needs_rejoin"], false, "{db}");
    assert!(db["fenced"].is_null(), "{db}");
    let data_dir = p.primary.data_dir();
    let prefix = format!(
        "{}.whpg-ha-",
        data_dir.file_name().unwrap().to_string_lossy()
    );
    let aside: Vec<PathBuf> = std::fs::read_dir(data_dir.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        })
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(aside[0].join("PG_VERSION").exists(), "{aside:?}");
    // A new write reaches the rebuilt standby.
    assert!(write_through_vip(&p.client, 2002));
    p.primary
        .wait_for_sql(
            "SELECT count(*) FROM writes WHERE id = 2002",
            "1",
            Duration::from_secs(10),
        )
        .expect("the rebuilt standby replays new writes");
    // The pair is healthy again with the roles swapped.
    assert_eq!(code(&p.n2, "/primary"), Some(200));
    assert!(p.n2.has_address(VIP) && !p.n1.has_address(VIP));
}

#[test]
fn bad_switchover_and_rejoin_requests_are_refused_and_change_nothing() {
    let lab = lab_or_skip!("ops_refusals", PREREQUISITES);
    let p = pair(&lab);
    let (d1, d2) = start_pair(&lab, &p);
    let daemons = [&d1, &d2];
    settle(&p, &daemons);
    let before = (true, false, Some(200), Some(200));
    assert_eq!(layout(&p), before);
    let minute = Duration::from_secs(60);

    let (ok, out) = cli(
        &p.n2,
        &lab,
        "n2",
        &["switchover", "--to", "n1", "--yes"],
        minute,
    );
    println!("switchover --to n1:\n{out}");
    assert!(!ok && out.contains("n1 is not the standby"), "{out}");
    assert_eq!(layout(&p), before);

    let (ok, out) = cli(&p.n1, &lab, "n1", &["switchover"], minute);
    println!("switchover without --yes and without a terminal:\n{out}");
    assert!(!ok && out.contains("--yes"), "{out}");
    assert_eq!(layout(&p), before);
    let maint = status(&p.n2).map(|s| s["database"]["maintenance"].clone());
    assert_eq!(maint, Some(serde_json::Value::Bool(false)));

    let (ok, out) = cli(&p.n1, &lab, "n1", &["rejoin"], minute);
    println!("rejoin on the active primary:\n{out}");
    assert!(!ok && out.contains("is the active primary"), "{out}");
    assert!(data_dir_untouched(&p.primary));
    assert_eq!(layout(&p), before);

    // Plain HTTP across the lab network: the client must be told to send a token in clear.
    let clear = whpg_ha::client::Settings {
        allow_clear_token: true,
        ..Default::default()
    };
    let response = in_netns(p.n2.netns(), || {
        whpg_ha::client::send_with(
            &clear,
            ([10, 77, 0, 11], API_PORT).into(),
            &Request::post_json("/switchover/demote", "{}", Some("wrong-token")),
            Duration::from_secs(3),
        )
    })
    .expect("the API answers");
    println!(
        "/switchover/demote with a wrong token: {} {}",
        response.status, response.body
    );
    assert_eq!(response.status, 401);
    assert_eq!(layout(&p), before);

    // The standby's database stopped: its WAL receiver does not stream.
    p.standby.stop_fast().expect("stop the standby's database");
    wait_logged(
        "/standby 503 on n2",
        Duration::from_secs(10),
        &daemons,
        || code(&p.n2, "/standby") == Some(503),
    );
    let (ok, out) = cli(&p.n1, &lab, "n1", &["switchover", "--yes"], minute);
    println!("switchover with the standby stopped:\n{out}");
    assert!(!ok && out.contains("not streaming"), "{out}");
    assert_eq!(layout(&p), (true, false, Some(200), Some(503)));
    assert!(p.n1.has_address(VIP));
    assert!(!p.primary.is_in_recovery().expect("n1 is still the primary"));
}

/// `POST path` with `body` and the token to the daemon of `host`, over its loopback.
fn api_post(host: &Host, path: &str, body: &str, limit: Duration) -> whpg_ha::client::Response {
    in_netns(host.netns(), || {
        whpg_ha::client::send(
            ([127, 0, 0, 1], API_PORT).into(),
            &Request::post_json(path, body, Some(TOKEN)),
            limit,
        )
    })
    .expect("the API answers")
}

/// The attack of a token-holding caller that skips the clean stop: ask the standby to promote
/// "from 0/0" while the old primary's database runs and is writable. The standby's daemon asks
/// the old primary's daemon for the shutdown checkpoint itself and refuses: first without the
/// operator's leave to send the token in clear, then because that daemon answers that its
/// database is running ("in production"), then — with the primary's daemon frozen, so the
/// standby is VRRP master — because no daemon answers for the old primary at all.
#[test]
fn a_planned_promotion_beside_a_live_primary_is_refused() {
    let lab = lab_or_skip!("ops_live_primary", PREREQUISITES);
    let p = pair(&lab);
    let (d1, d2) = start_pair(&lab, &p);
    let daemons = [&d1, &d2];
    settle(&p, &daemons);
    let promote = |body: &str| {
        let started = Instant::now();
        let promoted = api_post(&p.n2, "/switchover/promote", body, Duration::from_secs(60));
        println!(
            "promote {body} beside a live primary: {} after {:?}: {}",
            promoted.status,
            started.elapsed(),
            promoted.body
        );
        assert_ne!(promoted.status, 200, "{}", promoted.body);
        assert!(
            p.standby.is_in_recovery().expect("query n2"),
            "n2 was promoted beside a live primary\n{}",
            dump_logs(&daemons)
        );
        assert!(!p.n2.has_address(VIP), "n2 took the VIP");
        assert!(!p.primary.is_in_recovery().expect("n1 is still the primary"));
        promoted.body
    };

    // The request of the issue, as it was sent: no TLS here, and nobody allowed the token to
    // cross the network in clear, so the standby does not even ask.
    let body = promote(r#"{"min_lsn":"0/0"}"#);
    assert!(
        body.contains("refusing to send the token in clear to 10.77.0.11:")
            && body.contains("Nothing was changed"),
        "{body}"
    );

    // Allowed in clear: n1's daemon answers that its database runs.
    let body = promote(r#"{"min_lsn":"0/0","insecure_token_over_http":true}"#);
    assert!(
        body.contains("asked n1's daemon at 10.77.0.11:")
            && body.contains("refused (HTTP 409)")
            && body.contains(r#"\"in production\", not \"shut down\""#)
            && body.contains("run `whpg-ha switchover`"),
        "{body}"
    );
    assert_eq!(layout(&p), (true, false, Some(200), Some(200)));

    // n1's daemon frozen (no more adverts: n2 becomes master), its database still serving.
    d1.kill(whpg_lab::Signal::Stop)
        .expect("SIGSTOP n1's daemon");
    wait_logged(
        "n2 is VRRP master once n1 stops advertising",
        Duration::from_secs(10),
        &daemons,
        || status(&p.n2).is_some_and(|s| s["vrrp"]["state"] == "MASTER"),
    );
    let body = promote(r#"{"min_lsn":"0/0","insecure_token_over_http":true}"#);
    assert!(
        body.contains("asked n1's daemon at 10.77.0.11:") && body.contains("no answer within"),
        "{body}"
    );
    d1.kill(whpg_lab::Signal::Cont)
        .expect("SIGCONT n1's daemon");
}

/// The old primary stopped cleanly, but the standby had stopped receiving before its last
/// writes: its daemon reports a shutdown checkpoint later than anything the standby received.
/// A caller's `{"min_lsn":"0/0"}` does not lower that bar; the promotion is refused after the
/// bounded wait and the standby stays a standby.
#[test]
fn a_planned_promotion_short_of_the_reported_checkpoint_is_refused() {
    let lab = lab_or_skip!("ops_short_checkpoint", PREREQUISITES);
    let p = pair(&lab);
    let (d1, d2) = start_pair(&lab, &p);
    let daemons = [&d1, &d2];
    settle(&p, &daemons);
    let short = Duration::from_secs(10);
    let maintenance = api_post(&p.n2, "/maintenance", r#"{"on":true}"#, short);
    assert_eq!(maintenance.status, 200, "{}", maintenance.body);

    // n2 stops receiving; n1 writes on, then stops cleanly.
    p.standby
        .psql("ALTER SYSTEM SET primary_conninfo = ''")
        .expect("clear primary_conninfo on n2");
    p.standby
        .psql("SELECT pg_reload_conf()")
        .expect("reload n2");
    p.standby
        .wait_for_sql("SELECT count(*) FROM pg_stat_wal_receiver", "0", short)
        .expect("n2's WAL receiver stops");
    p.primary
        .psql("CREATE TABLE after_the_cut AS SELECT generate_series(1, 10000) AS id")
        .expect("write on n1");
    let demoted = api_post(&p.n1, "/switchover/demote", "{}", Duration::from_secs(120));
    println!("demote n1: {} {}", demoted.status, demoted.body);
    assert_eq!(
        demoted.status,
        200,
        "{}\n{}",
        demoted.body,
        dump_logs(&daemons)
    );
    let reply: serde_json::Value = serde_json::from_str(&demoted.body).expect("JSON");
    let checkpoint = reply["lsn"].as_str().expect("a checkpoint").to_string();
    let received = p
        .standby
        .psql("SELECT pg_last_wal_receive_lsn()")
        .expect("query n2");
    println!("n1's shutdown checkpoint {checkpoint}; n2 received up to {received}");

    let started = Instant::now();
    let promoted = api_post(
        &p.n2,
        "/switchover/promote",
        r#"{"min_lsn":"0/0","insecure_token_over_http":true}"#,
        Duration::from_secs(120),
    );
    println!(
        "promote from 0/0 short of the checkpoint: {} after {:?}: {}",
        promoted.status,
        started.elapsed(),
        promoted.body
    );
    assert_eq!(promoted.status, 409, "{}", promoted.body);
    assert!(
        promoted
            .body
            .contains(&format!("did not receive WAL up to {checkpoint} within"))
            && promoted.body.contains("reported by n1's daemon")
            && promoted.body.contains("nothing was changed"),
        "{}",
        promoted.body
    );
    assert!(
        p.standby.is_in_recovery().expect("query n2"),
        "n2 was promoted without the old primary's last commits\n{}",
        dump_logs(&daemons)
    );
    assert!(!p.n2.has_address(VIP) && !p.n1.has_address(VIP));
    assert_eq!(code(&p.n2, "/primary"), Some(503));
}

/// The primary's data directory is where it was and was not moved aside.
fn data_dir_untouched(db: &PgNode) -> bool {
    let dir = db.data_dir();
    let parent = dir.parent().unwrap();
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    dir.join("PG_VERSION").exists()
        && !std::fs::read_dir(parent)
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{name}.whpg-ha-"))
            })
}

#[test]
fn switchover_with_rejoin_leaves_a_healthy_pair_with_the_roles_swapped() {
    let lab = lab_or_skip!("ops_switch_rejoin", PREREQUISITES);
    let p = pair(&lab);
    let (d1, d2) = start_pair(&lab, &p);
    let daemons = [&d1, &d2];
    settle(&p, &daemons);
    assert!(write_through_vip(&p.client, 3001));

    let (ok, out) = cli(
        &p.n2,
        &lab,
        "n2",
        &["switchover", "--to", "n2", "--yes", "--rejoin", "--json"],
        Duration::from_secs(300),
    );
    println!("whpg-ha switchover --to n2 --yes --rejoin --json:\n{out}");
    assert!(
        ok,
        "switchover --rejoin failed:\n{out}\n{}",
        dump_logs(&daemons)
    );
    let report: serde_json::Value = serde_json::from_str(&out).expect("--json prints JSON");
    assert_eq!(report["ok"], true, "{out}");
    assert!(report["write_gap_ms"].as_u64().is_some(), "{out}");

    assert!(p.n2.has_address(VIP) && !p.n1.has_address(VIP));
    assert_eq!(code(&p.n2, "/primary"), Some(200));
    assert_eq!(code(&p.n1, "/standby"), Some(200));
    let db = status(&p.n1).expect("n1 status")["database"].clone();
    assert_eq!(db["needs_rejoin"], false, "{db}");
    wait_logged(
        "n1 back in the election",
        Duration::from_secs(10),
        &daemons,
        || common::daemon::vrrp_state(&p.n1).as_deref() == Some("BACKUP"),
    );
    assert!(write_through_vip(&p.client, 3002));
    p.primary
        .wait_for_sql(
            "SELECT count(*) FROM writes WHERE id IN (3001, 3002)",
            "2",
            Duration::from_secs(10),
        )
        .expect("the rebuilt n1 has the old and the new writes");
}

/// Samples `/primary` on both nodes every 50 ms until stopped: (samples, samples with both 200,
/// samples with none).
struct PrimarySampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(u64, u64, u64)>>,
}

impl PrimarySampler {
    fn start(p: &Pair) -> PrimarySampler {
        let stop = Arc::new(AtomicBool::new(false));
        let (n1, n2, flag) = (p.n1.clone(), p.n2.clone(), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let (mut samples, mut both, mut none) = (0, 0, 0);
            while !flag.load(Ordering::Relaxed) {
                let started = Instant::now();
                let a = code(&n1, "/primary") == Some(200);
                let b = code(&n2, "/primary") == Some(200);
                samples += 1;
                both += u64::from(a && b);
                none += u64::from(!a && !b);
                std::thread::sleep(Duration::from_millis(50).saturating_sub(started.elapsed()));
            }
            (samples, both, none)
        });
        PrimarySampler {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map_or((0, 0, 0), |t| t.join().expect("sampler"))
    }
}

#[test]
fn five_switchovers_back_and_forth_keep_one_primary_and_every_commit() {
    let lab = lab_or_skip!("ops_five_switchovers", PREREQUISITES);
    let p = pair(&lab);
    let (d1, d2) = start_pair(&lab, &p);
    let daemons = [&d1, &d2];
    settle(&p, &daemons);

    let writer = Writer::start(&p.client, 5000);
    let sampler = PrimarySampler::start(&p);
    let mut gaps = Vec::new();
    for round in 0..5 {
        // Even rounds hand over from n1 to n2, odd ones back.
        let (to_host, to, from_host) = if round % 2 == 0 {
            (&p.n2, "n2", &p.n1)
        } else {
            (&p.n1, "n1", &p.n2)
        };
        let (ok, out) = cli(
            to_host,
            &lab,
            to,
            &["switchover", "--to", to, "--yes", "--rejoin", "--json"],
            Duration::from_secs(300),
        );
        assert!(
            ok,
            "round {round}: switchover to {to} failed:\n{out}\n{}",
            dump_logs(&daemons)
        );
        let report: serde_json::Value = serde_json::from_str(&out).expect("--json prints JSON");
        let gap = report["write_gap_ms"].as_u64().expect("write_gap_ms");
        gaps.push(gap);
        wait_logged(
            "the new layout settles",
            Duration::from_secs(20),
            &daemons,
            || code(to_host, "/primary") == Some(200) && code(from_host, "/standby") == Some(200),
        );
    }
    let (samples, both, none) = sampler.finish();
    let (acked, tried) = writer.finish();

    let present = ids_on(&p.standby);
    let lost: Vec<u64> = acked
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !present.contains(id))
        .collect();
    let longest = acked
        .windows(2)
        .map(|w| w[1].1.duration_since(w[0].1))
        .max()
        .unwrap_or_default();
    let mut sorted = gaps.clone();
    sorted.sort_unstable();
    println!(
        "five switchovers: write gaps {gaps:?} ms (median {} ms); writes tried {tried}, \
         acknowledged {}, lost {}; longest gap between acknowledged writes {longest:?}; \
         /primary samples {samples}: both 200 in {both}, neither in {none}",
        sorted[2],
        acked.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "acknowledged but missing on the final primary: {lost:?}"
    );
    assert_eq!(
        both, 0,
        "/primary answered 200 on both nodes in {both} samples"
    );
    assert!(samples > 20, "the sampler ran ({samples} samples)");
    assert!(
        p.n2.has_address(VIP) && !p.n1.has_address(VIP),
        "after an odd number of rounds n2 serves"
    );
}

/// The test's side of the `ssh` stand-in: runs each request found in the spool directory inside
/// the lab host it names, as the database OS user, and writes the answer back. Stops on drop.
struct SshRelay {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SshRelay {
    fn start(spool: PathBuf, hosts: Vec<Host>) -> SshRelay {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let requests: Vec<PathBuf> = std::fs::read_dir(&spool)
                    .map(|dir| {
                        dir.filter_map(|e| e.ok().map(|e| e.path()))
                            .filter(|p| p.extension().is_some_and(|x| x == "req"))
                            .collect()
                    })
                    .unwrap_or_default();
                for request in requests {
                    let Ok(text) = std::fs::read_to_string(&request) else {
                        continue;
                    };
                    let _ = std::fs::remove_file(&request);
                    let mut lines = text.lines();
                    let target = lines.next().unwrap_or_default().to_string();
                    let argv: Vec<&str> = lines.collect();
                    let (out, rc) = match hosts.iter().find(|h| h.address() == target) {
                        None => (format!("ssh: Could not resolve hostname {target}\n"), 255),
                        Some(_) if argv.is_empty() => (format!("ssh: {target}: no command\n"), 255),
                        Some(host) => {
                            match host.exec_as_timeout(PG_OS_USER, &argv, Duration::from_secs(120))
                            {
                                Ok(o) => (
                                    format!("{}{}", o.stdout, o.stderr),
                                    o.status.code().unwrap_or(255),
                                ),
                                Err(e) => (format!("ssh: {e:#}\n"), 255),
                            }
                        }
                    };
                    let base = request.with_extension("");
                    let _ = std::fs::write(base.with_extension("out"), out);
                    let tmp = base.with_extension("rctmp");
                    let _ = std::fs::write(&tmp, rc.to_string());
                    let _ = std::fs::rename(&tmp, base.with_extension("rc"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        SshRelay {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SshRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A fake WarehousePG installation with the gpinitstandby and ssh stand-ins: the catalog says
/// `coordinator` serves and `standby` (address, data directory) is its standby; per-host settings
/// for a rebuilt standby; a spool directory for the relay. Returns greenplum_path.sh.
fn fake_gphome_for_rejoin(lab: &Lab, p: &Pair) -> PathBuf {
    let script = fake_gphome(lab);
    let gphome = script.parent().expect("GPHOME").to_path_buf();
    let standins = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/standins");
    for tool in ["gpinitstandby", "ssh"] {
        let to = gphome.join("bin").join(tool);
        std::fs::copy(format!("{standins}/{tool}"), &to).expect("copying a stand-in");
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    std::os::unix::fs::symlink(
        format!("{PG_BIN_DIR}/pg_basebackup"),
        gphome.join("bin/pg_basebackup"),
    )
    .expect("linking pg_basebackup into the fake GPHOME");
    let user = whpg_ha::exec::lookup_user(PG_OS_USER).expect("the database OS user");
    for dir in ["standin-catalog", "standin-ssh", "standin-hosts"] {
        let path = gphome.join(dir);
        std::fs::create_dir_all(&path).expect("mkdir");
        std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid)).expect("chown");
    }
    // gpinitstandby's base backup creates the standby's data directory as the database user, in
    // a parent that user owns on real coordinators (/data/coordinator); here the lab directory.
    std::os::unix::fs::chown(lab.dir(), None, Some(user.gid)).expect("chgrp the lab directory");
    std::fs::set_permissions(lab.dir(), std::fs::Permissions::from_mode(0o775)).expect("chmod");
    let catalog = gphome.join("standin-catalog");
    std::fs::write(catalog.join("coordinator"), format!("{}\n", p.n1.address())).expect("write");
    std::fs::write(
        catalog.join("standby"),
        format!("{} {}\n", p.n2.address(), p.standby.data_dir().display()),
    )
    .expect("write");
    for (host, db) in [(&p.n1, &p.primary), (&p.n2, &p.standby)] {
        std::fs::write(
            gphome.join(format!("standin-hosts/{}.conf", host.address())),
            format!(
                "\n# whpg-lab: this node\nport = {}\nunix_socket_directories = '{}'\ncluster_name = '{}'\n",
                db.port(),
                db.socket_dir().display(),
                host.name()
            ),
        )
        .expect("per-host settings");
    }
    for entry in std::fs::read_dir(&catalog).expect("catalog") {
        let path = entry.expect("entry").path();
        std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid)).expect("chown");
    }
    script
}

/// The WarehousePG configuration of a lab node: the fake installation, the node's own start
/// command, and a rejoin that names the peer's data directory (the lab's nodes have different
/// ones; real coordinators usually share the path, gpinitstandby's default).
fn whpg_config(
    lab: &Lab,
    greenplum_path: &std::path::Path,
    db: &PgNode,
    peer: &PgNode,
    name: &str,
) -> String {
    let settings = DbPairSettings {
        flavor: "warehousepg",
        greenplum_path: Some(greenplum_path.display().to_string()),
        ..DbPairSettings::default()
    };
    let config = db_pair_builder(&settings, db, &nodes(), None);
    let peer_data = peer.data_dir().display().to_string();
    with_api_and_start(lab, config, db, name)
        .command(
            "rejoin",
            &[
                "{bin_dir}/gpinitstandby",
                "-s",
                "{standby_host}",
                "-S",
                &peer_data,
                "-a",
            ],
            None,
        )
        .to_toml()
}

#[test]
fn warehousepg_rejoin_removes_a_stale_standby_entry_then_runs_gpinitstandby() {
    let lab = lab_or_skip!("ops_whpg_rejoin", PREREQUISITES);
    let p = pair(&lab);
    let greenplum_path = fake_gphome_for_rejoin(&lab, &p);
    let gphome = greenplum_path.parent().expect("GPHOME").to_path_buf();
    let _relay = SshRelay::start(gphome.join("standin-ssh"), vec![p.n1.clone(), p.n2.clone()]);
    let d1 = start_daemon(
        &lab,
        &p.n1,
        "n1",
        &whpg_config(&lab, &greenplum_path, &p.primary, &p.standby, "n1"),
    );
    let d2 = start_daemon(
        &lab,
        &p.n2,
        "n2",
        &whpg_config(&lab, &greenplum_path, &p.standby, &p.primary, "n2"),
    );
    let daemons = [&d1, &d2];
    settle(&p, &daemons);
    let catalog = gphome.join("standin-catalog");
    let read = |name: &str| std::fs::read_to_string(catalog.join(name)).unwrap_or_default();

    // 1. A failover: gpactivatestandby's promotion leaves no standby entry, so `-r` finds none
    //    and the rejoin goes on with `-s`.
    p.primary.kill9().expect("kill -9 the primary's postmaster");
    wait_logged("failover to n2", Duration::from_secs(30), &daemons, || {
        p.n2.has_address(VIP) && code(&p.n2, "/primary") == Some(200)
    });
    assert_eq!(read("coordinator").trim(), p.n2.address());
    assert_eq!(read("standby"), "", "promotion removed the standby entry");
    assert!(write_through_vip(&p.client, 3001));
    let (ok, out) = cli(&p.n1, &lab, "n1", &["rejoin"], Duration::from_secs(240));
    println!("whpg-ha rejoin after a failover:\n{out}");
    assert!(ok, "rejoin failed:\n{out}\n{}", dump_logs(&daemons));
    assert!(out.contains("no standby entry to remove"), "{out}");
    let calls = read("calls");
    let n1_dir = p.primary.data_dir().display().to_string();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        ["-r -a", &format!("-s {} -S {n1_dir} -a", p.n1.address())],
        "gpinitstandby calls"
    );
    assert_eq!(
        read("standby").trim(),
        format!("{} {n1_dir}", p.n1.address())
    );
    assert_eq!(code(&p.n1, "/standby"), Some(200));
    assert!(write_through_vip(&p.client, 3002));
    p.primary
        .wait_for_sql(
            "SELECT count(*) FROM writes WHERE id IN (3001, 3002)",
            "2",
            Duration::from_secs(10),
        )
        .expect("the rebuilt standby replays the writes");

    // 2. The standby fails and is rebuilt: its catalog entry is stale, `gpinitstandby -s` alone
    //    would refuse ("standby coordinator already configured"); `-r -a` removes it first.
    std::fs::remove_file(catalog.join("calls")).expect("reset the call log");
    p.primary.kill9().expect("kill -9 the standby's postmaster");
    let (ok, out) = cli(&p.n1, &lab, "n1", &["rejoin"], Duration::from_secs(240));
    println!("whpg-ha rejoin of a failed standby:\n{out}");
    assert!(ok, "rejoin failed:\n{out}\n{}", dump_logs(&daemons));
    assert!(out.contains("stale standby entry removed"), "{out}");
    assert_eq!(
        read("calls").lines().collect::<Vec<_>>(),
        ["-r -a", &format!("-s {} -S {n1_dir} -a", p.n1.address())]
    );
    assert_eq!(
        read("standby").trim(),
        format!("{} {n1_dir}", p.n1.address())
    );
    // Both old data directories were moved aside, never deleted.
    let prefix = format!(
        "{}.whpg-ha-",
        p.primary.data_dir().file_name().unwrap().to_string_lossy()
    );
    let aside = std::fs::read_dir(p.primary.data_dir().parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter(|e| e.path().join("PG_VERSION").exists())
        .count();
    assert_eq!(aside, 2, "two data directories moved aside");
    assert!(write_through_vip(&p.client, 3003));
    p.primary
        .wait_for_sql(
            "SELECT count(*) FROM writes WHERE id = 3003",
            "1",
            Duration::from_secs(10),
        )
        .expect("the rebuilt standby replays new writes");
    assert_eq!(code(&p.n2, "/primary"), Some(200));
}

/// Issue "never lose an acknowledged commit": the standby's stream breaks while the primary
/// commits, then the primary crashes. The standby must not be promoted — not by a failover, not by
/// a switchover — and says why with numbers, until the operator accepts the loss.
#[test]
fn a_standby_that_lost_its_stream_is_never_promoted_until_the_operator_accepts_the_loss() {
    let lab = lab_or_skip!("ops_behind", PREREQUISITES);
    let p = pair(&lab);
    let (d1, d2) = start_pair(&lab, &p);
    let daemons = [&d1, &d2];
    settle(&p, &daemons);
    let promotable = |host: &Host| {
        status(host)
            .map(|s| s["database"]["replication"]["promotable"].clone())
            .unwrap_or_default()
    };
    wait_logged("n2 promotable", Duration::from_secs(10), &daemons, || {
        promotable(&p.n2) == serde_json::Value::Bool(true)
    });

    // The standby's WAL receiver stops (no primary_conninfo); the primary goes on committing.
    p.standby
        .psql("ALTER SYSTEM SET primary_conninfo = ''")
        .expect("clear primary_conninfo");
    p.standby
        .psql("SELECT pg_reload_conf()")
        .expect("reload the standby");
    let mut acked = 0;
    for id in 1..=20 {
        if write_through_vip(&p.client, 1000 + id) {
            acked += 1;
        }
    }
    assert!(acked >= 10, "only {acked} writes acknowledged on n1");
    wait_logged(
        "n2 not promotable",
        Duration::from_secs(10),
        &daemons,
        || promotable(&p.n2) == serde_json::Value::Bool(false),
    );
    let why = status(&p.n2).unwrap()["database"]["replication"]["not_promotable"].clone();
    println!("n2 not promotable: {why}");

    // A planned switchover is refused before the primary is touched.
    let minute = Duration::from_secs(60);
    let (ok, out) = cli(&p.n1, &lab, "n1", &["switchover", "--yes"], minute);
    println!("whpg-ha switchover:\n{out}");
    assert!(
        !ok,
        "a switchover to a standby that lost its stream went ahead"
    );
    assert!(out.contains("not promotable"), "{out}");
    assert!(
        p.n1.has_address(VIP),
        "the refused switchover moved the VIP"
    );

    // The primary crashes: no failover.
    p.primary.kill9().expect("kill -9 the primary's postmaster");
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        p.standby.is_in_recovery().expect("query n2"),
        "n2 was promoted although it misses commits\n{}",
        dump_logs(&daemons)
    );
    assert!(!p.n2.has_address(VIP));
    let hold = status(&p.n2).unwrap()["database"]["promotion_hold"].clone();
    assert!(
        hold.as_str()
            .is_some_and(|h| h.starts_with("NotPromotable")),
        "{hold}"
    );
    let (_, metrics) = common::daemon::api_get(&p.n2, "/metrics").expect("n2 /metrics");
    assert!(
        metrics.contains("whpg_ha_standby_promotable 0")
            && metrics.contains("whpg_ha_promotions_refused_not_promotable_total 1"),
        "{metrics}"
    );

    // The operator chooses availability: promoted, with what was lost printed first.
    let started = Instant::now();
    let (ok, out) = cli(
        &p.n2,
        &lab,
        "n2",
        &["promote", "--accept-data-loss", "--yes"],
        Duration::from_secs(150),
    );
    println!(
        "whpg-ha promote --accept-data-loss --yes ({:?}):\n{out}",
        started.elapsed()
    );
    assert!(ok, "{out}\n{}", dump_logs(&daemons));
    assert!(out.contains("will be lost"), "{out}");
    wait_logged("VIP on n2", Duration::from_secs(20), &daemons, || {
        p.n2.has_address(VIP)
    });
    assert!(!p.standby.is_in_recovery().expect("query n2"));
    let kept: u64 = p
        .standby
        .psql("SELECT count(*) FROM writes WHERE id > 1000")
        .expect("count on n2")
        .trim()
        .parse()
        .expect("a count");
    println!("{acked} writes acknowledged after the stream broke; n2 has {kept} of them");
    assert!(
        kept < acked,
        "n2 has every write: the test did not break the stream"
    );
}
