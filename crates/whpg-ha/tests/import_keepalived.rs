//! `whpg-ha import-keepalived` on the seed's keepalived shapes (version 1 with `weight 50`, version 2
//! without, both roles) and other keepalived.conf shapes (multicast, several instances, include with a
//! glob, odd formatting). Every successful import is loaded with the configuration loader that
//! `check-config` uses, for both nodes.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use whpg_ha::config::{self, Config, DbEndpoint};
use whpg_ha::import::{import_files, Imported, Options, ScriptDirs};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keepalived")
        .join(rel)
}

fn import(files: &[&str], scripts: &[&str], opts: Options) -> Result<Imported, Vec<String>> {
    let files: Vec<PathBuf> = files.iter().map(|f| fixture(f)).collect();
    let dirs = ScriptDirs {
        dirs: scripts.iter().map(|d| fixture(d)).collect(),
    };
    import_files(&files, &dirs, &opts).map(|(imported, _)| imported)
}

/// The output loaded for each node with the loader `check-config` uses.
fn load_each(imported: &Imported) -> Vec<Config> {
    let no_host = || Err("no host name in tests".to_string());
    imported
        .node_names
        .iter()
        .map(|name| {
            config::parse_with_hostname(&imported.toml, Some(name), &no_host).unwrap_or_else(|e| {
                panic!(
                    "does not load for node {name}: {}\n{}",
                    e.iter()
                        .map(|x| x.to_string())
                        .collect::<Vec<_>>()
                        .join("\n"),
                    imported.toml
                )
            })
        })
        .collect()
}

fn node<'a>(c: &'a Config, name: &str) -> &'a whpg_ha::config::Node {
    std::iter::once(&c.local)
        .chain(c.peers.iter())
        .find(|n| n.name == name)
        .unwrap_or_else(|| panic!("no node {name}"))
}

fn triggers(c: &Config) -> Vec<&'static str> {
    c.failover.triggers.iter().map(|t| t.as_str()).collect()
}

fn has_note(imported: &Imported, what: &str) -> bool {
    imported
        .not_imported
        .iter()
        .any(|n| n.to_string().contains(what))
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("ip")
}

#[test]
fn seed_v1_pair_with_weight_50_and_preempt() {
    let imported = import(
        &[
            "seed-v1/keepalived.conf.master",
            "seed-v1/keepalived.conf.backup",
        ],
        &["seed-v1/master", "seed-v1/backup"],
        Options::default(),
    )
    .expect("import");
    assert_eq!(imported.node_names, ["whpg-m", "whpg-s"]);
    let configs = load_each(&imported);
    let c = &configs[0];
    assert_eq!(c.local.name, "whpg-m");
    assert_eq!(c.vrrp.interface, "eth1");
    assert_eq!(c.vrrp.vrid, 51);
    assert_eq!(c.vrrp.version.number(), 2);
    assert_eq!(c.vrrp.advert_interval, Duration::from_secs(1));
    assert_eq!(c.vrrp.transport.as_str(), "unicast");
    assert_eq!(
        c.vrrp.auth_pass.as_ref().map(|s| s.expose()),
        Some("secretpw")
    );
    assert!(!c.vrrp.preempt);
    assert_eq!(node(c, "whpg-m").address, ip("192.168.10.11"));
    assert_eq!(node(c, "whpg-m").priority, 100);
    assert_eq!(node(c, "whpg-s").address, ip("192.168.10.12"));
    assert_eq!(node(c, "whpg-s").priority, 98);
    assert_eq!(c.vips.len(), 1);
    assert_eq!(c.vips[0].address, ip("192.168.56.100"));
    assert_eq!(c.vips[0].prefix_len, 24);
    assert_eq!(c.vips[0].device, "eth1");
    assert_eq!(c.vips[0].label, None, "the label line is commented out");
    // The check: every 1 s, fall 3, rise 1, pg_isready -t 1.
    assert_eq!(c.health.interval, Duration::from_secs(1));
    assert_eq!(c.health.timeout, Duration::from_secs(1));
    assert_eq!((c.health.fall, c.health.rise), (3, 1));
    // weight 50 + preempt: 100 (failed) < 98 + 50 (healthy standby): the VIP moved on a DB failure.
    assert_eq!(
        triggers(c),
        ["node-loss", "network-loss", "database-failure"]
    );
    assert_eq!(c.database.flavor.as_str(), "warehousepg");
    assert_eq!(
        c.database.data_directory,
        Path::new("/data/coordinator/gpseg-1")
    );
    assert_eq!(c.database.port, 5432);
    assert_eq!(c.database.user, "gpadmin");
    assert_eq!(c.database.os_user, "gpadmin");
    assert_eq!(c.database.endpoint, DbEndpoint::Host("127.0.0.1".into()));
    assert!(c.witness.hosts.is_empty(), "version 1 pings no gateway");
    // Not imported, with file:line.
    assert!(has_note(
        &imported,
        "keepalived.conf.master:23: state MASTER"
    ));
    assert!(has_note(&imported, "notify_master"));
    assert!(has_note(&imported, "keepalived.conf.master:29: preempt"));
    assert!(has_note(&imported, "check_my_service.sh:4: DB_HOST=whpg-m"));
    assert!(has_note(&imported, "enable_script_security"));
    assert!(has_note(
        &imported,
        "keepalived.conf.master:5: script_user gpadmin"
    ));
    // The header says where the output came from, and lists the same notes.
    assert!(imported
        .toml
        .contains("keepalived.conf.master (node whpg-m)"));
    assert!(imported.toml.contains("# not imported ("));
    for n in &imported.not_imported {
        assert!(
            imported.toml.contains(&n.to_string()),
            "{n} missing from the output"
        );
    }
}

#[test]
fn seed_v1_with_nopreempt_on_the_standby_does_not_fail_over_on_a_database_failure() {
    // The seed's README: nopreempt on the BACKUP node = fail over on host or network loss only.
    let dir = tempdir("nopreempt");
    for f in ["keepalived.conf.master", "keepalived.conf.backup"] {
        let mut text = std::fs::read_to_string(fixture(&format!("seed-v1/{f}"))).unwrap();
        if f.ends_with("backup") {
            text = text.replace("    #nopreempt\n    preempt\n", "    nopreempt\n");
        }
        std::fs::write(dir.join(f), text).unwrap();
    }
    let files = [
        dir.join("keepalived.conf.master"),
        dir.join("keepalived.conf.backup"),
    ];
    let dirs = ScriptDirs {
        dirs: vec![fixture("seed-v1/master"), fixture("seed-v1/backup")],
    };
    let (imported, _) = import_files(&files, &dirs, &Options::default()).expect("import");
    let c = &load_each(&imported)[0];
    assert_eq!(triggers(c), ["node-loss", "network-loss"]);
    assert!(
        imported
            .toml
            .contains("database-failure left out: nopreempt on the standby"),
        "{}",
        imported.toml
    );
}

#[test]
fn seed_v2_pair_without_weight_with_gateway_quorum() {
    let imported = import(
        &[
            "seed-v2/keepalived.conf.master",
            "seed-v2/keepalived.conf.backup",
        ],
        &["seed-v2/scripts"],
        Options {
            node_names: Some(vec!["cdw".into(), "scdw".into()]),
            ..Options::default()
        },
    )
    .expect("import");
    let configs = load_each(&imported);
    let c = &configs[1];
    assert_eq!(c.local.name, "scdw");
    assert_eq!(node(c, "cdw").priority, 100);
    assert_eq!(node(c, "scdw").priority, 90);
    assert_eq!(c.vips[0].label.as_deref(), Some("eth1:0"));
    assert_eq!(c.vips[0].device, "eth1");
    assert_eq!(c.health.interval, Duration::from_secs(3));
    assert_eq!((c.health.fall, c.health.rise), (2, 1));
    // No weight: a failing check put the coordinator in FAULT, nopreempt or not.
    assert_eq!(
        triggers(c),
        ["node-loss", "network-loss", "database-failure"]
    );
    // The gateway quorum script (defined, not tracked) and the FAULT script's ping.
    assert_eq!(
        c.witness.hosts,
        vec![std::net::IpAddr::V4(ip("192.168.10.1"))]
    );
    assert!(c.failover.fence_when_isolated);
    assert_eq!(
        c.database.data_directory,
        Path::new("/data1/coordinator/gpseg-1")
    );
    assert_eq!(
        c.database.greenplum_path.as_deref(),
        Some(Path::new("/usr/local/greenplum-db/greenplum_path.sh"))
    );
    assert_eq!(c.database.dbname, "gpadmin");
    assert!(has_note(
        &imported,
        "vrrp_script chk_gateway_quorum interval 3s fall 2 rise 2"
    ));
    assert!(
        !has_note(&imported, "preempt ("),
        "nopreempt is set on both"
    );
}

#[test]
fn one_file_derives_the_peer_from_unicast_peer() {
    let imported = import(
        &["seed-v2/keepalived.conf.backup"],
        &["seed-v2/scripts"],
        Options::default(),
    )
    .expect("import");
    assert_eq!(imported.node_names, ["scdw", "192.168.10.11"]);
    let c = &load_each(&imported)[0];
    assert_eq!(node(c, "scdw").address, ip("192.168.10.12"));
    assert_eq!(node(c, "scdw").priority, 90);
    let peer = node(c, "192.168.10.11");
    assert_eq!(peer.address, ip("192.168.10.11"));
    assert!(
        peer.priority > 90,
        "the BACKUP file's peer is assumed higher"
    );
    assert!(imported
        .assumptions
        .iter()
        .any(|a| a.contains("the other node is 192.168.10.11 (the unicast_peer at")));
    assert!(imported
        .assumptions
        .iter()
        .any(|a| a.contains("the other node's priority is")));
    assert!(imported
        .toml
        .contains("# assumed: the other node is 192.168.10.11"));
}

#[test]
fn multicast_v3_pair() {
    let imported = import(
        &[
            "multicast/keepalived.conf.node1",
            "multicast/keepalived.conf.node2",
        ],
        &[],
        Options::default(),
    )
    .expect("import");
    let c = &load_each(&imported)[0];
    assert_eq!(c.vrrp.transport.as_str(), "multicast");
    assert_eq!(c.vrrp.version.number(), 3);
    assert_eq!(c.vrrp.advert_interval, Duration::from_millis(100));
    assert_eq!(c.vrrp.v3_checksum.as_str(), "vrrp-only");
    assert_eq!(c.vrrp.auth_pass, None);
    assert_eq!(c.vrrp.garp.repeat, 3);
    assert_eq!(c.vrrp.garp.interval, Duration::from_millis(1));
    assert_eq!(c.vrrp.garp.master_delay, Duration::from_secs(1));
    assert_eq!(c.vrrp.garp.refresh, Duration::from_secs(60));
    assert_eq!(node(c, "pg1").address, ip("10.0.3.11"));
    assert_eq!(node(c, "pg2").priority, 140);
    assert_eq!(c.vips.len(), 2);
    assert_eq!(
        (c.vips[1].address, c.vips[1].prefix_len),
        (ip("10.0.3.101"), 32)
    );
    assert_eq!(c.vips[1].label.as_deref(), Some("ens4:ro"));
    assert_eq!(c.health.interval, Duration::from_millis(500));
    assert_eq!(c.health.timeout, Duration::from_millis(300));
    assert_eq!(c.database.flavor.as_str(), "postgres");
    assert_eq!(
        c.database.endpoint,
        DbEndpoint::SocketDir(PathBuf::from("/var/run/postgresql"))
    );
    assert_eq!(c.database.port, 5433);
    assert_eq!(c.database.os_user, "postgres");
    assert_eq!(
        c.database.bin_dir.as_deref(),
        Some(Path::new("/usr/lib/postgresql/16/bin"))
    );
    assert!(has_note(&imported, "track_interface"));
    assert!(has_note(&imported, "notification_email"));
    assert!(has_note(&imported, "vrrp_garp_master_refresh_repeat 2"));
}

#[test]
fn multicast_single_file_needs_the_addresses() {
    let errs = import(
        &["multicast/keepalived.conf.node2"],
        &[],
        Options::default(),
    )
    .unwrap_err();
    assert!(
        errs.iter().any(
            |e| e.contains("multicast configuration does not name the other node")
                && e.contains("--node-addresses")
        ),
        "{errs:?}"
    );
    let imported = import(
        &["multicast/keepalived.conf.node2"],
        &[],
        Options {
            node_addresses: Some(vec![ip("10.0.3.12"), ip("10.0.3.11")]),
            node_names: Some(vec!["pg2".into(), "pg1".into()]),
            ..Options::default()
        },
    )
    .expect("import");
    let c = &load_each(&imported)[0];
    assert_eq!(c.local.name, "pg2");
    assert_eq!(node(c, "pg1").address, ip("10.0.3.11"));
}

#[test]
fn several_instances_need_instance() {
    let errs = import(&["several/keepalived.conf"], &[], Options::default()).unwrap_err();
    let e = errs.join("\n");
    assert!(e.contains("has 2 vrrp_instances"), "{e}");
    assert!(
        e.contains("VI_WEB (virtual_router_id 52, VIPs 10.1.0.200/24)"),
        "{e}"
    );
    assert!(
        e.contains("VI_DB (virtual_router_id 51, VIPs 10.1.0.100/24)"),
        "{e}"
    );
    assert!(e.contains("--instance NAME"), "{e}");

    let imported = import(
        &["several/keepalived.conf"],
        &[],
        Options {
            instance: Some("VI_DB".into()),
            ..Options::default()
        },
    )
    .expect("import");
    let c = &load_each(&imported)[0];
    assert_eq!(c.vrrp.vrid, 51);
    assert_eq!(c.vips[0].label.as_deref(), Some("eth0:db"));
    assert_eq!(c.database.port, 6000);
    assert_eq!(c.database.dbname, "template1");
    assert_eq!(
        c.database.data_directory,
        Path::new("/gpdata/master/gpseg-1")
    );
    assert!(has_note(&imported, "vrrp_instance VI_WEB"));
    assert!(has_note(&imported, "vrrp_sync_group G1"));
    assert!(has_note(&imported, "virtual_server 10.1.0.200 80"));
    let errs = import(
        &["several/keepalived.conf"],
        &[],
        Options {
            instance: Some("VI_X".into()),
            ..Options::default()
        },
    )
    .unwrap_err();
    assert!(
        errs.join("\n").contains("has no vrrp_instance VI_X"),
        "{errs:?}"
    );
}

#[test]
fn include_with_a_glob_and_inside_a_block() {
    let imported = import(
        &["include/keepalived.conf"],
        &["include/scripts"],
        Options::default(),
    )
    .expect("import");
    let c = &load_each(&imported)[0];
    assert_eq!(c.local.name, "scdw");
    assert_eq!(c.vrrp.interface, "bond0");
    assert_eq!(c.vrrp.vrid, 61);
    assert_eq!(c.vrrp.advert_interval, Duration::from_secs(2));
    // keepalived sends the first 8 bytes of a longer password.
    assert_eq!(
        c.vrrp.auth_pass.as_ref().map(|s| s.expose()),
        Some("longerth")
    );
    assert!(has_note(&imported, "longer than 8 bytes"));
    assert_eq!(c.vrrp.garp.master_delay, Duration::from_secs(2));
    // From vips.inc, included inside virtual_ipaddress { }.
    assert_eq!(c.vips[0].address, ip("10.2.0.100"));
    assert_eq!(c.vips[0].label.as_deref(), Some("bond0:1"));
    assert!(has_note(
        &imported,
        "vips.inc:1: virtual_ipaddress option brd 10.2.0.255"
    ));
    // From conf.d/10-checks.conf.
    assert_eq!((c.health.fall, c.health.rise), (3, 2));
    assert_eq!(c.witness.hosts, vec![std::net::IpAddr::V4(ip("10.2.0.1"))]);
    // nopreempt on this (standby) node with weight 20: no failover on a database failure.
    assert_eq!(triggers(c), ["node-loss", "network-loss"]);
    assert_eq!(
        c.database.greenplum_path.as_deref(),
        Some(Path::new("/usr/local/greenplum-db-7/greenplum_path.sh"))
    );
    assert_eq!(c.database.endpoint, DbEndpoint::Host("localhost".into()));
    assert!(has_note(&imported, "include optional.d/*.conf"));
    assert!(
        imported.toml.contains("#   included: "),
        "{}",
        imported.toml
    );
    assert!(
        imported.toml.contains("20-instance.conf (from "),
        "{}",
        imported.toml
    );
}

#[test]
fn include_cycle_is_an_error() {
    let errs = import(&["include/cycle/a.conf"], &[], Options::default()).unwrap_err();
    let e = errs.join("\n");
    assert!(e.contains("b.conf:1:"), "{e}");
    assert!(e.contains("includes itself"), "{e}");
}

#[test]
fn odd_formatting_tabs_crlf_quotes_one_line_blocks() {
    let imported = import(&["odd/keepalived.conf"], &[], Options::default()).expect("import");
    let c = &load_each(&imported)[0];
    assert_eq!(c.local.name, "cdw");
    assert_eq!(c.vrrp.vrid, 33);
    assert_eq!(c.vrrp.interface, "ens3");
    assert_eq!(node(c, "cdw").priority, 150);
    assert_eq!(
        c.vrrp.auth_pass.as_ref().map(|s| s.expose()),
        Some("p#ss!1"),
        "quoted # and ! are not comments"
    );
    assert_eq!(c.vips[0].label.as_deref(), Some("ens3:vip"));
    assert_eq!(node(c, "10.20.0.12").address, ip("10.20.0.12"));
    assert_eq!(c.vrrp.garp.repeat, 2);
    assert_eq!(c.vrrp.garp.master_delay, Duration::from_secs(10));
    // The check is a pg_isready command line in the configuration itself.
    assert_eq!(c.database.port, 6432);
    assert_eq!(c.health.timeout, Duration::from_secs(2));
    assert_eq!(c.health.interval, Duration::from_secs(2));
    assert_eq!(c.database.data_directory, Path::new("/srv/pg/data"));
    assert_eq!(c.witness.hosts, vec![std::net::IpAddr::V4(ip("10.20.0.1"))]);
    assert!(has_note(&imported, "preempt_delay 30"));
    assert!(
        !has_note(&imported, "script /usr/pgsql/bin/pg_isready"),
        "a program is not read as a script"
    );
}

#[test]
fn conflicting_files_name_both_places_and_never_show_the_password() {
    let dir = tempdir("conflict");
    let master = std::fs::read_to_string(fixture("seed-v2/keepalived.conf.master")).unwrap();
    let backup = std::fs::read_to_string(fixture("seed-v2/keepalived.conf.backup")).unwrap();
    std::fs::write(dir.join("a.conf"), &master).unwrap();
    std::fs::write(
        dir.join("b.conf"),
        backup
            .replace("virtual_router_id 51", "virtual_router_id 52")
            .replace("auth_pass secretpw", "auth_pass otherpw1"),
    )
    .unwrap();
    let files = [dir.join("a.conf"), dir.join("b.conf")];
    let dirs = ScriptDirs {
        dirs: vec![fixture("seed-v2/scripts")],
    };
    let errs = import_files(&files, &dirs, &Options::default()).unwrap_err();
    let e = errs.join("\n");
    assert!(
        e.contains("a.conf:31")
            && e.contains("b.conf:31")
            && e.contains("virtual_router_id differs"),
        "{e}"
    );
    assert!(
        e.contains("a.conf:40") && e.contains("auth_pass differs"),
        "{e}"
    );
    assert!(!e.contains("secretpw") && !e.contains("otherpw1"), "{e}");
}

#[test]
fn settings_that_may_differ_per_node_are_listed_not_dropped() {
    let dir = tempdir("garp");
    for n in ["node1", "node2"] {
        let mut text =
            std::fs::read_to_string(fixture(&format!("multicast/keepalived.conf.{n}"))).unwrap();
        if n == "node2" {
            text = text
                .replace("vrrp_garp_master_delay 1", "vrrp_garp_master_delay 3")
                .replace("    fall 2\n", "    fall 4\n");
        }
        std::fs::write(dir.join(format!("keepalived.conf.{n}")), text).unwrap();
    }
    for f in ["pg_check.sh", "pg_promote.sh"] {
        std::fs::copy(fixture(&format!("multicast/{f}")), dir.join(f)).unwrap();
    }
    let files = [
        dir.join("keepalived.conf.node1"),
        dir.join("keepalived.conf.node2"),
    ];
    let (imported, config) =
        import_files(&files, &ScriptDirs::default(), &Options::default()).expect("import");
    assert_eq!(config.vrrp.garp.master_delay, Duration::from_secs(1));
    assert_eq!(config.health.fall, 2);
    assert!(
        has_note(&imported, "keepalived.conf.node2:5: GARP master_delay 3s"),
        "{:?}",
        imported.not_imported
    );
    assert!(
        has_note(&imported, "differs from 1s"),
        "{:?}",
        imported.not_imported
    );
    assert!(
        has_note(
            &imported,
            "vrrp_script chk_pg interval 500ms timeout 300ms fall 4 rise 2"
        ),
        "{:?}",
        imported.not_imported
    );
}

#[test]
fn template_placeholders_are_errors() {
    let dir = tempdir("template");
    let text = std::fs::read_to_string(fixture("seed-v2/keepalived.conf.master"))
        .unwrap()
        .replace("192.168.10.12", "<Standby_Coordinator_IP_ADDR>");
    std::fs::write(dir.join("keepalived.conf"), text).unwrap();
    let errs = import_files(
        &[dir.join("keepalived.conf")],
        &ScriptDirs {
            dirs: vec![fixture("seed-v2/scripts")],
        },
        &Options::default(),
    )
    .unwrap_err();
    assert!(
        errs.iter().any(|e| e.contains("keepalived.conf:45")
            && e.contains("template placeholder <Standby_Coordinator_IP_ADDR>")),
        "{errs:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The real binary, end to end.

fn whpg_ha() -> Command {
    Command::new(env!("CARGO_BIN_EXE_whpg-ha"))
}

fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "whpg-ha-import-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn binary_writes_a_file_that_check_config_accepts() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir("binary");
    let out_file = dir.join("whpg-ha.toml");
    let run = |force: bool| {
        let mut cmd = whpg_ha();
        cmd.arg("import-keepalived")
            .arg(fixture("seed-v2/keepalived.conf.master"))
            .arg(fixture("seed-v2/keepalived.conf.backup"))
            .arg("--scripts")
            .arg(fixture("seed-v2/scripts"))
            .args(["--node-names", "cdw,scdw", "--out"])
            .arg(&out_file);
        if force {
            cmd.arg("--force");
        }
        cmd.output().expect("run whpg-ha")
    };
    let out = run(false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(out.stdout.is_empty(), "the configuration went to --out");
    assert!(stderr.contains("not imported ("), "{stderr}");
    assert!(stderr.contains("keepalived.conf.master:"), "{stderr}");
    assert!(!stderr.contains("secretpw"), "password on stderr: {stderr}");
    let text = std::fs::read_to_string(&out_file).expect("output");
    assert!(text.contains("auth_pass = \"secretpw\""), "{text}");
    let mode = std::fs::metadata(&out_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    for name in ["cdw", "scdw"] {
        let check = whpg_ha()
            .arg("check-config")
            .arg(&out_file)
            .args(["--node", name])
            .output()
            .expect("run check-config");
        let stderr = String::from_utf8_lossy(&check.stderr);
        assert_eq!(
            check.status.code(),
            Some(0),
            "check-config {name}: {stderr}"
        );
        let stdout = String::from_utf8_lossy(&check.stdout);
        assert!(stdout.contains("vrid = 51"), "{stdout}");
        assert!(stdout.contains(&format!("node = \"{name}\"")), "{stdout}");
    }

    // An existing file is kept unless --force.
    std::fs::write(&out_file, "keep me").unwrap();
    let again = run(false);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), "keep me");
    let forced = run(true);
    assert_eq!(forced.status.code(), Some(0));
    assert!(std::fs::read_to_string(&out_file)
        .unwrap()
        .contains("[nodes.scdw]"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn binary_prints_to_stdout_and_reports_syntax_errors_with_file_and_line() {
    let out = whpg_ha()
        .arg("import-keepalived")
        .arg(fixture("odd/keepalived.conf"))
        .output()
        .expect("run whpg-ha");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("# whpg-ha configuration imported from keepalived"));
    assert!(stdout.contains("vrid = 33"));

    let dir = tempdir("syntax");
    let bad = dir.join("keepalived.conf");
    std::fs::write(
        &bad,
        "global_defs {\n    router_id x\n}\nvrrp_instance VI_1 {\n    state MASTER\n",
    )
    .unwrap();
    let out = whpg_ha()
        .arg("import-keepalived")
        .arg(&bad)
        .output()
        .expect("run whpg-ha");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains(&format!(
            "{}:4: the block of \"vrrp_instance\" opened here is never closed",
            bad.display()
        )),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
