//! `whpg-ha check-config` as an operator runs it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn whpg_ha() -> Command {
    Command::new(env!("CARGO_BIN_EXE_whpg-ha"))
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

#[test]
fn check_config_prints_the_effective_configuration() {
    let out = whpg_ha()
        .args(["check-config"])
        .arg(example("whpg-ha.toml"))
        .args(["--node", "cdw"])
        .output()
        .expect("run whpg-ha");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stdout.contains("node = \"cdw\""), "{stdout}");
    assert!(stdout.contains("vrid = 51"), "{stdout}");
    assert!(stdout.contains("auth_pass = \"********\""), "{stdout}");
    assert!(!stdout.contains("wHpG51ha"), "password leaked: {stdout}");
    assert!(stdout.contains("[commands.promote]"), "{stdout}");
}

#[test]
fn check_config_reports_errors_and_exits_1() {
    let dir = std::env::temp_dir().join(format!("whpg-ha-config-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bad = dir.join("bad.toml");
    let text = std::fs::read_to_string(example("whpg-ha.toml"))
        .expect("example")
        .replace("vrid = 51", "vrid = 300")
        .replace("priority = 98", "priority = 0");
    std::fs::write(&bad, text).expect("write bad config");

    let out = whpg_ha()
        .arg("check-config")
        .arg(&bad)
        .args(["--node", "cdw"])
        .output()
        .expect("run whpg-ha");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(out.stdout.is_empty());
    let prefix = format!("error: {}: ", bad.display());
    assert!(
        stderr.lines().any(|l| l.starts_with(&prefix)
            && l.contains("vrrp.vrid = 300: VRID must be between 1 and 255")),
        "{stderr}"
    );
    assert!(stderr.contains("nodes.scdw.priority = 0"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_config_on_a_missing_file_names_it() {
    let out = whpg_ha()
        .args(["check-config", "/nonexistent/whpg-ha.toml", "--node", "cdw"])
        .output()
        .expect("run whpg-ha");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("error: /nonexistent/whpg-ha.toml: cannot read /nonexistent/whpg-ha.toml"),
        "{stderr}"
    );
}

/// The example file with node names no real host has.
fn example_with_foreign_nodes(dir: &Path, edit: &dyn Fn(String) -> String) -> PathBuf {
    std::fs::create_dir_all(dir).expect("temp dir");
    let path = dir.join("foreign.toml");
    let text = std::fs::read_to_string(example("whpg-ha.toml"))
        .expect("example")
        .replace("[nodes.cdw]", "[nodes.whpgtesta]")
        .replace("[nodes.scdw]", "[nodes.whpgtestb]");
    std::fs::write(&path, edit(text)).expect("write config");
    path
}

#[test]
fn check_config_without_node_on_a_foreign_host_checks_every_node() {
    let dir = std::env::temp_dir().join(format!("whpg-ha-config-every-{}", std::process::id()));
    let good = example_with_foreign_nodes(&dir, &|t| t);
    let out = whpg_ha()
        .arg("check-config")
        .arg(&good)
        .output()
        .expect("run whpg-ha");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stdout.starts_with("# validated for nodes whpgtesta, whpgtestb: this host (name ")
            && stdout.contains(") is neither; pass --node"),
        "{stdout}"
    );
    assert!(!stderr.contains("error"), "{stderr}");

    let bad = example_with_foreign_nodes(&dir, &|t| t.replace("priority = 98", "priority = 0"));
    let out = whpg_ha()
        .arg("check-config")
        .arg(&bad)
        .output()
        .expect("run whpg-ha");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(out.stdout.is_empty());
    // Reported once, not once per node.
    assert_eq!(
        stderr.matches("nodes.whpgtestb.priority = 0").count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("checked for nodes whpgtesta, whpgtestb"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_config_never_echoes_an_unquoted_password() {
    let dir = std::env::temp_dir().join(format!("whpg-ha-config-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bad = dir.join("secret.toml");
    let text = std::fs::read_to_string(example("whpg-ha.toml")).expect("example");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("auth_pass"))
        .expect("the example sets auth_pass")
        .to_string();
    std::fs::write(&bad, text.replace(&line, "auth_pass = 12345678")).expect("write");
    let out = whpg_ha()
        .arg("check-config")
        .arg(&bad)
        .args(["--node", "cdw"])
        .output()
        .expect("run whpg-ha");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("vrrp.auth_pass"), "{stderr}");
    assert!(!stderr.contains("12345678"), "password echoed: {stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
