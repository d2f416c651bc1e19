//! Prerequisite checks for lab tests and the skip policy: a lab test whose prerequisites (root,
//! commands, OS users) are missing prints `SKIPPED <test>: <reason>` and returns early, except
//! under `CI=true`, where it panics naming what is missing and the Debian packages to install.
//! Never a silent skip.

use std::io::Write as _;

use crate::cmd::find_command;
use crate::lab::{user_ids, Lab};

/// Debian package providing a command (or OS user, as `user:NAME`).
fn package_for(item: &str) -> Option<&'static str> {
    Some(match item {
        "ip" | "bridge" => "iproute2",
        "nft" => "nftables",
        "keepalived" => "keepalived",
        "etcd" => "etcd-server",
        "etcdctl" => "etcd-client",
        "tcpdump" => "tcpdump",
        "ping" => "iputils-ping",
        "runuser" => "util-linux",
        "psql" | "pg_isready" => "postgresql-client-15",
        "initdb" | "pg_ctl" | "postgres" | "pg_basebackup" | "pg_controldata" | "pg_rewind"
        | "user:postgres" => "postgresql-15",
        _ => return None,
    })
}

/// What is missing among `items` (commands, or `user:NAME` for OS users), plus root, as readable
/// reasons and the Debian packages that would provide them.
pub fn missing(items: &[&str]) -> (Vec<String>, Vec<&'static str>) {
    let mut reasons = Vec::new();
    let mut packages: Vec<&'static str> = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        reasons.push("not running as root (network namespaces need it)".to_string());
    }
    for &item in items {
        let present = match item.strip_prefix("user:") {
            Some(user) => user_ids(user).is_ok(),
            None => find_command(item).is_some(),
        };
        if present {
            continue;
        }
        let what = match item.strip_prefix("user:") {
            Some(user) => format!("OS user `{user}` does not exist"),
            None => format!("command `{item}` not found"),
        };
        match package_for(item) {
            Some(pkg) => {
                reasons.push(format!("{what} (Debian package {pkg})"));
                if !packages.contains(&pkg) {
                    packages.push(pkg);
                }
            }
            None => reasons.push(what),
        }
    }
    (reasons, packages)
}

/// Checks root and `items` for the test `test`. Returns true when everything is there. Otherwise
/// prints `SKIPPED <test>: <reasons>` and returns false, or panics when `CI=true`.
pub fn require_for(test: &str, items: &[&str]) -> bool {
    check(test, items, std::env::var("CI").as_deref() == Ok("true"))
}

fn check(test: &str, items: &[&str], ci: bool) -> bool {
    let (reasons, packages) = missing(items);
    if reasons.is_empty() {
        return true;
    }
    let install = if packages.is_empty() {
        String::new()
    } else {
        format!("; install with: apt-get install -y {}", packages.join(" "))
    };
    let reason = format!("{}{install}", reasons.join("; "));
    if ci {
        panic!("{test}: lab prerequisites missing under CI=true: {reason}");
    }
    // Written to the stderr handle directly: the test harness captures `eprintln!` of passing
    // tests, and a skip must stay visible.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
    false
}

/// The current test's name: libtest names each test's thread after the test.
pub fn current_test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_string()
}

/// [`require_for`] with the test name taken from the current thread.
pub fn require(items: &[&str]) -> bool {
    require_for(&current_test_name(), items)
}

/// Checks prerequisites (`ip` plus `items`) and creates a lab for `test`, or returns `None` after
/// printing `SKIPPED` (panics under `CI=true`). A lab that cannot be built although everything is
/// present panics: that is a failure, not a skip.
pub fn lab_for_test(test: &str, items: &[&str]) -> Option<Lab> {
    let mut all = vec!["ip"];
    all.extend_from_slice(items);
    if !require_for(test, &all) {
        return None;
    }
    match Lab::new(test) {
        Ok(lab) => Some(lab),
        Err(e) => panic!("{test}: cannot build lab: {e:#}"),
    }
}

/// `let lab = lab_or_skip!("test_name", &["nft", "keepalived"]);` returns from the calling test
/// (after printing `SKIPPED`) when prerequisites are missing, and panics under `CI=true`. Without a
/// name (`lab_or_skip!()`) the test name comes from the current thread.
#[macro_export]
macro_rules! lab_or_skip {
    () => {
        $crate::lab_or_skip!(&$crate::prereq::current_test_name(), &[])
    };
    ($test:expr) => {
        $crate::lab_or_skip!($test, &[])
    };
    ($test:expr, $items:expr) => {
        match $crate::lab_for_test($test, $items) {
            ::std::option::Option::Some(lab) => lab,
            ::std::option::Option::None => return,
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_names_command_and_package() {
        let (reasons, packages) = missing(&["definitely-not-a-command-xyz", "sh"]);
        assert!(reasons
            .iter()
            .any(|r| r.contains("definitely-not-a-command-xyz")));
        assert!(!reasons.iter().any(|r| r.contains("`sh`")));
        assert!(packages.is_empty());
        assert_eq!(package_for("keepalived"), Some("keepalived"));
        assert_eq!(package_for("ping"), Some("iputils-ping"));
    }

    #[test]
    fn missing_command_skips_outside_ci() {
        assert!(!check("t", &["definitely-not-a-command-xyz"], false));
    }

    #[test]
    #[should_panic(expected = "definitely-not-a-command-xyz")]
    fn missing_command_fails_under_ci() {
        check("t", &["definitely-not-a-command-xyz"], true);
    }

    #[test]
    fn unknown_user_is_missing() {
        let (reasons, _) = missing(&["user:no-such-user-whpg"]);
        assert!(reasons.iter().any(|r| r.contains("no-such-user-whpg")));
    }
}
