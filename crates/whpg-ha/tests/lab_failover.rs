//! Database-aware failover on a real PostgreSQL 15 pair in the namespace lab: the VIP follows the
//! writable database, the standby is promoted only when it is safe, a node that must not serve is
//! fenced. Times are printed; asserted bounds are generous (the benchmark measures precisely).

mod common;

use std::time::{Duration, Instant};

use common::daemon::{start_daemon, status};
use common::pg::{db_pair_config, pg_pair, write_through_vip, DbPairSettings, VIP};
use whpg_lab::{lab_or_skip, wait_until, Host, Lab, PgNode, Process};

const PREREQUISITES: &[&str] = &["user:postgres", "/usr/lib/postgresql/15/bin/initdb"];

struct Pair {
    n1: Host,
    n2: Host,
    client: Host,
    primary: PgNode,
    standby: PgNode,
}

fn pair(lab: &Lab) -> Pair {
    let n1 = lab.add_host("n1", "10.77.0.11/24").expect("n1");
    let n2 = lab.add_host("n2", "10.77.0.12/24").expect("n2");
    let client = lab.add_host("cl", "10.77.0.99/24").expect("client");
    let (primary, standby) = pg_pair(lab, &n1, &n2);
    Pair {
        n1,
        n2,
        client,
        primary,
        standby,
    }
}

fn nodes() -> Vec<(&'static str, &'static str, u8)> {
    vec![("n1", "10.77.0.11", 100), ("n2", "10.77.0.12", 98)]
}

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

fn dump_logs(daemons: &[&Process]) -> String {
    daemons
        .iter()
        .map(|d| d.log_contents())
        .collect::<Vec<_>>()
        .join("\n-----\n")
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
