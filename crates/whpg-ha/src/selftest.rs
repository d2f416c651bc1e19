//! What a daemon proves about itself for `whpg-ha check` (`GET /check`): the digest of the
//! configuration it runs with, whether the promote / fence / rejoin commands are executable by
//! the database OS user in the environment they would get, whether the witnesses answer, and
//! whether its journal can be written. Nothing here changes anything: no configured command is
//! run (only `test -x` / `test -d` as the OS user), the journal is opened for appending and
//! closed without a byte written.
//!
//! The types are shared with the CLI, which deserializes them from JSON.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{CommandKind, Config, Flavor};
use crate::exec::{self, Environment, ExecError, PreparedCommand};

/// How a check came out. `Unknown`: it could not be decided for a local reason (our own timeout,
/// a socket that could not be opened); that is not a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    Unknown,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Unknown => "UNKNOWN",
        }
    }
}

/// One check: what it found, and what to run or change when it did not pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub name: String,
    pub outcome: Outcome,
    pub detail: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

impl Item {
    pub fn pass(name: &str, detail: impl Into<String>) -> Item {
        Item {
            name: name.into(),
            outcome: Outcome::Pass,
            detail: detail.into(),
            fix: String::new(),
        }
    }

    pub fn fail(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Item {
        Item {
            name: name.into(),
            outcome: Outcome::Fail,
            detail: detail.into(),
            fix: fix.into(),
        }
    }

    pub fn unknown(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Item {
        Item {
            name: name.into(),
            outcome: Outcome::Unknown,
            detail: detail.into(),
            fix: fix.into(),
        }
    }
}

/// A digest of the configuration both nodes share: SHA-256 of the effective configuration
/// ([`Config::render_effective`], secrets masked) without what names this node (the header
/// comment, `node = ...`, the `# this node` marker, and this node's own address in `api.listen`,
/// the default), and one hash per key so two digests can
/// say which keys differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigDigest {
    pub sha256: String,
    /// `table.key` (`vip[0].address`, `commands.promote.argv`) → the first 16 hex digits of the
    /// SHA-256 of its rendered value.
    pub keys: BTreeMap<String, String>,
}

/// What `GET /check` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfTest {
    pub node: String,
    pub config: ConfigDigest,
    /// `commands`, `environment`, `witnesses`, `journal`.
    pub items: Vec<Item>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The effective configuration as both nodes render it (see [`ConfigDigest`]).
pub fn shared_rendering(config: &Config) -> String {
    let own = config.local.address.to_string();
    let mut text = String::new();
    let mut table = "";
    for line in config.render_effective().lines() {
        if line.starts_with('#') || line.starts_with("node = ") {
            continue;
        }
        if line.starts_with('[') {
            table = line;
        }
        let line = line.trim_end_matches("  # this node");
        if table == "[api]" && line.starts_with("listen = ") {
            // The default listen address is each node's own: the same setting on both.
            text += &line.replace(&format!("\"{own}:"), "\"{node_address}:");
        } else {
            text += line;
        }
        text += "\n";
    }
    text
}

/// The digest of `config` as this node runs it.
pub fn digest(config: &Config) -> ConfigDigest {
    let text = shared_rendering(config);
    let mut keys = BTreeMap::new();
    let mut table = String::new();
    let mut arrays: BTreeMap<String, usize> = BTreeMap::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            let index = arrays.entry(name.to_string()).or_insert(0);
            table = format!("{name}[{index}]");
            *index += 1;
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = name.to_string();
        } else if let Some((key, value)) = line.split_once(" = ") {
            let path = if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            };
            keys.insert(path, sha256_hex(value.as_bytes())[..16].to_string());
        }
    }
    ConfigDigest {
        sha256: sha256_hex(text.as_bytes()),
        keys,
    }
}

/// The keys whose values differ between two digests, or that only one of them has.
pub fn differing_keys(a: &ConfigDigest, b: &ConfigDigest) -> Vec<String> {
    let mut names: Vec<&String> = a.keys.keys().chain(b.keys.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|k| a.keys.get(*k) != b.keys.get(*k))
        .cloned()
        .collect()
}

/// Bound on each `test` run as the OS user.
const TEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether `test ARGS` succeeds as the database OS user in `env`: `Ok(true/false)`, or why it
/// could not be run.
async fn test_as_user(
    config: &Config,
    env: &Environment,
    args: &[&str],
) -> Result<bool, ExecError> {
    let mut argv = vec!["test".to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    let command = PreparedCommand::new("check", argv, TEST_TIMEOUT)
        .with_environment(env.clone())
        .run_as(config.database.os_user.clone());
    Ok(exec::run(&command).await?.success())
}

/// Every check this daemon can make of itself.
pub async fn run(config: &Config) -> SelfTest {
    let (commands, environment, witnesses) =
        tokio::join!(commands(config), environment(config), witnesses(config));
    let journal = journal(&config.journal.path);
    SelfTest {
        node: config.local.name.clone(),
        config: digest(config),
        items: vec![commands, environment, witnesses, journal],
    }
}

/// The promote, fence and rejoin commands: their program found, and executable by
/// `database.os_user` (its permission on the file and on every directory above it, as the kernel
/// decides with `access(X_OK)` for that user).
async fn commands(config: &Config) -> Item {
    const NAME: &str = "commands";
    if !config.database.monitor {
        return Item::pass(NAME, "database.monitor = false: no command is ever run");
    }
    let user = &config.database.os_user;
    let peer = config.peer().map_or_else(
        || config.local.address.to_string(),
        |p| p.address.to_string(),
    );
    let runtime = BTreeMap::from([
        ("primary_host", peer),
        ("standby_host", config.local.address.to_string()),
    ]);
    let mut good = Vec::new();
    for kind in [
        CommandKind::Promote,
        CommandKind::Fence,
        CommandKind::Rejoin,
    ] {
        let key = format!("commands.{}", kind.name());
        let prepared = match PreparedCommand::from_config(config, kind, &runtime) {
            Ok(p) => p,
            Err(e) => {
                return Item::fail(
                    NAME,
                    e.to_string(),
                    format!("fix {key} in the configuration"),
                )
            }
        };
        let program = match prepared.check_program() {
            Ok(p) => p,
            Err(e) => {
                return Item::fail(
                    NAME,
                    e.to_string(),
                    format!("install the program or set {key}.argv to its full path"),
                )
            }
        };
        let shown = program.display().to_string();
        match test_as_user(config, prepared.environment(), &["-x", &shown]).await {
            Ok(true) => good.push(format!("{} {shown}", kind.name())),
            Ok(false) => {
                return Item::fail(
                    NAME,
                    format!(
                        "{key}: `{shown}` is not executable by OS user {user} ({})",
                        describe_mode(&program)
                    ),
                    format!(
                    "chmod a+x (or chown to {user}) `{shown}` and make every directory above it \
                         searchable by {user}, or point {key}.argv elsewhere"
                ),
                )
            }
            Err(e @ (ExecError::CannotSwitchUser { .. } | ExecError::UnknownUser { .. })) => {
                return Item::fail(
                    NAME,
                    e.to_string(),
                    "fix database.os_user or run the daemon as root",
                )
            }
            Err(e) => {
                return Item::unknown(
                    NAME,
                    format!("cannot test {key} as {user}: {e}"),
                    "see the daemon's log; retry",
                )
            }
        }
    }
    Item::pass(NAME, format!("executable by {user}: {}", good.join(", ")))
}

fn describe_mode(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => format!(
            "mode {:04o}, owner uid {} gid {}",
            m.mode() & 0o7777,
            m.uid(),
            m.gid()
        ),
        Err(e) => e.to_string(),
    }
}

/// The environment the commands get: the flavor's variables (PGPORT, PGDATA or
/// COORDINATOR_DATA_DIRECTORY and what greenplum_path.sh sets), the data directory reachable by
/// the OS user, and for WarehousePG the script and `$GPHOME/bin` present.
async fn environment(config: &Config) -> Item {
    const NAME: &str = "environment";
    let db = &config.database;
    if !db.monitor {
        return Item::pass(NAME, "database.monitor = false: no command is ever run");
    }
    let env = match Environment::for_database(db) {
        Ok(env) => env,
        Err(e) => return Item::fail(NAME, e.to_string(), "fix [database] in the configuration"),
    };
    let mut wanted = vec!["PGPORT"];
    match db.flavor {
        Flavor::Postgres => wanted.push("PGDATA"),
        Flavor::WarehousePg => {
            wanted.extend(["COORDINATOR_DATA_DIRECTORY", "GPHOME", "PYTHONPATH"])
        }
    }
    let mut shown = Vec::new();
    for name in &wanted {
        match env.get(name) {
            Some(value) => shown.push(format!("{name}={value}")),
            None => {
                return Item::fail(
                    NAME,
                    format!("{name} is not set for the commands"),
                    "fix [database] (port, data_directory, greenplum_path)",
                )
            }
        }
    }
    let user = &db.os_user;
    let data = db.data_directory.display().to_string();
    let mut probes: Vec<(Vec<String>, String, String)> = vec![(
        vec![
            "-d".into(),
            data.clone(),
            "-a".into(),
            "-x".into(),
            data.clone(),
        ],
        format!("database.data_directory `{data}` is not a directory {user} can enter"),
        format!("fix database.data_directory, or its owner/mode for {user}"),
    )];
    if let (Flavor::WarehousePg, Some(script)) = (db.flavor, &db.greenplum_path) {
        let script = script.display().to_string();
        probes.push((
            vec!["-r".into(), script.clone()],
            format!("database.greenplum_path `{script}` is not readable by {user}"),
            "fix database.greenplum_path (the installation's greenplum_path.sh)".into(),
        ));
        if let Some(gphome) = env.get("GPHOME") {
            let bin = format!("{gphome}/bin");
            probes.push((
                vec![
                    "-d".into(),
                    bin.clone(),
                    "-a".into(),
                    "-x".into(),
                    bin.clone(),
                ],
                format!("`{bin}` ($GPHOME/bin) is not a directory {user} can enter"),
                "fix database.greenplum_path: GPHOME is the directory holding greenplum_path.sh"
                    .into(),
            ));
        }
    }
    for (args, why, fix) in probes {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match test_as_user(config, &env, &args).await {
            Ok(true) => {}
            Ok(false) => return Item::fail(NAME, why, fix),
            Err(e) => {
                return Item::unknown(
                    NAME,
                    format!("cannot test as {user}: {e}"),
                    "see the daemon's log; retry",
                )
            }
        }
    }
    Item::pass(NAME, format!("as {user}: {}", shown.join(" ")))
}

/// Every witness answers an ICMP echo within `witness.timeout` (each asked on its own, so the
/// silent ones can be named).
async fn witnesses(config: &Config) -> Item {
    const NAME: &str = "witnesses";
    let w = &config.witness;
    if !w.enabled() {
        return Item::pass(
            NAME,
            "no [witness] hosts: isolation cannot be told from a lost peer",
        );
    }
    let asks = w.hosts.iter().map(|host| async move {
        (
            *host,
            crate::net::witness::reachable(&[*host], w.timeout).await,
        )
    });
    let answers: Vec<(IpAddr, std::io::Result<crate::net::witness::Round>)> =
        futures::future::join_all(asks).await;
    let mut silent = Vec::new();
    let mut answered = Vec::new();
    for (host, answer) in answers {
        match answer.map(|round| round.answered) {
            Ok(1) => answered.push(host.to_string()),
            Ok(_) if host.is_ipv6() => silent.push(format!("{host} (IPv6 is not pinged)")),
            Ok(_) => silent.push(host.to_string()),
            Err(e) => {
                return Item::unknown(
                    NAME,
                    format!("cannot ping {host}: {e}"),
                    "the daemon needs CAP_NET_RAW (it runs as root under systemd)",
                )
            }
        }
    }
    if silent.is_empty() {
        Item::pass(
            NAME,
            format!(
                "{} of {} answer within {:?} (quorum {})",
                answered.len(),
                w.hosts.len(),
                w.timeout,
                w.quorum
            ),
        )
    } else {
        Item::fail(
            NAME,
            format!(
                "no answer within {:?} from {}; {} of {} answer (quorum {})",
                w.timeout,
                silent.join(", "),
                answered.len(),
                w.hosts.len(),
                w.quorum
            ),
            "check the witness address and the route to it from this node, or fix witness.hosts",
        )
    }
}

/// The least free space the journal's file system must have.
const JOURNAL_MIN_FREE: u64 = 1024 * 1024;

/// The journal's current file can be opened for appending (nothing is written) and its file
/// system has room.
pub fn journal(dir: &Path) -> Item {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    const NAME: &str = "journal";
    let fix = format!(
        "make journal.path `{}` a directory the daemon can write (owner, mode, `chattr -i`, a \
         read-write mount with free space)",
        dir.display()
    );
    let current = dir.join(crate::journal::CURRENT);
    if current.exists() {
        if let Err(e) = std::fs::OpenOptions::new().append(true).open(&current) {
            return Item::fail(
                NAME,
                format!("cannot open `{}` for appending: {e}", current.display()),
                fix,
            );
        }
    } else {
        let Ok(c_dir) = CString::new(dir.as_os_str().as_bytes()) else {
            return Item::fail(NAME, "journal.path holds a NUL byte", fix);
        };
        // SAFETY: a valid C string; access has no other preconditions.
        if unsafe { libc::access(c_dir.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
            let e = std::io::Error::last_os_error();
            return Item::fail(
                NAME,
                format!("cannot create files in `{}`: {e}", dir.display()),
                fix,
            );
        }
    }
    match free_bytes(dir) {
        Ok(free) if free < JOURNAL_MIN_FREE => Item::fail(
            NAME,
            format!(
                "only {free} bytes free under `{}` (at least {JOURNAL_MIN_FREE} needed)",
                dir.display()
            ),
            fix,
        ),
        Ok(free) => Item::pass(
            NAME,
            format!(
                "`{}` writable, {} MiB free",
                dir.display(),
                free / (1024 * 1024)
            ),
        ),
        Err(e) => Item::unknown(
            NAME,
            format!("cannot read the free space under `{}`: {e}", dir.display()),
            "retry; see the daemon's log",
        ),
    }
}

fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c_dir = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: an all-zero statvfs is a valid out-parameter; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_dir.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(node: &str, advert: &str) -> Config {
        let text = format!(
            "[vrrp]\ninterface = \"eth0\"\nvrid = 51\nadvert_interval = \"{advert}\"\n\
             [[vip]]\naddress = \"10.77.0.100/24\"\n\
             [nodes.a]\naddress = \"10.77.0.11\"\npriority = 100\n\
             [nodes.b]\naddress = \"10.77.0.12\"\npriority = 98\n\
             [database]\nflavor = \"postgres\"\nhost = \"127.0.0.1\"\ndata_directory = \"/tmp\"\n\
             os_user = \"nobody\"\nmonitor = false\n"
        );
        crate::config::parse(&text, Some(node)).expect("test configuration parses")
    }

    #[test]
    fn both_nodes_of_one_file_have_one_digest_and_a_change_names_its_key() {
        let a = digest(&config("a", "1s"));
        let b = digest(&config("b", "1s"));
        assert_eq!(a, b, "the node-local lines are left out");
        assert_eq!(a.sha256.len(), 64);
        assert!(a.keys.contains_key("vip[0].address"), "{:?}", a.keys);
        assert!(a.keys.contains_key("nodes.a.priority"), "{:?}", a.keys);
        let other = digest(&config("b", "2s"));
        assert_ne!(a.sha256, other.sha256);
        assert_eq!(differing_keys(&a, &other), ["vrrp.advert_interval"]);
    }

    #[test]
    fn a_journal_directory_is_writable_and_a_missing_one_is_not() {
        let dir = std::env::temp_dir().join(format!("whpg-ha-selftest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let item = journal(&dir);
        assert_eq!(item.outcome, Outcome::Pass, "{item:?}");
        std::fs::write(dir.join(crate::journal::CURRENT), "").unwrap();
        assert_eq!(journal(&dir).outcome, Outcome::Pass);
        let missing = journal(&dir.join("missing"));
        assert_eq!(missing.outcome, Outcome::Fail, "{missing:?}");
        assert!(
            missing.detail.contains("cannot create files"),
            "{missing:?}"
        );
        assert!(missing.fix.contains("journal.path"), "{missing:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
