//! Valid configurations: the examples, documented defaults, node resolution, masking and round trips.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use whpg_ha::config::*;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

const MINIMAL: &str = r#"
[vrrp]
interface = "eth1"
vrid = 51

[[vip]]
address = "192.168.56.100/24"

[nodes.cdw]
address = "192.168.10.11"

[nodes.scdw]
address = "192.168.10.12"
priority = 98

[database]
flavor = "warehousepg"
host = "127.0.0.1"
data_directory = "/data/coordinator/gpseg-1"
"#;

/// What `render_effective` turns a config into once parsed back: the password becomes the mask.
/// Warning lines refer to the file they came from, so they are left out of the comparison.
fn masked(config: &Config) -> Config {
    let mut expected = without_lines(config);
    if expected.vrrp.auth_pass.is_some() {
        expected.vrrp.auth_pass = Some(Secret::new(Secret::MASK));
    }
    expected
}

fn without_lines(config: &Config) -> Config {
    let mut c = config.clone();
    for w in &mut c.warnings {
        w.line = None;
    }
    c
}

#[test]
fn warehousepg_example_mirrors_the_seed() {
    let c = load(&example("whpg-ha.toml"), Some("cdw")).expect("example must be valid");
    assert_eq!(c.local.name, "cdw");
    assert_eq!(c.local.address, Ipv4Addr::new(192, 168, 10, 11));
    assert_eq!(c.local.priority, 100);
    let peer = c.peer().expect("a peer");
    assert_eq!(
        (peer.name.as_str(), peer.address, peer.priority),
        ("scdw", Ipv4Addr::new(192, 168, 10, 12), 98)
    );
    assert_eq!(c.vrrp.vrid, 51);
    assert_eq!(c.vrrp.version, VrrpVersion::V2);
    assert_eq!(c.vrrp.advert_interval, Duration::from_secs(1));
    assert_eq!(c.vrrp.transport, Transport::Unicast);
    assert_eq!(c.vrrp_destinations(), vec![Ipv4Addr::new(192, 168, 10, 12)]);
    assert_eq!(c.vrrp.auth_data(), Some(*b"wHpG51ha"));
    assert_eq!(
        c.vips,
        vec![Vip {
            address: Ipv4Addr::new(192, 168, 56, 100),
            prefix_len: 24,
            device: "eth1".into(),
            label: Some("eth1:0".into()),
        }]
    );
    assert_eq!(c.database.flavor, Flavor::WarehousePg);
    assert_eq!(
        c.database.bin_dir,
        Some(PathBuf::from("/usr/local/greenplum-db/bin"))
    );
    assert_eq!(c.witness.hosts, vec![IpAddr::from([192, 168, 10, 1])]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn postgres_example_runs_v3_at_100ms() {
    let c = load(&example("postgres.toml"), Some("pg2")).expect("example must be valid");
    assert_eq!(c.local.name, "pg2");
    assert_eq!(c.vrrp.version, VrrpVersion::V3);
    assert_eq!(c.vrrp.advert_interval, Duration::from_millis(100));
    assert_eq!(c.database.flavor, Flavor::Postgres);
    assert_eq!(
        c.database.endpoint,
        DbEndpoint::SocketDir("/var/run/postgresql".into())
    );
    assert_eq!(
        c.commands.promote.argv,
        ["{bin_dir}/pg_ctl", "promote", "-D", "{data_directory}"]
    );
    let vars = c.template_vars();
    let argv = c
        .commands
        .promote
        .expand(|name| vars.get(name).cloned())
        .expect("every placeholder known");
    assert_eq!(
        argv,
        [
            "/usr/lib/postgresql/15/bin/pg_ctl",
            "promote",
            "-D",
            "/var/lib/postgresql/15/main"
        ]
    );
    assert_eq!(c.failover.confirmation, Duration::ZERO);
}

#[test]
fn defaults_are_filled_as_documented() {
    let c = parse(MINIMAL, Some("cdw")).expect("minimal config is valid");
    assert_eq!(c.local.priority, 100);
    let v = &c.vrrp;
    assert_eq!(v.version, VrrpVersion::V2);
    assert_eq!(v.advert_interval, Duration::from_secs(1));
    assert_eq!(v.transport, Transport::Unicast);
    assert_eq!(v.auth_pass, None);
    assert!(!v.preempt);
    assert_eq!(v.preempt_delay, Duration::ZERO);
    assert_eq!(v.v3_checksum, V3Checksum::PseudoHeader);
    assert!(!v.accept_either_checksum);
    assert_eq!(
        v.garp,
        Garp {
            repeat: 5,
            interval: Duration::ZERO,
            master_delay: Duration::from_secs(5),
            refresh: Duration::ZERO,
            on_lower_priority: true,
        }
    );
    assert_eq!(c.vips[0].device, "eth1");
    assert_eq!(c.vips[0].label, None);
    let d = &c.database;
    assert_eq!(d.port, 5432);
    assert_eq!(d.user, "gpadmin");
    assert_eq!(d.os_user, "gpadmin");
    assert_eq!(d.dbname, "postgres");
    assert_eq!(d.password_file, None);
    assert_eq!(
        d.greenplum_path,
        Some("/usr/local/greenplum-db/greenplum_path.sh".into())
    );
    assert_eq!(d.bin_dir, Some("/usr/local/greenplum-db/bin".into()));
    assert_eq!(
        c.health,
        Health {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(500),
            fall: 3,
            rise: 2,
            held_session: true,
            connect_interval: Duration::from_secs(2),
        }
    );
    let f = &c.failover;
    assert_eq!(f.triggers, Trigger::ALL.to_vec());
    assert_eq!(f.confirmation, Duration::from_secs(3));
    assert_eq!(f.wal_freshness, Duration::from_secs(1));
    assert!(f.fence_when_isolated);
    assert_eq!(
        c.commands.promote,
        CommandSpec {
            argv: vec![
                "{bin_dir}/gpactivatestandby".into(),
                "-a".into(),
                "-d".into(),
                "{data_directory}".into()
            ],
            timeout: Duration::from_secs(120),
        }
    );
    assert_eq!(c.commands.fence.argv[1..4], ["stop", "-m", "immediate"]);
    assert_eq!(c.commands.rejoin.argv[0], "{bin_dir}/gpinitstandby");
    assert_eq!(c.witness.hosts, Vec::<IpAddr>::new());
    assert_eq!(c.witness.quorum, 0);
    // The node's own address and loopback, never every address.
    assert_eq!(
        c.api.listen,
        vec![
            SocketAddr::from(([192, 168, 10, 11], 8008)),
            SocketAddr::from(([127, 0, 0, 1], 8008))
        ]
    );
    assert_eq!(c.api.tls, None);
    assert_eq!(c.api.max_connections, 128);
    assert_eq!(c.api.header_timeout, Duration::from_secs(5));
    assert_eq!(c.api.idle_timeout, Duration::from_secs(30));
    assert_eq!(c.api.token_file, None);
    assert_eq!(c.journal.path, PathBuf::from("/var/lib/whpg-ha/journal"));
    // Legal but weak settings are pointed out.
    let warned: Vec<&str> = c.warnings.iter().map(|w| w.key.as_str()).collect();
    assert!(
        warned.contains(&"witness.hosts") && warned.contains(&"api.token_file"),
        "{warned:?}"
    );
}

#[test]
fn postgres_defaults_differ_by_flavor() {
    let text = MINIMAL.replace("\"warehousepg\"", "\"postgres\"");
    let c = parse(&text, Some("scdw")).expect("valid");
    assert_eq!(c.database.user, "postgres");
    assert_eq!(c.database.greenplum_path, None);
    assert_eq!(c.database.bin_dir, None);
    assert_eq!(
        c.commands.promote.argv[0], "pg_ctl",
        "without bin_dir, PATH lookup"
    );
    assert_eq!(c.commands.rejoin.argv[0], "pg_basebackup");
    assert!(c
        .commands
        .rejoin
        .argv
        .contains(&"{primary_host}".to_string()));
}

#[test]
fn replication_defaults_to_async_and_reads_the_sync_modes_on_postgres() {
    let c = parse(MINIMAL, Some("cdw")).expect("valid");
    assert_eq!(c.replication.mode, ReplicationMode::Async);
    assert_eq!(c.replication.sync_timeout, Duration::from_secs(10));
    let postgres = MINIMAL.replace("\"warehousepg\"", "\"postgres\"");
    for (mode, expected) in [
        ("sync", ReplicationMode::Sync),
        ("sync-strict", ReplicationMode::SyncStrict),
        ("async", ReplicationMode::Async),
    ] {
        let text =
            format!("{postgres}\n[replication]\nmode = \"{mode}\"\nsync_timeout = \"30s\"\n");
        let c = parse(&text, Some("cdw")).expect("valid");
        assert_eq!(c.replication.mode, expected);
        assert_eq!(c.replication.sync_timeout, Duration::from_secs(30));
        let rendered = c.render_effective();
        assert!(
            rendered.contains(&format!(
                "[replication]\nmode = \"{mode}\"\nsync_timeout = \"30s\""
            )),
            "{rendered}"
        );
    }
    // A sync_timeout that does not outlast the confirmation time is pointed out.
    let text = format!("{postgres}\n[replication]\nmode = \"sync\"\nsync_timeout = \"2s\"\n");
    let c = parse(&text, Some("cdw")).expect("legal");
    let warning = c
        .warnings
        .iter()
        .find(|w| w.key == "replication.sync_timeout")
        .expect("a warning");
    assert!(warning.message.contains("2000 ms"), "{}", warning.message);
}

#[test]
fn witness_quorum_defaults_to_a_majority() {
    let text = format!("{MINIMAL}[witness]\nhosts = [\"10.0.0.1\", \"10.0.0.2\", \"10.0.0.3\"]\n");
    let c = parse(&text, Some("cdw")).expect("valid");
    assert_eq!(c.witness.quorum, 2);
}

#[test]
fn node_is_chosen_by_flag_then_key_then_host_name() {
    let with_key = format!("node = \"scdw\"\n{MINIMAL}");
    let never = || -> Result<String, String> { Err("host name must not be consulted".into()) };

    let c = parse_with_hostname(&with_key, Some("cdw"), &never).expect("flag wins");
    assert_eq!(c.local.name, "cdw");
    assert_eq!(c.peer().map(|p| p.name.as_str()), Some("scdw"));

    let c = parse_with_hostname(&with_key, None, &never).expect("key next");
    assert_eq!(c.local.name, "scdw");
    assert_eq!(c.peer().map(|p| p.name.as_str()), Some("cdw"));

    let fqdn = || -> Result<String, String> { Ok("scdw.example.com".into()) };
    let c = parse_with_hostname(MINIMAL, None, &fqdn).expect("host name last, short form accepted");
    assert_eq!(c.local.name, "scdw");

    let other = || -> Result<String, String> { Ok("sdw7".into()) };
    let errors = parse_with_hostname(MINIMAL, None, &other).expect_err("no such node");
    let e = errors.for_key("node").next().expect("node error");
    assert!(
        e.message.contains("host") && e.message.contains("cdw, scdw"),
        "{e}"
    );
}

#[test]
fn real_host_name_is_used_when_nothing_else_says() {
    let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") else {
        return;
    };
    let host = host.trim();
    if host.is_empty() || host.contains('.') || host.contains('"') {
        return;
    }
    let text = MINIMAL.replace("[nodes.cdw]", &format!("[nodes.{host}]"));
    let c = parse(&text, None).expect("this host's entry is found");
    assert_eq!(c.local.name, host);
}

#[test]
fn secrets_never_appear_in_output() {
    let text = MINIMAL.replace("vrid = 51", "vrid = 51\nauth_pass = \"s3cr3t!x\"");
    let c = parse(&text, Some("cdw")).expect("valid");
    assert_eq!(
        c.vrrp.auth_pass.as_ref().map(Secret::expose),
        Some("s3cr3t!x")
    );
    let rendered = c.render_effective();
    assert!(!rendered.contains("s3cr3t!x"), "{rendered}");
    assert!(rendered.contains("auth_pass = \"********\""), "{rendered}");
    assert!(!format!("{c:?}").contains("s3cr3t!x"));

    let too_long = MINIMAL.replace("vrid = 51", "vrid = 51\nauth_pass = \"s3cr3t!xyz\"");
    let errors = parse(&too_long, Some("cdw")).expect_err("9 bytes");
    assert!(!errors.to_string().contains("s3cr3t"), "{errors}");
}

#[test]
fn rendered_configuration_parses_back_to_the_same_config() {
    let configs = [
        load(&example("whpg-ha.toml"), Some("cdw")),
        load(&example("whpg-ha.toml"), Some("scdw")),
        load(&example("postgres.toml"), Some("pg1")),
        parse(MINIMAL, Some("cdw")),
        parse(
            &MINIMAL.replace("host = \"127.0.0.1\"", "socket_dir = \"/tmp\""),
            Some("scdw"),
        ),
        parse(&format!("{MINIMAL}{API_TLS}"), Some("cdw")),
        parse(
            &format!(
                "{}\n[replication]\nmode = \"sync-strict\"\n",
                MINIMAL.replace("\"warehousepg\"", "\"postgres\"")
            ),
            Some("scdw"),
        ),
    ];
    for config in configs {
        let config = config.expect("valid");
        let rendered = config.render_effective();
        let again = parse(&rendered, None)
            .unwrap_or_else(|e| panic!("rendered config does not parse:\n{e}\n{rendered}"));
        assert_eq!(without_lines(&again), masked(&config), "{rendered}");
        assert_eq!(again.render_effective(), rendered);
    }
}

#[test]
fn missing_file_names_the_path() {
    let errors = load(Path::new("/nonexistent/whpg-ha.toml"), Some("cdw")).expect_err("no file");
    assert!(
        errors.to_string().contains("/nonexistent/whpg-ha.toml"),
        "{errors}"
    );
}

const API_TLS: &str = r#"
[api]
listen = ["192.168.10.11:8443", "127.0.0.1:8443"]
token_file = "/etc/whpg-ha/token"
tls_cert_file = "/etc/whpg-ha/node.pem"
tls_key_file = "/etc/whpg-ha/node.key"
tls_ca_file = "/etc/whpg-ha/ca.pem"
tls_client_ca_file = "/etc/whpg-ha/clients.pem"
max_connections = 32
header_timeout = "2s"
idle_timeout = "10s"
"#;

#[test]
fn api_tls_and_limits_are_read_as_written() {
    let c = parse(&format!("{MINIMAL}{API_TLS}"), Some("cdw")).expect("valid");
    assert_eq!(
        c.api.tls,
        Some(ApiTls {
            cert_file: "/etc/whpg-ha/node.pem".into(),
            key_file: "/etc/whpg-ha/node.key".into(),
            ca_file: "/etc/whpg-ha/ca.pem".into(),
            client_ca_file: Some("/etc/whpg-ha/clients.pem".into()),
        })
    );
    assert_eq!(c.api.max_connections, 32);
    assert_eq!(c.api.header_timeout, Duration::from_secs(2));
    assert_eq!(c.api.idle_timeout, Duration::from_secs(10));
    assert_eq!(c.api.port(), Some(8443));
    // Listening on every address is legal but pointed out.
    let open = MINIMAL.to_string() + "[api]\nlisten = [\"0.0.0.0:8008\"]\n";
    let c = parse(&open, Some("cdw")).expect("valid");
    assert!(
        c.warnings
            .iter()
            .any(|w| w.key == "api.listen" && w.message.contains("every address")),
        "{:?}",
        c.warnings
    );
}

#[test]
fn the_default_listen_addresses_are_each_nodes_own_and_loopback() {
    for (node, own) in [("cdw", [192, 168, 10, 11]), ("scdw", [192, 168, 10, 12])] {
        let c = parse(MINIMAL, Some(node)).expect("valid");
        assert_eq!(
            c.api.listen,
            vec![
                SocketAddr::from((own, 8008)),
                SocketAddr::from(([127, 0, 0, 1], 8008))
            ],
            "{node}"
        );
        assert!(c.api.listen.iter().all(|a| !a.ip().is_unspecified()));
    }
}
