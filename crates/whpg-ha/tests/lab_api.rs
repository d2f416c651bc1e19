//! The operator's side of the daemon in the namespace lab: `/primary` and `/standby` through a
//! database-crash failover, the bearer token on `POST /maintenance`, maintenance mode holding
//! back a failover, and the `status` / `maintenance` commands run on a lab host.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::daemon::{
    api_get, code, dump_logs, pair_builder, start_daemon, status, PairSettings, API_PORT,
};
use common::in_netns;
use common::pg::{db_pair_builder, nodes, pair, DbPairSettings, Pair, VIP};
use serde_json::Value;
use whpg_ha::client::{send, Request, Response};
use whpg_ha::config::testing::TestConfig;
use whpg_lab::postgres::PG_BIN_DIR;
use whpg_lab::{lab_or_skip, wait_until, Host, Lab, Process};

const PREREQUISITES: &[&str] = &["user:postgres", "/usr/lib/postgresql/15/bin/initdb"];
const TOKEN: &str = "lab-token-0123456789abcdef0123456789abcdef";

/// A token file in the lab directory with `mode`.
fn token_file(lab: &Lab, mode: u32) -> PathBuf {
    let path = lab
        .write_file(&format!("token-{mode:o}"), &format!("{TOKEN}\n"))
        .expect("writing the token file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

/// The API on every address of the host (so the CLI on one host reaches the other), with a token.
fn with_api(config: TestConfig, token: Option<&PathBuf>) -> String {
    config
        .api(
            &[&format!("0.0.0.0:{API_PORT}")],
            token.map(PathBuf::as_path),
        )
        .to_toml()
}

fn start_pair(lab: &Lab, p: &Pair, token: Option<&PathBuf>) -> (Process, Process) {
    let settings = DbPairSettings::default();
    let d1 = start_daemon(
        lab,
        &p.n1,
        "n1",
        &with_api(
            db_pair_builder(&settings, &p.primary, &nodes(), Some(PG_BIN_DIR)),
            token,
        ),
    );
    let d2 = start_daemon(
        lab,
        &p.n2,
        "n2",
        &with_api(
            db_pair_builder(&settings, &p.standby, &nodes(), Some(PG_BIN_DIR)),
            token,
        ),
    );
    (d1, d2)
}

fn wait_logged(what: &str, limit: Duration, daemons: &[&Process], f: impl FnMut() -> bool) {
    wait_until(limit, Duration::from_millis(20), what, f)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", dump_logs(daemons)));
}

/// A request with the library's client from inside the host's namespace.
fn request(host: &Host, request: Request<'_>) -> Response {
    in_netns(host.netns(), || {
        send(
            ([127, 0, 0, 1], API_PORT).into(),
            &request,
            Duration::from_secs(3),
        )
    })
    .expect("the API answers")
}

/// The pair settled: n1 serves the VIP, n2 is a streaming standby as `/standby` sees it.
fn settle(p: &Pair, logs: &[&Process]) {
    wait_logged("VIP on n1", Duration::from_secs(20), logs, || {
        p.n1.has_address(VIP)
    });
    wait_logged("/primary on n1", Duration::from_secs(10), logs, || {
        code(&p.n1, "/primary") == Some(200)
    });
    wait_logged("/standby on n2", Duration::from_secs(10), logs, || {
        code(&p.n2, "/standby") == Some(200)
    });
}

/// `/primary` and `/standby` of both nodes, asked at the same moment.
fn sample(p: &Pair) -> [Option<u16>; 4] {
    std::thread::scope(|s| {
        let a = s.spawn(|| code(&p.n1, "/primary"));
        let b = s.spawn(|| code(&p.n2, "/primary"));
        let c = s.spawn(|| code(&p.n1, "/standby"));
        let d = s.spawn(|| code(&p.n2, "/standby"));
        [a, b, c, d].map(|h| h.join().expect("sampler"))
    })
}

#[test]
fn primary_answers_on_exactly_one_node_through_a_database_crash_failover() {
    let lab = lab_or_skip!("api_primary", PREREQUISITES);
    let p = pair(&lab);
    let (d1, d2) = start_pair(&lab, &p, None);
    let logs = [&d1, &d2];
    settle(&p, &logs);
    let before = sample(&p);
    assert_eq!(
        before,
        [Some(200), Some(503), Some(503), Some(200)],
        "[n1 /primary, n2 /primary, n1 /standby, n2 /standby] before the crash"
    );
    // No api.token_file here: mutating endpoints are disabled, whatever is presented.
    let refused = maintenance_request(&p.n2, true, Some(TOKEN));
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains("no api.token_file configured"),
        "{}",
        refused.body
    );

    p.primary.kill9().expect("kill -9 the primary's postmaster");
    let crash = Instant::now();
    let mut samples = Vec::new();
    let mut settled_at = None;
    while crash.elapsed() < Duration::from_secs(25) {
        let s = sample(&p);
        let (n1, n2) = (s[0] == Some(200), s[1] == Some(200));
        assert!(
            !(n1 && n2),
            "both nodes answered 200 on /primary {:?} after the crash\n{}",
            crash.elapsed(),
            dump_logs(&logs)
        );
        samples.push((crash.elapsed(), s));
        if n2 && settled_at.is_none() {
            settled_at = Some(crash.elapsed());
        }
        // Keep sampling a while after the switch: the old node must not come back.
        if settled_at.is_some_and(|at| crash.elapsed() > at + Duration::from_secs(2)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let Some(switched) = settled_at else {
        panic!("/primary never answered 200 on n2\n{}", dump_logs(&logs));
    };
    let neither = samples
        .iter()
        .filter(|(_, s)| s[0] != Some(200) && s[1] != Some(200))
        .count();
    println!(
        "/primary moved to n2 {switched:?} after the crash; {} samples, {neither} with no primary",
        samples.len()
    );
    assert!(
        !p.standby.is_in_recovery().expect("query n2"),
        "n2 was promoted"
    );
    // After the failover: n2 is the primary; n1's database is down and n2 has no standby, so no
    // node is a standby.
    let after = sample(&p);
    assert_eq!(
        after,
        [Some(503), Some(200), Some(503), Some(503)],
        "[n1 /primary, n2 /primary, n1 /standby, n2 /standby] after the failover"
    );
    let (_, body) = api_get(&p.n1, "/primary").expect("n1 answers");
    assert!(body.starts_with("not primary"), "{body}");

    // The metrics counted the promotion and timed the failover.
    let (metrics_code, metrics) = api_get(&p.n2, "/metrics").expect("n2 /metrics");
    assert_eq!(metrics_code, 200);
    for line in [
        "whpg_ha_vrrp_state{state=\"MASTER\"} 1",
        "whpg_ha_vip_held 1",
        "whpg_ha_database_role{role=\"primary\"} 1",
        "whpg_ha_promotions_started_total 1",
        "whpg_ha_promotions_succeeded_total 1",
        "whpg_ha_failover_duration_seconds_count 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line:?} missing from n2's /metrics:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("whpg_ha_probe_duration_seconds_count{target=\"local\"}"),
        "{metrics}"
    );
}

fn maintenance_request(host: &Host, on: bool, bearer: Option<&str>) -> Response {
    let body = format!("{{\"on\": {on}}}");
    request(host, Request::post_json("/maintenance", &body, bearer))
}

fn cli(host: &Host, lab: &Lab, node: &str, args: &[&str]) -> (bool, String, String) {
    let config = lab.dir().join(format!("{node}.toml"));
    let config = config.to_string_lossy().into_owned();
    let mut argv = vec![env!("CARGO_BIN_EXE_whpg-ha")];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--config", config.as_str(), "--node", node]);
    let output = host
        .exec_timeout(&argv, Duration::from_secs(15))
        .expect("running the CLI");
    (
        output.success(),
        output.stdout.clone(),
        output.stderr.clone(),
    )
}

fn maintenance_of(host: &Host) -> Value {
    status(host)
        .map(|s| s["database"]["maintenance"].clone())
        .unwrap_or_default()
}

#[test]
fn maintenance_needs_the_token_and_holds_back_a_failover_on_a_database_crash() {
    let lab = lab_or_skip!("api_maintenance", PREREQUISITES);
    let p = pair(&lab);
    let token = token_file(&lab, 0o600);
    let (d1, d2) = start_pair(&lab, &p, Some(&token));
    let logs = [&d1, &d2];
    settle(&p, &logs);

    // Without the token, with a wrong one, then with the right one.
    assert_eq!(maintenance_request(&p.n2, true, None).status, 401);
    assert_eq!(
        maintenance_request(&p.n2, true, Some("not-the-token")).status,
        401
    );
    assert_eq!(maintenance_of(&p.n2), false);
    let ok = maintenance_request(&p.n2, true, Some(TOKEN));
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(maintenance_of(&p.n2), true);
    let ok = maintenance_request(&p.n2, false, Some(TOKEN));
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(maintenance_of(&p.n2), false);

    // `whpg-ha status` on n1 sees both nodes across the lab network.
    let (ok, json, stderr) = cli(&p.n1, &lab, "n1", &["status", "--json"]);
    assert!(ok, "status --json failed: {stderr}");
    let report: Value = serde_json::from_str(&json).expect("status --json prints JSON");
    let nodes = report["nodes"].as_array().expect("nodes");
    let states: Vec<(String, String, bool)> = nodes
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap_or("?").to_string(),
                n["status"]["vrrp"]["state"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string(),
                n["status"]["holds_vips"] == true,
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("n1".to_string(), "MASTER".to_string(), true),
            ("n2".to_string(), "BACKUP".to_string(), false)
        ],
        "{json}"
    );
    let (ok, table, stderr) = cli(&p.n2, &lab, "n2", &["status"]);
    assert!(ok, "status failed: {stderr}");
    println!("whpg-ha status on n2:\n{table}");
    assert!(table.lines().count() == 3, "{table}");

    // Without TLS the CLI will not send the token across the network to n2: refused before
    // connecting, with the fix. n1 itself is this host and is asked.
    let (ok, out, stderr) = cli(&p.n1, &lab, "n1", &["maintenance", "on"]);
    assert!(!ok, "maintenance on sent the token in clear: {out}{stderr}");
    let said = format!("{out}{stderr}");
    assert!(
        said.contains("refusing to send the token in clear to 10.77.0.12:8008")
            && said.contains("tls_cert_file")
            && said.contains("--insecure-token-over-http"),
        "{said}"
    );
    assert_eq!(maintenance_of(&p.n2), false, "n2 was changed: {said}");

    // Maintenance on through the CLI, on both nodes, once the operator accepts the risk.
    let (ok, out, stderr) = cli(
        &p.n1,
        &lab,
        "n1",
        &["maintenance", "on", "--insecure-token-over-http"],
    );
    assert!(ok, "maintenance on failed: {out}{stderr}");
    println!("whpg-ha maintenance on:\n{out}");
    assert_eq!(maintenance_of(&p.n1), true);
    assert_eq!(maintenance_of(&p.n2), true);

    // The mode is kept on disk: a restart of the standby's daemon does not forget it.
    d2.sigterm().expect("SIGTERM to n2's daemon");
    d2.wait_exit(Duration::from_secs(10))
        .expect("n2's daemon stops on SIGTERM");
    let settings = DbPairSettings::default();
    let d2 = start_daemon(
        &lab,
        &p.n2,
        "n2",
        &with_api(
            db_pair_builder(
                &settings,
                &p.standby,
                &common::pg::nodes(),
                Some(PG_BIN_DIR),
            ),
            Some(&token),
        ),
    );
    let logs = [&d1, &d2];
    wait_logged(
        "n2's daemon answers again, in maintenance mode",
        Duration::from_secs(10),
        &logs,
        || code(&p.n2, "/health").is_some() && maintenance_of(&p.n2) == true,
    );

    // A database crash now is not failed over.
    p.primary.kill9().expect("kill -9 the primary's postmaster");
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        p.standby.is_in_recovery().expect("query n2"),
        "n2 was promoted in maintenance mode\n{}",
        dump_logs(&logs)
    );
    assert!(
        !p.n2.has_address(VIP),
        "n2 took the VIP in maintenance mode"
    );
    assert_eq!(code(&p.n2, "/primary"), Some(503));
}

#[test]
fn a_token_file_readable_by_others_keeps_the_daemon_from_starting() {
    let lab = lab_or_skip!("api_token_mode", &[]);
    let n1 = lab.add_host("n1", "10.77.0.11/24").expect("n1");
    let loose = token_file(&lab, 0o644);
    let config = with_api(
        pair_builder(
            &PairSettings::fast(),
            &[("n1", "10.77.0.11", 100), ("n2", "10.77.0.12", 98)],
        ),
        Some(&loose),
    );
    let daemon = start_daemon(&lab, &n1, "n1", &config);
    let exit = daemon
        .wait_exit(Duration::from_secs(10))
        .expect("the daemon exits");
    assert!(!exit.success(), "the daemon ran with a readable token file");
    let log = daemon.log_contents();
    assert!(
        log.contains("api.token_file")
            && log.contains("chmod 600")
            && log.contains(&loose.display().to_string()),
        "{log}"
    );
    assert!(
        !log.contains(TOKEN),
        "the token leaked into the log:\n{log}"
    );
}

#[test]
fn status_exits_1_when_no_node_answers() {
    let lab = lab_or_skip!("api_status_nobody", &[]);
    let n1 = lab.add_host("n1", "10.77.0.11/24").expect("n1");
    let _n2 = lab.add_host("n2", "10.77.0.12/24").expect("n2");
    // No daemon runs: both nodes' API ports refuse.
    let config = pair_builder(&PairSettings::fast(), &nodes())
        .api(&[&format!("0.0.0.0:{API_PORT}")], None)
        .to_toml();
    lab.write_file("n1.toml", &config).expect("config");
    let (ok, table, stderr) = cli(&n1, &lab, "n1", &["status"]);
    assert!(!ok, "status must fail when nobody answers:\n{table}");
    assert!(stderr.contains("no node answered"), "{stderr}");
    assert!(table.contains("UNREACHABLE"), "{table}");
}
