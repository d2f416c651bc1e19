//! `whpg-ha check`: proves, without failing over, that a failover would work, and says what would
//! stop it. Run on either node (or an admin host with the file): it asks every daemon for its
//! `/status` and its self-test (`GET /check`, [`crate::selftest`]), and proves the token with
//! `POST /check/token`, which is token-guarded and changes nothing.
//!
//! | check | passes when |
//! |---|---|
//! | `daemon` (per node) | the daemon answers `/status` |
//! | `config` | both daemons run the same shared configuration (SHA-256 of the effective configuration without the node-local lines); otherwise the keys that differ are named |
//! | `adverts` | one node is MASTER and the other BACKUP, and the BACKUP heard the MASTER's adverts within its Master_Down_Interval |
//! | `standby` | one healthy primary, one healthy standby whose WAL receiver streams, not fenced, not needing a rejoin, not in maintenance, no promotion hold |
//! | `arbiter` (with `[arbiter]` only) | both daemons reach etcd, and both name the same holder of the leader key: the node that holds the VIP |
//! | `token` (per node) | the daemon accepts the token of `api.token_file` |
//! | `commands` (per node) | promote / fence / rejoin programs are found and executable by `database.os_user` |
//! | `environment` (per node) | PGPORT, PGDATA or COORDINATOR_DATA_DIRECTORY / GPHOME set; data directory (and greenplum_path.sh) reachable by the OS user |
//! | `witnesses` (per node) | every witness answers the daemon's ICMP echo |
//! | `journal` (per node) | the daemon's journal file opens for appending and has room |
//!
//! A table (or `--json`); exit 0 only when every row passes, 1 otherwise. A row that could not
//! be decided (a daemon not answering) is UNKNOWN, which is not a pass. `--allow-differing KEY`
//! names a key that may differ between the nodes (when each has its own file).

use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use super::{for_each_node, load_config, targets, Target, REQUEST_TIMEOUT};
use crate::api::Token;
use crate::cli::CheckArgs;
use crate::client::{send, Request};
use crate::config::Config;
use crate::selftest::{self, Item, Outcome, SelfTest};
use crate::status::{DbRoleStatus, NodeStatus, VrrpState};

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub check: String,
    /// The node it is about; empty for checks of the pair.
    pub node: String,
    pub ok: bool,
    pub outcome: Outcome,
    pub detail: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

impl Row {
    fn of(node: &str, item: Item) -> Row {
        Row {
            check: item.name,
            node: node.to_string(),
            ok: item.outcome == Outcome::Pass,
            outcome: item.outcome,
            detail: item.detail,
            fix: item.fix,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub ok: bool,
    pub rows: Vec<Row>,
}

/// What one node answered.
struct Answers {
    status: Result<NodeStatus, String>,
    selftest: Result<SelfTest, String>,
    token: Item,
}

pub fn check_command(check_args: &CheckArgs) -> ExitCode {
    let args = &check_args.client;
    let config = match load_config(&args.config.config, args.config.node.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let targets = match targets(&config) {
        Ok(targets) => targets,
        Err(e) => {
            eprintln!("whpg-ha check: {e}");
            return ExitCode::from(1);
        }
    };
    let report = check(&config, &targets, &check_args.allow_differing);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a report serializes")
        );
    } else {
        print!("{}", render_table(&report));
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn get<T: serde::de::DeserializeOwned>(
    target: &Target,
    path: &str,
    timeout: Duration,
) -> Result<T, String> {
    match send(target.api, &Request::get(path), timeout) {
        Ok(r) if r.status == 200 => {
            serde_json::from_str(&r.body).map_err(|e| format!("unreadable {path}: {e}"))
        }
        Ok(r) if r.status == 404 => Err(format!(
            "{path} answered 404: the daemon is older than this CLI; upgrade it"
        )),
        Ok(r) => Err(format!("{path} answered HTTP {}", r.status)),
        Err(e) => Err(format!("no answer from {}: {e}", target.api)),
    }
}

fn token_item(target: &Target, token: &Result<Token, String>) -> Item {
    const NAME: &str = "token";
    let token =
        match token {
            Ok(token) => token,
            Err(e) => return Item::fail(
                NAME,
                e.clone(),
                "create the token file (one line, chmod 600) on both nodes and set api.token_file",
            ),
        };
    let request = Request::post_json("/check/token", "{}", Some(token.expose()));
    match send(target.api, &request, REQUEST_TIMEOUT) {
        Ok(r) if r.status == 200 => Item::pass(NAME, "accepted"),
        Ok(r) if r.status == 401 => Item::fail(
            NAME,
            "refused (HTTP 401): the daemon holds another token",
            "copy the same token file to both nodes and restart the daemon that reads another",
        ),
        Ok(r) if r.status == 403 => Item::fail(
            NAME,
            "refused (HTTP 403): that daemon has no api.token_file",
            "set api.token_file on that node and restart its daemon",
        ),
        Ok(r) if r.status == 404 => Item::unknown(
            NAME,
            "/check/token answered 404: the daemon is older than this CLI",
            "upgrade the daemon",
        ),
        Ok(r) => Item::unknown(
            NAME,
            format!("/check/token answered HTTP {}", r.status),
            "see the daemon's log",
        ),
        Err(e @ crate::client::ClientError::ClearToken(_)) => Item::unknown(
            NAME,
            format!("not sent: {e}"),
            "set [api] tls_* on both nodes, or pass --insecure-token-over-http",
        ),
        Err(e) => Item::unknown(
            NAME,
            format!("no answer from {}: {e}", target.api),
            "start the daemon",
        ),
    }
}

/// Every check, in the order the table shows them.
pub fn check(config: &Config, targets: &[Target], allow_differing: &[String]) -> Report {
    let token = match &config.api.token_file {
        None => Err(
            "no api.token_file configured: switchover, rejoin and maintenance are refused"
                .to_string(),
        ),
        Some(path) => Token::read(path).map_err(|e| format!("{e:#}")),
    };
    // The self-test waits for its witness pings and `test` runs.
    let selftest_timeout = config.witness.timeout + Duration::from_secs(8);
    let answers = for_each_node(targets, |target| Answers {
        status: get(target, "/status", REQUEST_TIMEOUT),
        selftest: get(target, "/check", selftest_timeout),
        token: token_item(target, &token),
    });
    let mut rows = Vec::new();
    for (target, answer) in targets.iter().zip(&answers) {
        let name = &target.node.name;
        rows.push(Row::of(
            name,
            match &answer.status {
                Ok(status) => Item::pass("daemon", format!("answers at {} ({})", target.api, status.vrrp.state)),
                Err(e) => Item::fail(
                    "daemon",
                    e.clone(),
                    format!(
                        "start it on {name}: systemctl start whpg-ha (and check that {} is reachable from here)",
                        target.api
                    ),
                ),
            },
        ));
    }
    rows.push(Row::of(
        "",
        config_item(config, targets, &answers, allow_differing),
    ));
    rows.push(Row::of("", adverts_item(targets, &answers)));
    rows.push(Row::of("", standby_item(config, targets, &answers)));
    if let Some(arbiter) = &config.arbiter {
        rows.push(Row::of("", arbiter_item(arbiter, targets, &answers)));
    }
    for (target, answer) in targets.iter().zip(&answers) {
        rows.push(Row::of(&target.node.name, answer.token.clone()));
    }
    for name in ["commands", "environment", "witnesses", "journal"] {
        for (target, answer) in targets.iter().zip(&answers) {
            let item = match &answer.selftest {
                Ok(test) => test
                    .items
                    .iter()
                    .find(|i| i.name == name)
                    .cloned()
                    .unwrap_or_else(|| {
                        Item::unknown(name, "the daemon did not report it", "upgrade the daemon")
                    }),
                Err(e) => Item::unknown(name, e.clone(), "start the daemon, then check again"),
            };
            rows.push(Row::of(&target.node.name, item));
        }
    }
    Report {
        ok: rows.iter().all(|r| r.ok),
        rows,
    }
}

fn config_item(
    config: &Config,
    targets: &[Target],
    answers: &[Answers],
    allowed: &[String],
) -> Item {
    const NAME: &str = "config";
    let mut digests = Vec::new();
    for (target, answer) in targets.iter().zip(answers) {
        match &answer.selftest {
            Ok(test) => digests.push((target.node.name.as_str(), &test.config)),
            Err(e) => {
                return Item::unknown(
                    NAME,
                    format!("{}: {e}", target.node.name),
                    "start the daemon, then check again",
                )
            }
        }
    }
    let Some(((first_name, first), rest)) = digests.split_first() else {
        return Item::unknown(
            NAME,
            "no node to compare",
            "add [nodes] to the configuration",
        );
    };
    let mut tolerated = Vec::new();
    for (name, digest) in rest {
        if digest.sha256 == first.sha256 {
            continue;
        }
        let (allowed_here, keys): (Vec<String>, Vec<String>) =
            selftest::differing_keys(first, digest)
                .into_iter()
                .partition(|k| allowed.contains(k));
        tolerated.extend(allowed_here);
        if allowed.is_empty() || !keys.is_empty() {
            return Item::fail(
                NAME,
                format!(
                    "{first_name} and {name} run different configurations: {} differ",
                    if keys.is_empty() {
                        "their renderings".to_string()
                    } else {
                        keys.join(", ")
                    }
                ),
                "copy one configuration file to both nodes and restart the daemon whose file changed",
            );
        }
    }
    tolerated.sort();
    tolerated.dedup();
    let mut detail = if tolerated.is_empty() {
        format!(
            "identical on {} nodes (sha256 {})",
            digests.len(),
            &first.sha256[..16]
        )
    } else {
        format!(
            "identical on {} nodes but for {} (--allow-differing)",
            digests.len(),
            tolerated.join(", ")
        )
    };
    // The file here against what the daemon of this host runs: a note, not a failure (a SIGHUP
    // applies a changed priority or [vrrp.garp] without a restart).
    if let Some((_, local)) = digests.iter().find(|(n, _)| *n == config.local.name) {
        let here = selftest::digest(config);
        if here.sha256 != local.sha256 {
            detail += &format!(
                "; note: the file here differs from what {} runs ({}): restart it to apply",
                config.local.name,
                selftest::differing_keys(local, &here).join(", ")
            );
        }
    }
    Item::pass(NAME, detail)
}

fn adverts_item(targets: &[Target], answers: &[Answers]) -> Item {
    const NAME: &str = "adverts";
    let mut statuses = Vec::new();
    for (target, answer) in targets.iter().zip(answers) {
        match &answer.status {
            Ok(s) => statuses.push((target, s)),
            Err(_) => {
                return Item::unknown(
                    NAME,
                    format!("{} does not answer", target.node.name),
                    "start its daemon, then check again",
                )
            }
        }
    }
    let masters: Vec<_> = statuses
        .iter()
        .filter(|(_, s)| s.vrrp.state == VrrpState::Master)
        .collect();
    let [(master_target, master)] = masters.as_slice() else {
        let names: Vec<&str> = masters.iter().map(|(t, _)| t.node.name.as_str()).collect();
        return Item::fail(
            NAME,
            if names.is_empty() {
                "no node is MASTER".to_string()
            } else {
                format!("{} are all MASTER: they do not hear each other's adverts", names.join(", "))
            },
            "check that VRRP (IP protocol 112) passes between the nodes, vrid and auth_pass match, and see `whpg-ha status`",
        );
    };
    let mut seen = Vec::new();
    for (target, status) in &statuses {
        if target.node.name == master_target.node.name {
            continue;
        }
        let vrrp = &status.vrrp;
        let limit = vrrp.master_down_interval_ms.max(1.0) as u64;
        match &vrrp.last_master {
            Some(m) if m.address == master.address.to_string() && m.seen_ms_ago <= limit => {
                seen.push(format!(
                    "{} heard {} {} ms ago",
                    target.node.name, master_target.node.name, m.seen_ms_ago
                ));
            }
            other => {
                let dropped: Vec<String> = vrrp
                    .counters
                    .dropped
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect();
                return Item::fail(
                    NAME,
                    format!(
                        "{} ({}) has not heard {}'s adverts within {limit} ms (last master: {}){}",
                        target.node.name,
                        vrrp.state,
                        master_target.node.name,
                        other.as_ref().map_or("none".to_string(), |m| format!(
                            "{} {} ms ago",
                            m.address, m.seen_ms_ago
                        )),
                        if dropped.is_empty() {
                            String::new()
                        } else {
                            format!("; dropped: {}", dropped.join(", "))
                        }
                    ),
                    "check that VRRP (IP protocol 112) passes between the nodes and that vrid, version and auth_pass match",
                );
            }
        }
    }
    Item::pass(
        NAME,
        format!("{} is MASTER; {}", master_target.node.name, seen.join("; ")),
    )
}

/// Both daemons reach etcd and agree that the VIP holder holds the leader key.
fn arbiter_item(arbiter: &crate::config::Arbiter, targets: &[Target], answers: &[Answers]) -> Item {
    const NAME: &str = "arbiter";
    let endpoints = arbiter.endpoints.join(", ");
    let mut holders = Vec::new();
    let mut vip_holder = None;
    for (target, answer) in targets.iter().zip(answers) {
        let name = target.node.name.as_str();
        let Ok(status) = &answer.status else {
            return Item::unknown(
                NAME,
                format!("{name} does not answer"),
                "start its daemon, then check again",
            );
        };
        let Some(view) = &status.arbiter else {
            return Item::unknown(
                NAME,
                format!("{name} reports no arbiter"),
                "give both nodes the same [arbiter] section and reload, or upgrade its daemon",
            );
        };
        match view.reachable {
            Some(true) => {}
            Some(false) => {
                return Item::fail(
                    NAME,
                    format!(
                        "{name} cannot reach etcd: {}",
                        view.error.clone().unwrap_or_default()
                    ),
                    format!(
                        "start the etcd members at {endpoints} (a quorum must run), or correct \
                         arbiter.endpoints / user / password / tls_* and reload"
                    ),
                )
            }
            None => {
                return Item::unknown(
                    NAME,
                    format!("{name} has not asked etcd yet"),
                    "wait a few seconds and check again",
                )
            }
        }
        if status.holds_vips {
            vip_holder = Some(name.to_string());
        }
        holders.push((name.to_string(), view.holder.clone()));
    }
    let named: Vec<&Option<String>> = holders.iter().map(|(_, h)| h).collect();
    if named.windows(2).any(|w| w[0] != w[1]) {
        let seen: Vec<String> = holders
            .iter()
            .map(|(n, h)| format!("{n} sees {}", h.as_deref().unwrap_or("nobody")))
            .collect();
        return Item::fail(
            NAME,
            format!(
                "the nodes disagree on the key's holder: {}",
                seen.join(", ")
            ),
            "check again in a moment (a takeover may be under way); if it stays, check that both \
             use the same arbiter.key_prefix and etcd cluster",
        );
    }
    let holder = named.first().and_then(|h| h.as_deref());
    match (holder, vip_holder) {
        (Some(h), Some(v)) if h == v => Item::pass(
            NAME,
            format!("etcd at {endpoints} answers both nodes; {h} holds the leader key and the VIP"),
        ),
        (holder, vip) => Item::fail(
            NAME,
            format!(
                "the leader key is held by {} but the VIP by {}",
                holder.unwrap_or("nobody"),
                vip.as_deref().unwrap_or("nobody")
            ),
            "see whpg-ha status and the journal (whpg-ha history): a failover is held or the \
             primary cannot take the key",
        ),
    }
}

fn standby_item(config: &Config, targets: &[Target], answers: &[Answers]) -> Item {
    const NAME: &str = "standby";
    if !config.database.monitor {
        return Item::pass(NAME, "database.monitor = false: only the VIP moves");
    }
    let mut primary = None;
    let mut standby = None;
    for (target, answer) in targets.iter().zip(answers) {
        let name = target.node.name.as_str();
        let Ok(status) = &answer.status else {
            return Item::unknown(
                NAME,
                format!("{name} does not answer"),
                "start its daemon, then check again",
            );
        };
        let Some(db) = &status.database else {
            return Item::unknown(
                NAME,
                format!("{name} reports no database state yet"),
                "wait a few seconds and check again",
            );
        };
        match db.role {
            DbRoleStatus::Primary => primary = Some((name, db)),
            DbRoleStatus::Standby => standby = Some((name, db)),
            DbRoleStatus::Unknown => {
                return Item::fail(
                    NAME,
                    format!("the database on {name} is unknown (down or not answering)"),
                    format!("start the database on {name} (or `whpg-ha rejoin` there)"),
                )
            }
        }
    }
    let Some((pname, pdb)) = primary else {
        return Item::fail(NAME, "no node has a primary", "see `whpg-ha status`");
    };
    let Some((sname, sdb)) = standby else {
        return Item::fail(
            NAME,
            "no node has a standby: nothing to fail over to",
            "run `whpg-ha rejoin` on the node to rebuild",
        );
    };
    if !pdb.healthy {
        return Item::fail(
            NAME,
            format!("the primary on {pname} is not healthy"),
            "see `whpg-ha status` and the daemon's log",
        );
    }
    let mut problems = Vec::new();
    if !sdb.healthy {
        problems.push("not healthy".to_string());
    }
    match &sdb.wal_receiver {
        None => problems.push("no WAL receiver (not streaming)".into()),
        Some(w) if !w.streaming => problems.push("WAL receiver not streaming".into()),
        Some(_) => {}
    }
    if sdb.needs_rejoin {
        problems.push("needs a rejoin".into());
    }
    if let Some(f) = &sdb.fenced {
        problems.push(format!("fenced ({f})"));
    }
    if sdb.maintenance {
        problems.push("in maintenance (no automatic failover)".into());
    }
    if sdb.promotion_gave_up {
        problems.push("gave up a promotion".into());
    }
    // A hold by the replication guard is said once, below, with its reason.
    if let Some(hold) = sdb
        .promotion_hold
        .as_ref()
        .filter(|h| !h.starts_with("NotPromotable"))
    {
        problems.push(format!("promotion held: {hold}"));
    }
    // The replication guard: a failover now would be refused (or lose commits).
    match sdb
        .replication
        .as_ref()
        .and_then(|r| r.promotable.map(|p| (p, r)))
    {
        Some((true, _)) => {}
        Some((false, r)) => problems.push(format!(
            "not promotable: {}",
            r.not_promotable.as_deref().unwrap_or("unknown why")
        )),
        None => problems.push("its daemon reports no replication state".into()),
    }
    if !problems.is_empty() {
        return Item::fail(
            NAME,
            format!("the standby on {sname}: {}", problems.join("; ")),
            format!(
                "start the standby on {sname} and check its primary_conninfo (pg_stat_wal_receiver); \
                 `whpg-ha maintenance off` if on; `whpg-ha rejoin` on {sname} if it needs a rejoin"
            ),
        );
    }
    let last = sdb
        .wal_receiver
        .as_ref()
        .and_then(|w| w.last_message_ms_ago)
        .map_or(String::new(), |ms| format!(", last message {ms} ms ago"));
    let lag = sdb
        .replication
        .as_ref()
        .and_then(|r| r.lag_bytes)
        .map_or(String::new(), |bytes| {
            format!(", {} behind", whpg_policy::replication::bytes_text(bytes))
        });
    Item::pass(
        NAME,
        format!("{sname} streams from {pname}{last}{lag} and is promotable"),
    )
}

/// The report as an aligned table; under each row that did not pass, what to do.
pub fn render_table(report: &Report) -> String {
    let header = ["CHECK", "NODE", "RESULT", "DETAIL"];
    let cells: Vec<[String; 4]> = report
        .rows
        .iter()
        .map(|r| {
            [
                r.check.clone(),
                if r.node.is_empty() {
                    "-".into()
                } else {
                    r.node.clone()
                },
                r.outcome.as_str().to_string(),
                r.detail.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row).take(3) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i < 3 {
                text += &format!("{cell:<w$}  ", w = widths[i]);
            } else {
                text += cell;
            }
        }
        text.trim_end().to_string() + "\n"
    };
    let mut text = line(&header.map(str::to_string));
    for (row, cells) in report.rows.iter().zip(&cells) {
        text += &line(cells);
        if !row.ok && !row.fix.is_empty() {
            text += &format!("{:indent$}fix: {}\n", "", row.fix, indent = widths[0] + 2);
        }
    }
    let failed = report.rows.iter().filter(|r| !r.ok).count();
    text += &if failed == 0 {
        format!(
            "all {} checks pass: a failover would work\n",
            report.rows.len()
        )
    } else {
        format!(
            "{failed} of {} checks do not pass: a failover could fail\n",
            report.rows.len()
        )
    };
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_row_shows_its_fix_and_the_summary_counts_it() {
        let report = Report {
            ok: false,
            rows: vec![
                Row::of("a", Item::pass("daemon", "answers")),
                Row::of("b", Item::fail("daemon", "no answer", "start it")),
            ],
        };
        let table = render_table(&report);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("CHECK"), "{table}");
        assert!(
            lines[1].contains("PASS") && lines[1].contains("answers"),
            "{table}"
        );
        assert!(
            lines[2].contains("FAIL") && lines[2].contains("no answer"),
            "{table}"
        );
        assert!(
            lines[3].trim_start().starts_with("fix: start it"),
            "{table}"
        );
        assert!(lines[4].starts_with("1 of 2 checks do not pass"), "{table}");
    }

    fn arbiter_case(views: [(bool, crate::status::ArbiterView); 2]) -> Item {
        let text = crate::config::testing::TestConfig::pair()
            .section(
                "[arbiter]",
                "kind = \"etcd\"\nendpoints = [\"http://10.0.0.9:2379\"]",
            )
            .to_toml();
        let config = crate::config::parse(&text, Some("a")).expect("valid");
        let arbiter = config.arbiter.clone().expect("an arbiter");
        let mut targets = Vec::new();
        let mut answers = Vec::new();
        for (node, (vip, view)) in config.nodes().into_iter().zip(views) {
            let mut status = crate::status::test_status();
            status.holds_vips = vip;
            status.arbiter = Some(view);
            targets.push(Target {
                node: node.clone(),
                api: "127.0.0.1:8008".parse().expect("address"),
            });
            answers.push(Answers {
                status: Ok(status),
                selftest: Err("not asked".into()),
                token: Item::pass("token", "-"),
            });
        }
        arbiter_item(&arbiter, &targets, &answers)
    }

    fn view(reachable: bool, holder: Option<&str>) -> crate::status::ArbiterView {
        crate::status::ArbiterView {
            reachable: Some(reachable),
            holder: holder.map(str::to_string),
            error: (!reachable).then(|| "etcd read at http://10.0.0.9:2379 gave no answer".into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_arbiter_check_wants_etcd_reachable_and_the_vip_holder_holding_the_key() {
        let ok = arbiter_case([
            (true, view(true, Some("a"))),
            (false, view(true, Some("a"))),
        ]);
        assert_eq!(ok.outcome, Outcome::Pass, "{ok:?}");

        let down = arbiter_case([(true, view(true, Some("a"))), (false, view(false, None))]);
        assert_eq!(down.outcome, Outcome::Fail);
        assert!(down
            .detail
            .contains("b cannot reach etcd: etcd read at http://10.0.0.9:2379"));
        assert!(down.fix.contains("http://10.0.0.9:2379"), "{down:?}");

        let split = arbiter_case([
            (true, view(true, Some("a"))),
            (false, view(true, Some("b"))),
        ]);
        assert_eq!(split.outcome, Outcome::Fail);
        assert!(split.detail.contains("disagree"), "{split:?}");

        let elsewhere = arbiter_case([
            (true, view(true, Some("b"))),
            (false, view(true, Some("b"))),
        ]);
        assert_eq!(elsewhere.outcome, Outcome::Fail);
        assert!(
            elsewhere.detail.contains("held by b but the VIP by a"),
            "{elsewhere:?}"
        );
    }
}
