//! `[arbiter]`: absent changes nothing; present, every key is checked with its own message, the
//! defaults are filled in, and the password never shows.

use std::time::Duration;

use whpg_ha::config::testing::TestConfig;
use whpg_ha::config::{parse, ConfigErrors, LeaseLoss};

const ETCD: &str = r#"kind = "etcd"
endpoints = ["http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://10.0.0.3:2379"]"#;

fn with_arbiter(body: &str) -> String {
    TestConfig::pair().section("[arbiter]", body).to_toml()
}

fn errors_of(body: &str) -> ConfigErrors {
    let text = with_arbiter(body);
    match parse(&text, Some("a")) {
        Ok(_) => panic!("configuration was accepted:\n{text}"),
        Err(errors) => errors,
    }
}

#[test]
fn without_an_arbiter_section_there_is_no_arbiter() {
    let config = TestConfig::pair().parse("a");
    assert_eq!(config.arbiter, None);
    assert!(!config.render_effective().contains("[arbiter]"));
}

#[test]
fn the_defaults_are_filled_in() {
    let text = with_arbiter(ETCD);
    let config = parse(&text, Some("a")).expect("valid");
    let a = config.arbiter.expect("an arbiter");
    assert_eq!(a.endpoints.len(), 3);
    assert_eq!(a.key_prefix, format!("/whpg-ha/vrid-{}", config.vrrp.vrid));
    assert_eq!(
        a.leader_key(),
        format!("/whpg-ha/vrid-{}/leader", config.vrrp.vrid)
    );
    assert_eq!(a.lease_ttl, Duration::from_secs(5));
    assert_eq!(a.timeout, Duration::from_secs(1));
    assert_eq!(a.keepalive_interval, Duration::from_millis(1666));
    assert_eq!(a.on_lease_loss, LeaseLoss::Fence);
    assert!(a.failsafe);
    assert_eq!(a.tls, None);
}

#[test]
fn the_password_is_masked_and_the_effective_configuration_parses_back() {
    let body = format!(
        "{ETCD}\nuser = \"whpg\"\npassword = \"s3cret-etcd\"\nlease_ttl = \"8s\"\n\
         on_lease_loss = \"remove-vip\"\nfailsafe = false\nkey_prefix = \"/ha/pair1/\""
    );
    let config = parse(&with_arbiter(&body), Some("a")).expect("valid");
    let a = config.arbiter.clone().expect("an arbiter");
    assert_eq!(a.password.as_ref().map(|p| p.expose()), Some("s3cret-etcd"));
    assert_eq!(a.key_prefix, "/ha/pair1", "a trailing slash is dropped");
    assert_eq!(a.on_lease_loss, LeaseLoss::RemoveVip);
    assert!(
        !format!("{a:?}").contains("s3cret"),
        "Debug shows the secret"
    );
    let rendered = config.render_effective();
    assert!(!rendered.contains("s3cret"), "{rendered}");
    assert!(rendered.contains("password = \"********\""), "{rendered}");
    let again = parse(&rendered, None).expect("the rendered configuration parses");
    let b = again.arbiter.expect("an arbiter");
    assert_eq!(
        (
            b.endpoints,
            b.key_prefix,
            b.lease_ttl,
            b.keepalive_interval,
            b.failsafe
        ),
        (
            a.endpoints,
            a.key_prefix,
            a.lease_ttl,
            a.keepalive_interval,
            a.failsafe
        )
    );
}

#[test]
fn an_error_about_the_password_never_echoes_it() {
    let errors = errors_of(&format!("{ETCD}\npassword = 12345678"));
    let text = errors.to_string();
    assert!(text.contains("arbiter.password"), "{text}");
    assert!(!text.contains("12345678"), "{text}");
}

#[test]
fn each_malformed_arbiter_reports_its_own_key_and_fix() {
    // (what is wrong, [arbiter] body, key expected, part of the message expected)
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "no kind",
            "endpoints = [\"http://10.0.0.1:2379\"]".into(),
            "arbiter.kind",
            "needs its kind",
        ),
        (
            "unknown kind",
            "kind = \"consul\"\nendpoints = [\"http://10.0.0.1:2379\"]".into(),
            "arbiter.kind",
            "unknown arbiter kind",
        ),
        (
            "no endpoints",
            "kind = \"etcd\"".into(),
            "arbiter.endpoints",
            "client URLs",
        ),
        (
            "empty endpoints",
            "kind = \"etcd\"\nendpoints = []".into(),
            "arbiter.endpoints",
            "client URLs",
        ),
        (
            "no port",
            "kind = \"etcd\"\nendpoints = [\"http://10.0.0.1\"]".into(),
            "arbiter.endpoints[0]",
            "host and a port",
        ),
        (
            "no scheme",
            "kind = \"etcd\"\nendpoints = [\"10.0.0.1:2379\"]".into(),
            "arbiter.endpoints[0]",
            "host and a port",
        ),
        (
            "listed twice",
            "kind = \"etcd\"\nendpoints = [\"http://10.0.0.1:2379\", \"http://10.0.0.1:2379\"]"
                .into(),
            "arbiter.endpoints[1]",
            "listed twice",
        ),
        (
            "mixed schemes",
            "kind = \"etcd\"\nendpoints = [\"http://10.0.0.1:2379\", \"https://10.0.0.2:2379\"]\n\
             tls_ca_file = \"/etc/etcd/ca.pem\""
                .into(),
            "arbiter.endpoints",
            "http:// and some https://",
        ),
        (
            "https without a CA",
            "kind = \"etcd\"\nendpoints = [\"https://10.0.0.1:2379\"]".into(),
            "arbiter.tls_ca_file",
            "need the CA",
        ),
        (
            "TLS files with http",
            format!("{ETCD}\ntls_ca_file = \"/etc/etcd/ca.pem\""),
            "arbiter.endpoints",
            "TLS files are set",
        ),
        (
            "relative CA path",
            "kind = \"etcd\"\nendpoints = [\"https://10.0.0.1:2379\"]\ntls_ca_file = \"ca.pem\""
                .into(),
            "arbiter.tls_ca_file",
            "absolute path",
        ),
        (
            "certificate without key",
            "kind = \"etcd\"\nendpoints = [\"https://10.0.0.1:2379\"]\ntls_ca_file = \"/ca.pem\"\n\
             tls_cert_file = \"/c.pem\""
                .into(),
            "arbiter.tls_key_file",
            "both tls_cert_file and tls_key_file",
        ),
        (
            "TTL too short",
            format!("{ETCD}\nlease_ttl = \"1s\""),
            "arbiter.lease_ttl",
            "between 2s and",
        ),
        (
            "TTL without unit",
            format!("{ETCD}\nlease_ttl = 10"),
            "arbiter.lease_ttl",
            "needs a unit",
        ),
        (
            "keep-alive too slow for the TTL",
            format!("{ETCD}\nlease_ttl = \"4s\"\nkeepalive_interval = \"2s\""),
            "arbiter.keepalive_interval",
            "longer than lease_ttl 4s",
        ),
        (
            "timeout too long for the TTL",
            format!("{ETCD}\nlease_ttl = \"2s\""),
            "arbiter.keepalive_interval",
            "one lost keep-alive",
        ),
        (
            "user without password",
            format!("{ETCD}\nuser = \"whpg\""),
            "arbiter.password",
            "without a password",
        ),
        (
            "password without user",
            format!("{ETCD}\npassword = \"x\""),
            "arbiter.user",
            "without a user",
        ),
        (
            "unknown action",
            format!("{ETCD}\non_lease_loss = \"demote\""),
            "arbiter.on_lease_loss",
            "unknown action",
        ),
        (
            "bad prefix",
            format!("{ETCD}\nkey_prefix = \"whpg\""),
            "arbiter.key_prefix",
            "starts with /",
        ),
    ];
    for (what, body, key, message) in cases {
        let errors = errors_of(&body);
        assert!(
            errors
                .errors
                .iter()
                .any(|e| e.key == key && e.message.contains(message) && !e.fix.is_empty()),
            "{what}: expected {key}: …{message}…, got:\n{errors}"
        );
    }
}

#[test]
fn an_unknown_arbiter_key_is_refused() {
    let errors = errors_of(&format!("{ETCD}\nendpoint = \"http://10.0.0.1:2379\""));
    assert!(errors.to_string().contains("endpoint"), "{errors}");
}

#[test]
fn the_failsafe_with_no_confirmation_time_is_warned_about() {
    let fast = TestConfig::pair()
        .set("failover", "confirmation", "0s")
        .section("[arbiter]", ETCD)
        .parse("a");
    assert!(
        fast.warnings.iter().any(|w| w.key == "arbiter.failsafe"),
        "{:?}",
        fast.warnings
    );
    let default = parse(&with_arbiter(ETCD), Some("a")).expect("valid");
    assert!(!default.warnings.iter().any(|w| w.key == "arbiter.failsafe"));
    let off = TestConfig::pair()
        .set("failover", "confirmation", "0s")
        .section("[arbiter]", &format!("{ETCD}\nfailsafe = false"))
        .parse("a");
    assert!(!off.warnings.iter().any(|w| w.key == "arbiter.failsafe"));
}
