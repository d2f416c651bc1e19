//! Malformed configurations: each must be rejected with its own key and message.

use whpg_ha::config::{parse, ConfigErrors};

/// A small valid WarehousePG configuration that each case breaks in one place.
const BASE: &str = r#"
[vrrp]
interface = "eth1"
vrid = 51
advert_interval = "1s"

[[vip]]
address = "192.168.56.100/24"

[nodes.cdw]
address = "192.168.10.11"
priority = 100

[nodes.scdw]
address = "192.168.10.12"
priority = 98

[database]
flavor = "warehousepg"
host = "127.0.0.1"
data_directory = "/data/coordinator/gpseg-1"
"#;

/// BASE with `from` replaced by `to` (which must occur).
fn edit(from: &str, to: &str) -> String {
    assert!(
        BASE.contains(from),
        "case edits text that is not in BASE: {from}"
    );
    BASE.replacen(from, to, 1)
}

/// BASE with `extra` appended (new tables, or keys of [database], the last table).
fn add(extra: &str) -> String {
    format!("{BASE}{extra}\n")
}

fn errors_of(text: &str, node: Option<&str>) -> ConfigErrors {
    match parse(text, node) {
        Ok(_) => panic!("configuration was accepted:\n{text}"),
        Err(errors) => errors,
    }
}

#[test]
fn base_configuration_is_valid() {
    parse(BASE, Some("cdw")).expect("BASE must be valid");
}

#[test]
fn each_malformed_configuration_reports_its_specific_error() {
    // (what is wrong, configuration text, key expected, part of the message expected)
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "vrid too large",
            edit("vrid = 51", "vrid = 300"),
            "vrrp.vrid",
            "VRID must be between 1 and 255",
        ),
        (
            "vrid zero",
            edit("vrid = 51", "vrid = 0"),
            "vrrp.vrid",
            "VRID must be between 1 and 255",
        ),
        (
            "vrid missing",
            edit("vrid = 51", ""),
            "vrrp.vrid",
            "required key is missing",
        ),
        (
            "version 4",
            edit("vrid = 51", "vrid = 51\nversion = 4"),
            "vrrp.version",
            "must be 2 or 3",
        ),
        (
            "v3 with auth",
            edit("vrid = 51", "vrid = 51\nversion = 3\nauth_pass = \"abc\""),
            "vrrp.auth_pass",
            "VRRPv3 has no authentication",
        ),
        (
            "password too long",
            edit("vrid = 51", "vrid = 51\nauth_pass = \"123456789\""),
            "vrrp.auth_pass",
            "at most 8 bytes",
        ),
        (
            "empty password",
            edit("vrid = 51", "vrid = 51\nauth_pass = \"\""),
            "vrrp.auth_pass",
            "empty",
        ),
        (
            "v2 fractional interval",
            edit("advert_interval = \"1s\"", "advert_interval = \"1.5s\""),
            "vrrp.advert_interval",
            "whole seconds",
        ),
        (
            "v2 interval too long",
            edit("advert_interval = \"1s\"", "advert_interval = \"256s\""),
            "vrrp.advert_interval",
            "between 1s and 255s",
        ),
        (
            "v3 interval not centiseconds",
            edit(
                "advert_interval = \"1s\"",
                "version = 3\nadvert_interval = \"15ms\"",
            ),
            "vrrp.advert_interval",
            "multiple of 10ms",
        ),
        (
            "v3 interval too long",
            edit(
                "advert_interval = \"1s\"",
                "version = 3\nadvert_interval = \"41s\"",
            ),
            "vrrp.advert_interval",
            "between 10ms and 40.95s",
        ),
        (
            "duration with a space",
            edit("advert_interval = \"1s\"", "advert_interval = \"1 sec\""),
            "vrrp.advert_interval",
            "not a duration",
        ),
        (
            "duration without unit",
            edit("advert_interval = \"1s\"", "advert_interval = 1"),
            "vrrp.advert_interval",
            "needs a unit",
        ),
        (
            "unknown transport",
            edit("vrid = 51", "vrid = 51\ntransport = \"broadcast\""),
            "vrrp.transport",
            "unknown transport",
        ),
        (
            "interface name too long",
            edit(
                "interface = \"eth1\"",
                "interface = \"averyveryverylongname\"",
            ),
            "vrrp.interface",
            "at most 15 bytes",
        ),
        (
            "unknown key",
            edit("vrid = 51", "vrid = 51\nvirtual_router_id = 51"),
            "vrrp.virtual_router_id",
            "unknown field `virtual_router_id`",
        ),
        (
            "wrong type",
            edit("vrid = 51", "vrid = \"51\""),
            "vrrp.vrid",
            "expected an integer",
        ),
        (
            "VIP not an address",
            edit("192.168.56.100/24", "192.168.56.300/24"),
            "vip[0].address",
            "not an IPv4 address",
        ),
        (
            "VIP prefix out of range",
            edit("192.168.56.100/24", "192.168.56.100/33"),
            "vip[0].address",
            "prefix length must be between 0 and 32",
        ),
        (
            "VIP IPv6",
            edit("192.168.56.100/24", "fd00::100/64"),
            "vip[0].address",
            "IPv6",
        ),
        (
            "label of another device",
            edit(
                "address = \"192.168.56.100/24\"",
                "address = \"192.168.56.100/24\"\nlabel = \"eth2:0\"",
            ),
            "vip[0].label",
            "start with \"eth1:\"",
        ),
        (
            "label too long",
            edit(
                "address = \"192.168.56.100/24\"",
                "address = \"192.168.56.100/24\"\nlabel = \"eth1:0123456789ab\"",
            ),
            "vip[0].label",
            "at most 15 bytes",
        ),
        (
            "duplicate VIP",
            edit(
                "[nodes.cdw]",
                "[[vip]]\naddress = \"192.168.56.100/24\"\n\n[nodes.cdw]",
            ),
            "vip[1].address",
            "listed twice",
        ),
        (
            "VIP is a node address",
            edit("192.168.56.100/24", "192.168.10.12/24"),
            "vip[0].address",
            "own address",
        ),
        (
            "one node only",
            edit(
                "[nodes.scdw]\naddress = \"192.168.10.12\"\npriority = 98",
                "",
            ),
            "nodes",
            "a pair needs two",
        ),
        (
            "peer equal to source",
            edit("192.168.10.12", "192.168.10.11"),
            "nodes.scdw.address",
            "unicast peer equal to source",
        ),
        (
            "node address IPv6",
            edit("192.168.10.12", "fd00::12"),
            "nodes.scdw.address",
            "IPv6",
        ),
        (
            "node address a host name",
            edit("192.168.10.12", "scdw.example.com"),
            "nodes.scdw.address",
            "not an IPv4 address",
        ),
        (
            "node address multicast",
            edit("192.168.10.12", "224.0.0.18"),
            "nodes.scdw.address",
            "unicast address",
        ),
        (
            "priority 0",
            edit("priority = 98", "priority = 0"),
            "nodes.scdw.priority",
            "reserved for a master that resigns",
        ),
        (
            "priority 256",
            edit("priority = 98", "priority = 256"),
            "nodes.scdw.priority",
            "between 1 and 255",
        ),
        (
            "both host and socket_dir",
            add("socket_dir = \"/tmp\""),
            "database.socket_dir",
            "both host and socket_dir",
        ),
        (
            "neither host nor socket_dir",
            edit("host = \"127.0.0.1\"", ""),
            "database.host",
            "neither host nor socket_dir",
        ),
        (
            "relative data directory",
            edit("/data/coordinator/gpseg-1", "data/gpseg-1"),
            "database.data_directory",
            "absolute path",
        ),
        (
            "unknown flavor",
            edit("\"warehousepg\"", "\"oracle\""),
            "database.flavor",
            "unknown database flavor",
        ),
        (
            "port 0",
            add("port = 0"),
            "database.port",
            "between 1 and 65535",
        ),
        (
            "os user root",
            add("os_user = \"root\""),
            "database.os_user",
            "refuses to run as root",
        ),
        (
            "greenplum_path with postgres",
            edit(
                "\"warehousepg\"",
                "\"postgres\"\ngreenplum_path = \"/usr/local/greenplum-db/greenplum_path.sh\"",
            ),
            "database.greenplum_path",
            "warehousepg\" only",
        ),
        (
            "health fall 0",
            add("[health]\nfall = 0"),
            "health.fall",
            "between 1 and 1000",
        ),
        (
            "health rise 0",
            add("[health]\nrise = 0"),
            "health.rise",
            "between 1 and 1000",
        ),
        (
            "health timeout 0",
            add("[health]\ntimeout = \"0s\""),
            "health.timeout",
            "must be greater than 0",
        ),
        (
            "health timeout too long",
            add("[health]\ntimeout = \"11s\""),
            "health.timeout",
            "between 1ms and 10s",
        ),
        (
            "unknown trigger",
            add("[failover]\ntriggers = [\"node-loss\", \"meteor\"]"),
            "failover.triggers[1]",
            "unknown failover trigger",
        ),
        (
            "quorum 0",
            add("[witness]\nhosts = [\"192.168.10.1\"]\nquorum = 0"),
            "witness.quorum",
            "between 1 and 1",
        ),
        (
            "quorum above hosts",
            add("[witness]\nhosts = [\"192.168.10.1\", \"192.168.10.2\"]\nquorum = 3"),
            "witness.quorum",
            "between 1 and 2",
        ),
        (
            "witness is a node",
            add("[witness]\nhosts = [\"192.168.10.12\"]"),
            "witness.hosts[0]",
            "a witness must be a third host",
        ),
        (
            "unknown placeholder",
            add("[commands.promote]\nargv = [\"gpactivatestandby\", \"-d\", \"{datadir}\"]"),
            "commands.promote.argv[2]",
            "unknown placeholder {datadir}",
        ),
        (
            "empty argv",
            add("[commands.fence]\nargv = []"),
            "commands.fence.argv",
            "the command is empty",
        ),
        (
            "bin_dir placeholder without bin_dir",
            edit("\"warehousepg\"", "\"postgres\"")
                + "[commands.promote]\nargv = [\"{bin_dir}/pg_ctl\", \"promote\"]\n",
            "commands.promote.argv[0]",
            "database.bin_dir is not set",
        ),
        (
            "listen not a socket address",
            add("[api]\nlisten = [\"localhost:8008\"]"),
            "api.listen[0]",
            "not a socket address",
        ),
        (
            "TLS certificate without its key",
            add("[api]\ntls_cert_file = \"/etc/whpg-ha/node.pem\"\ntls_ca_file = \"/etc/whpg-ha/ca.pem\""),
            "api.tls_key_file",
            "TLS needs tls_cert_file, tls_key_file and tls_ca_file together",
        ),
        (
            "TLS without the CA the CLI verifies with",
            add("[api]\ntls_cert_file = \"/etc/whpg-ha/node.pem\"\ntls_key_file = \"/etc/whpg-ha/node.key\""),
            "api.tls_ca_file",
            "TLS needs tls_cert_file, tls_key_file and tls_ca_file together",
        ),
        (
            "client CA without TLS",
            add("[api]\ntls_client_ca_file = \"/etc/whpg-ha/ca.pem\""),
            "api.tls_cert_file",
            "TLS needs",
        ),
        (
            "relative TLS path",
            add("[api]\ntls_cert_file = \"node.pem\"\ntls_key_file = \"/k\"\ntls_ca_file = \"/c\""),
            "api.tls_cert_file",
            "must be an absolute path",
        ),
        (
            "no connections allowed",
            add("[api]\nmax_connections = 0"),
            "api.max_connections",
            "between 1 and 65536",
        ),
        (
            "header timeout of an hour",
            add("[api]\nheader_timeout = \"1h\""),
            "api.header_timeout",
            "must be between 100ms and 60s",
        ),
        (
            "idle timeout without unit",
            add("[api]\nidle_timeout = 30"),
            "api.idle_timeout",
            "needs a unit",
        ),
        (
            "synchronous replication on WarehousePG",
            add("[replication]\nmode = \"sync\""),
            "replication.mode",
            "a WarehousePG coordinator does its own waiting",
        ),
        (
            "sync-strict on WarehousePG",
            add("[replication]\nmode = \"sync-strict\""),
            "replication.mode",
            "commits alone once none does",
        ),
        (
            "unknown replication mode",
            add("[replication]\nmode = \"synchronous\""),
            "replication.mode",
            "unknown replication mode",
        ),
        (
            "sync timeout too short",
            add("[replication]\nsync_timeout = \"100ms\""),
            "replication.sync_timeout",
            "must be between 1s and 3600s",
        ),
        (
            "unknown key in [replication]",
            add("[replication]\nsync_standby = \"b\""),
            "replication.sync_standby",
            "",
        ),
    ];
    assert!(cases.len() >= 14);
    let mut failures = Vec::new();
    for (what, text, key, fragment) in &cases {
        let errors = errors_of(text, Some("cdw"));
        let hit = errors
            .iter()
            .any(|e| e.key == *key && e.message.contains(fragment));
        if !hit {
            failures.push(format!(
                "{what}: expected {key} with {fragment:?}, got:\n  {}",
                errors.to_string().replace('\n', "\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn unknown_node_names_the_nodes_that_exist() {
    let errors = errors_of(BASE, Some("sdw1"));
    let e = errors
        .for_key("node")
        .next()
        .expect("an error for key node");
    assert!(e.message.contains("cdw, scdw"), "{e}");
    assert!(e.fix.contains("--node"), "{e}");
    assert_eq!(e.value.as_deref(), Some("\"sdw1\""));
}

#[test]
fn every_mistake_of_a_file_is_reported() {
    let text = edit("vrid = 51", "vrid = 300\nversion = 3\nauth_pass = \"pw\"")
        .replace("advert_interval = \"1s\"", "advert_interval = \"1005ms\"")
        .replace("priority = 98", "priority = 0")
        .replace("/data/coordinator/gpseg-1", "relative")
        + "port = 0\n[health]\nfall = 0\n";
    let errors = errors_of(&text, Some("cdw"));
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    for key in [
        "vrrp.vrid",
        "vrrp.auth_pass",
        "vrrp.advert_interval",
        "nodes.scdw.priority",
        "database.data_directory",
        "database.port",
        "health.fall",
    ] {
        assert!(keys.contains(&key), "missing {key} in {keys:?}");
    }
    // Reported in file order.
    let lines: Vec<usize> = errors.iter().filter_map(|e| e.line).collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
}

#[test]
fn errors_carry_the_line_of_the_key() {
    let text = "[vrrp]\ninterface = \"eth1\"\n\n\n\n\nvrid = 300\n";
    let errors = errors_of(text, Some("cdw"));
    let vrid = errors.for_key("vrrp.vrid").next().expect("vrid error");
    assert_eq!(vrid.line, Some(7));
    assert_eq!(
        vrid.to_string(),
        "line 7: vrrp.vrid = 300: VRID must be between 1 and 255 — fix: use the same value from 1 to 255 \
         on both nodes, one no other VRRP router on the segment uses"
    );

    let unknown = edit("[database]\n", "[database]\nflavour = \"postgres\"\n");
    let line = unknown
        .lines()
        .position(|l| l.starts_with("flavour"))
        .map(|i| i + 1);
    let errors = errors_of(&unknown, Some("cdw"));
    let e = errors.iter().next().expect("one error");
    assert_eq!(e.key, "database.flavour");
    assert_eq!(e.line, line);

    let missing = errors_of(&edit("vrid = 51\n", ""), Some("cdw"));
    let e = missing.for_key("vrrp.vrid").next().expect("missing vrid");
    assert_eq!(e.line, Some(2), "a missing key points at its table header");
}

#[test]
fn toml_syntax_errors_name_the_line() {
    let errors = errors_of("[vrrp]\ninterface = \"eth1\"\nvrid = = 5\n", None);
    let e = errors.iter().next().expect("one error");
    assert_eq!(e.line, Some(3), "{e}");
}

#[test]
fn echoed_values_are_safe_to_print() {
    let long = "x".repeat(200);
    // (what, configuration text, key of the error, must appear, must not appear)
    let cases: Vec<(&str, String, &str, String, Vec<String>)> = vec![
        (
            "unquoted password: the parser's message quotes it",
            edit("vrid = 51", "vrid = 51\nauth_pass = 12345678"),
            "vrrp.auth_pass",
            "invalid type: integer `********`".into(),
            vec!["12345678".into()],
        ),
        (
            "password of the wrong type, a float",
            edit("vrid = 51", "vrid = 51\nauth_pass = 1234.5678"),
            "vrrp.auth_pass",
            "`********`".into(),
            vec!["1234.5678".into()],
        ),
        (
            "password as an array",
            edit("vrid = 51", "vrid = 51\nauth_pass = [\"hunter22\"]"),
            "vrrp.auth_pass",
            "invalid type".into(),
            vec!["hunter22".into()],
        ),
        (
            "unquoted password that breaks the TOML syntax",
            edit("vrid = 51", "vrid = 51\nauth_pass = s3cr3tpw"),
            "",
            "line 5:".into(),
            vec!["s3cr3tpw".into()],
        ),
        (
            "a password-like key the file does not know",
            add("db_password = 987654321"),
            "database.db_password",
            "unknown field `db_password`".into(),
            vec!["987654321".into()],
        ),
        (
            "a token of the wrong type",
            add("[api]\ntoken = 55554444"),
            "api.token",
            "unknown field `token`".into(),
            vec!["55554444".into()],
        ),
        (
            "control characters are escaped",
            edit(
                "interface = \"eth1\"",
                "interface = \"e\\u001b[2Jth1234567890123\"",
            ),
            "vrrp.interface",
            "\"e\\u001B[2Jth1234567890123\"".into(),
            vec!["\u{1b}".into()],
        ),
        (
            "a huge value is cut with its size",
            edit("interface = \"eth1\"", &format!("interface = \"{long}\"")),
            "vrrp.interface",
            format!("vrrp.interface = \"{}…\" (200 bytes)", "x".repeat(80)),
            vec!["x".repeat(81)],
        ),
        (
            "a huge value in the parser's own message is cut too",
            edit("vrid = 51", &format!("vrid = \"{long}\"")),
            "vrrp.vrid",
            format!("\"{}…\" (200 bytes)", "x".repeat(80)),
            vec!["x".repeat(81)],
        ),
    ];
    let mut failures = Vec::new();
    for (what, text, key, wanted, unwanted) in &cases {
        let errors = errors_of(text, Some("cdw"));
        let shown = errors.to_string();
        let keyed = key.is_empty() || errors.iter().any(|e| e.key == *key);
        let leaked: Vec<&String> = unwanted
            .iter()
            .filter(|u| shown.contains(u.as_str()))
            .collect();
        if !keyed || !shown.contains(wanted.as_str()) || !leaked.is_empty() {
            failures.push(format!(
                "{what}: expected key {key:?} and {wanted:?}, none of {leaked:?}; got:\n  {}",
                shown.replace('\n', "\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn secret_keys_are_one_list() {
    use whpg_ha::config::is_secret_key;
    for key in [
        "vrrp.auth_pass",
        "database.password",
        "database.db_password",
        "api.token",
        "api.tokens[0]",
        "x.client_secret",
    ] {
        assert!(is_secret_key(key), "{key} must be secret");
    }
    for key in [
        "database.password_file",
        "api.token_file",
        "vrrp.vrid",
        "database.user",
    ] {
        assert!(!is_secret_key(key), "{key} is not a secret");
    }
}

#[test]
fn without_a_node_the_file_is_checked_for_every_node() {
    use whpg_ha::config::check_every_node;
    let elsewhere = || Ok::<_, String>("build-host.example".to_string());
    let check = check_every_node(BASE, &elsewhere).expect("this host is no node: every node");
    assert_eq!(check.nodes, ["cdw", "scdw"]);
    assert!(check.all_valid(), "{:?}", check.results);
    assert_eq!(
        check.summary(),
        "validated for nodes cdw, scdw: this host (name \"build-host.example\") is neither; \
         pass --node NAME to print that node's effective configuration"
    );
    let locals: Vec<String> = check
        .results
        .iter()
        .map(|(_, r)| r.as_ref().expect("valid").local.name.clone())
        .collect();
    assert_eq!(locals, ["cdw", "scdw"], "each run is for its node");

    let broken = edit("priority = 98", "priority = 0");
    let check = check_every_node(&broken, &elsewhere).expect("every node");
    assert!(!check.all_valid());
    assert!(
        check.summary().starts_with("checked for nodes cdw, scdw"),
        "{}",
        check.summary()
    );

    // This host is a node (full or short name), or the file names one: the usual single check.
    assert!(check_every_node(BASE, &|| Ok("scdw.example".to_string())).is_none());
    assert!(check_every_node(BASE, &|| Ok("cdw".to_string())).is_none());
    assert!(check_every_node(&format!("node = \"cdw\"\n{BASE}"), &elsewhere).is_none());
    // Without a host name at all, every node is checked and the summary says why.
    let check = check_every_node(BASE, &|| Err("no host name".to_string())).expect("every node");
    assert!(
        check.summary().contains("unknown (no host name)"),
        "{}",
        check.summary()
    );
}
