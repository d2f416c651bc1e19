//! `whpg-ha check` in the namespace lab, with a PostgreSQL 15 pair and both daemons: it passes
//! on the healthy pair, and on each broken setup exits 1 naming the row and its cause — a wrong
//! token, an unwritable journal, an unreachable witness, a promote command the database OS user
//! cannot execute, a standby that does not stream, the peer daemon stopped, and configurations
//! that differ. One lab for all of them; every break is undone (or its daemon stopped) before
//! the next, and guards undo the file changes even when an assertion fails.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::daemon::{code, dump_logs, start_daemon, API_PORT};
use common::pg::{db_pair_config, nodes, pair, DbPairSettings, Pair, VIP};
use whpg_lab::postgres::PG_BIN_DIR;
use whpg_lab::{lab_or_skip, wait_until, Host, Lab, PgNode, Process};

const PREREQUISITES: &[&str] = &[
    "user:postgres",
    "/usr/lib/postgresql/15/bin/initdb",
    "/usr/bin/chattr",
];
const TOKEN: &str = "lab-check-token-0123456789abcdef01234567";
/// The witness: the lab's client host, which answers pings.
const WITNESS: &str = "10.77.0.99";

/// The promote wrapper both nodes' configurations name: executable, it runs `pg_ctl promote`.
fn promote_wrapper(lab: &Lab) -> PathBuf {
    let path = lab
        .write_file(
            "promote",
            &format!("#!/bin/sh\nexec {PG_BIN_DIR}/pg_ctl \"$@\"\n"),
        )
        .expect("writing the promote wrapper");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// A node's configuration: the API on every address with the token file, a witness, and the
/// promote wrapper.
fn config(lab: &Lab, db: &PgNode, promote: &Path) -> String {
    let settings = DbPairSettings {
        witness: Some(WITNESS),
        promote: Some((
            format!(
                "[\"{}\", \"promote\", \"-D\", \"{{data_directory}}\"]",
                promote.display()
            ),
            "60s",
        )),
        ..DbPairSettings::default()
    };
    let text = db_pair_config(&settings, db, &nodes());
    let token = lab
        .write_file("token", &format!("{TOKEN}\n"))
        .expect("writing the token file");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let loopback = format!("[api]\nlisten = [\"127.0.0.1:{API_PORT}\"]\n");
    assert!(text.contains(&loopback), "unexpected lab configuration");
    text.replace(
        &loopback,
        &format!(
            "[api]\nlisten = [\"0.0.0.0:{API_PORT}\"]\ntoken_file = \"{}\"\n",
            token.display()
        ),
    )
}

/// `whpg-ha check --config FILE --node n1` on n1: (exit 0, output).
fn check(host: &Host, config: &Path) -> (bool, String) {
    let config = config.to_string_lossy().into_owned();
    let argv = [
        env!("CARGO_BIN_EXE_whpg-ha"),
        "check",
        "--config",
        config.as_str(),
        "--node",
        "n1",
        // The lab's API has no TLS; its network is the test's own namespaces.
        "--insecure-token-over-http",
        // The lab hosts share one file system: each node has its own data directory and journal.
        "--allow-differing",
        "database.data_directory",
        "--allow-differing",
        "journal.path",
    ];
    let output = host
        .exec_timeout(&argv, Duration::from_secs(30))
        .expect("running whpg-ha check");
    (
        output.success(),
        format!("{}{}", output.stdout, output.stderr),
    )
}

/// The table line of `check` about `node` (`-` for the pair).
fn row<'a>(output: &'a str, check: &str, node: &str) -> Option<&'a str> {
    output.lines().find(|line| {
        let mut cells = line.split_whitespace();
        cells.next() == Some(check) && cells.next() == Some(node)
    })
}

/// Runs `check` until it exits 1 with row (`name`, `node`) FAIL and containing `cause`, within 20 s;
/// returns that line.
fn expect_failure(
    p: &Pair,
    config: &Path,
    name: &str,
    node: &str,
    cause: &str,
    daemons: &[&Process],
) -> String {
    let mut last = String::new();
    let found = wait_until(
        Duration::from_secs(20),
        Duration::from_millis(300),
        name,
        || {
            let (ok, out) = check(&p.n1, config);
            let hit = !ok
                && row(&out, name, node)
                    .is_some_and(|line| line.contains("FAIL") && line.contains(cause));
            last = out;
            hit
        },
    );
    if let Err(e) = found {
        panic!(
            "{e:#}: no FAIL row `{name} {node}` with `{cause}`:\n{last}\n{}",
            dump_logs(daemons)
        );
    }
    let line = row(&last, name, node).expect("the row").to_string();
    println!("broken ({name}): {line}");
    assert!(
        last.contains("checks do not pass"),
        "no failing summary:\n{last}"
    );
    line
}

/// Runs `check` until it exits 0 with every row PASS.
fn expect_healthy(p: &Pair, config: &Path, daemons: &[&Process]) -> String {
    let mut last = String::new();
    let passed = wait_until(
        Duration::from_secs(30),
        Duration::from_millis(300),
        "check passes",
        || {
            let (ok, out) = check(&p.n1, config);
            last = out;
            ok
        },
    );
    if let Err(e) = passed {
        panic!("{e:#}:\n{last}\n{}", dump_logs(daemons));
    }
    last
}

/// Undoes a break when dropped (even when an assertion fails).
struct Undo<'a>(Option<Box<dyn FnOnce() + 'a>>);

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if let Some(undo) = self.0.take() {
            undo();
        }
    }
}

fn wait_logged(what: &str, daemons: &[&Process], f: impl FnMut() -> bool) {
    wait_until(Duration::from_secs(30), Duration::from_millis(100), what, f)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", dump_logs(daemons)));
}

#[test]
fn check_passes_on_a_healthy_pair_and_names_the_cause_of_each_broken_setup() {
    let lab = lab_or_skip!("check", PREREQUISITES);
    let p = pair(&lab);
    let promote = promote_wrapper(&lab);
    let n1_text = config(&lab, &p.primary, &promote);
    let n2_text = config(&lab, &p.standby, &promote);
    let d1 = start_daemon(&lab, &p.n1, "n1", &n1_text);
    let d2 = start_daemon(&lab, &p.n2, "n2", &n2_text);
    let n1_config = lab.dir().join("n1.toml");
    {
        let daemons = [&d1, &d2];
        wait_logged("VIP on n1", &daemons, || p.n1.has_address(VIP));
        wait_logged("/standby on n2", &daemons, || {
            code(&p.n2, "/standby") == Some(200)
        });

        // Healthy: exit 0, every row PASS.
        let out = expect_healthy(&p, &n1_config, &daemons);
        println!("healthy pair:\n{out}");
        assert!(!out.contains("FAIL") && !out.contains("UNKNOWN"), "{out}");
        for (name, node) in [
            ("daemon", "n1"),
            ("daemon", "n2"),
            ("config", "-"),
            ("adverts", "-"),
            ("standby", "-"),
            ("token", "n2"),
            ("commands", "n2"),
            ("environment", "n2"),
            ("witnesses", "n1"),
            ("journal", "n2"),
        ] {
            let line =
                row(&out, name, node).unwrap_or_else(|| panic!("no row {name} {node}:\n{out}"));
            assert!(line.contains("PASS"), "{line}");
        }
        assert!(out.contains("a failover would work"), "{out}");

        // (1) A wrong token: the CLI's file names another token file.
        let wrong = lab
            .write_file("wrong-token", "not-the-lab-token-at-all-0123456789abcdef\n")
            .expect("writing the wrong token");
        std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let token_path = lab.dir().join("token").display().to_string();
        let bad_token_config = lab
            .write_file(
                "n1-wrong-token.toml",
                &std::fs::read_to_string(&n1_config)
                    .expect("n1.toml")
                    .replace(&token_path, &wrong.display().to_string()),
            )
            .expect("writing the CLI's configuration");
        expect_failure(&p, &bad_token_config, "token", "n2", "HTTP 401", &daemons);

        // (2) The journal not writable: n1's current file immutable.
        let journal = lab.dir().join("n1.journal").join("journal.jsonl");
        assert!(journal.exists(), "no journal at {}", journal.display());
        p.n1.exec_ok(&["chattr", "+i", &journal.display().to_string()])
            .expect("chattr +i");
        {
            let file = journal.display().to_string();
            let _undo = Undo(Some(Box::new(move || {
                let _ = std::process::Command::new("chattr")
                    .args(["-i", &file])
                    .status();
            })));
            expect_failure(&p, &n1_config, "journal", "n1", "for appending", &daemons);
        }

        // (3) The witness unreachable: its link down (the peer still answers: no isolation).
        lab.link_down(&p.client).expect("witness link down");
        {
            let (lab, client) = (&lab, p.client.clone());
            let _undo = Undo(Some(Box::new(move || {
                let _ = lab.link_up(&client);
            })));
            expect_failure(&p, &n1_config, "witnesses", "n2", WITNESS, &daemons);
        }

        // (4) The promote command not executable by the OS user (root may, postgres may not).
        std::fs::set_permissions(&promote, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        {
            let path = promote.clone();
            let _undo = Undo(Some(Box::new(move || {
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755));
            })));
            expect_failure(
                &p,
                &n1_config,
                "commands",
                "n2",
                "not executable by OS user postgres",
                &daemons,
            );
        }
        expect_healthy(&p, &n1_config, &daemons);

        // (5) The standby not streaming: its database stopped.
        p.standby.stop_fast().expect("stopping the standby");
        expect_failure(&p, &n1_config, "standby", "-", "n2", &daemons);
        p.standby.start().expect("starting the standby again");
        wait_logged("/standby on n2 again", &daemons, || {
            code(&p.n2, "/standby") == Some(200)
        });
    }

    // (6) The peer daemon stopped.
    d2.sigterm().expect("SIGTERM to n2's daemon");
    d2.wait_exit(Duration::from_secs(10))
        .expect("n2's daemon exits");
    expect_failure(&p, &n1_config, "daemon", "n2", "no answer", &[&d1]);

    // (7) The configurations differ: n2's daemon back with another advert interval.
    let d2 = start_daemon(
        &lab,
        &p.n2,
        "n2",
        &n2_text.replace("advert_interval = \"100ms\"", "advert_interval = \"200ms\""),
    );
    let daemons = [&d1, &d2];
    wait_logged("/standby on n2 with its other file", &daemons, || {
        code(&p.n2, "/standby") == Some(200)
    });
    expect_failure(
        &p,
        &n1_config,
        "config",
        "-",
        "vrrp.advert_interval differ",
        &daemons,
    );
    d2.sigterm().expect("SIGTERM");
    d1.sigterm().expect("SIGTERM");
}
