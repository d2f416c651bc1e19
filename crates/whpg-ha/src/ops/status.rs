//! `whpg-ha status`: asks every node's daemon for its `/status` and shows the pair in one table
//! (or one JSON document). A node that does not answer is shown as unreachable; that is the
//! answer, not an error — unless no node answers at all, which exits 1 so scripts notice.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{for_each_node, load_config, targets, Target, REQUEST_TIMEOUT};
use crate::cli::StatusArgs;
use crate::client::{send, Request};
use crate::status::{unix_ms, DbRoleStatus, NodeStatus};

/// What one node said (or why it said nothing).
#[derive(Debug, Clone, Serialize)]
pub struct NodeReport {
    pub node: String,
    pub address: String,
    pub api: String,
    pub reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The daemon's `/status` as it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<NodeStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PairReport {
    pub at_unix_ms: u64,
    pub nodes: Vec<NodeReport>,
}

pub fn status_command(args: &StatusArgs) -> ExitCode {
    let config = match load_config(
        &args.client.config.config,
        args.client.config.node.as_deref(),
    ) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let targets = match targets(&config) {
        Ok(targets) => targets,
        Err(e) => {
            eprintln!("whpg-ha status: {e}");
            return ExitCode::from(1);
        }
    };
    loop {
        let report = ask_all(&targets);
        let text = if args.client.json {
            serde_json::to_string_pretty(&report).expect("a report serializes") + "\n"
        } else {
            render_table(&report)
        };
        if args.watch {
            // Clear the terminal and draw again from the top.
            println!("\x1b[H\x1b[2J{text}(refreshing every second; Ctrl-C to stop)");
        } else {
            print!("{text}");
            if report.nodes.iter().any(|n| n.reachable) {
                return ExitCode::SUCCESS;
            }
            eprintln!("whpg-ha status: no node answered (is whpg-ha running, and is [api] listen reachable from here?)");
            return ExitCode::from(1);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Every node's `/status`, asked in parallel, each bounded by [`REQUEST_TIMEOUT`].
pub fn ask_all(targets: &[Target]) -> PairReport {
    let nodes = for_each_node(targets, |target| {
        let mut report = NodeReport {
            node: target.node.name.clone(),
            address: target.node.address.to_string(),
            api: format!("http://{}/status", target.api),
            reachable: false,
            error: None,
            status: None,
        };
        match send(target.api, &Request::get("/status"), REQUEST_TIMEOUT) {
            Ok(response) if response.status == 200 => match serde_json::from_str(&response.body) {
                Ok(value) => {
                    report.reachable = true;
                    report.status = Some(value);
                }
                Err(e) => report.error = Some(format!("unreadable /status: {e}")),
            },
            Ok(response) => report.error = Some(format!("HTTP {}", response.status)),
            Err(e) => report.error = Some(e.to_string()),
        }
        report
    });
    PairReport {
        at_unix_ms: unix_ms(SystemTime::now()),
        nodes,
    }
}

const HEADER: [&str; 11] = [
    "NODE",
    "ADDRESS",
    "VRRP",
    "PRIO",
    "DB",
    "HEALTHY",
    "VIP",
    "MAINT",
    "REPLICATION",
    "SINCE",
    "NOTES",
];

/// The report as an aligned text table.
pub fn render_table(report: &PairReport) -> String {
    let rows: Vec<[String; 11]> = report
        .nodes
        .iter()
        .map(|node| row(node, report.at_unix_ms))
        .collect();
    let mut widths = HEADER.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let header = HEADER.map(str::to_string);
    for cells in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text += line.join("  ").trim_end();
        text += "\n";
    }
    text
}

fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.into()
}

fn row(node: &NodeReport, now_ms: u64) -> [String; 11] {
    let dash = || "-".to_string();
    let Some(status) = &node.status else {
        let why = node.error.clone().unwrap_or_default();
        return [
            node.node.clone(),
            node.address.clone(),
            "UNREACHABLE".into(),
            dash(),
            dash(),
            dash(),
            dash(),
            dash(),
            dash(),
            dash(),
            why,
        ];
    };
    let vrrp = &status.vrrp;
    let db = status.database.as_ref();
    let replication = match db {
        None => dash(),
        Some(db) => replication_cell(db),
    };
    let mut notes = Vec::new();
    if let Some(db) = db {
        if db.needs_rejoin {
            notes.push("needs rejoin".to_string());
        }
        if let Some(fenced) = &db.fenced {
            notes.push(format!("fenced ({fenced})"));
        }
        if db.promoting {
            notes.push("promoting".into());
        }
        if db.promotion_gave_up {
            notes.push("promotion gave up".into());
        }
        if db.isolated {
            notes.push("isolated".into());
        }
        // A hold by the replication guard is said once, below, with its reason and since when.
        if let Some(hold) = db
            .promotion_hold
            .as_ref()
            .filter(|h| !h.starts_with("NotPromotable"))
        {
            notes.push(format!("promotion held: {hold}"));
        }
        if let Some(r) = &db.replication {
            if let Some(why) = &r.not_promotable {
                let since = r
                    .not_promotable_since_unix_ms
                    .map(|at| format!(" (since {} ago)", age(now_ms.saturating_sub(at))))
                    .unwrap_or_default();
                notes.push(format!("not promotable: {why}{since}"));
            }
            if let Some(mode) = r.mode.as_deref().filter(|m| *m != "async") {
                let why = r
                    .sync_reason
                    .as_deref()
                    .map(|w| format!(" ({w})"))
                    .unwrap_or_default();
                notes.push(format!("replication {mode}{why}"));
            }
            if let Some(error) = &r.sync_error {
                notes.push(format!("synchronous_standby_names not set: {error}"));
            }
        }
    }
    if let Some(arbiter) = &status.arbiter {
        notes.push(format!("arbiter: {}", arbiter.summary()));
    }
    for fault in &vrrp.faults {
        let name = serde_json::to_value(fault)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        notes.push(format!("fault: {name}"));
    }
    let since = format!("{} ago", age(now_ms.saturating_sub(vrrp.since_unix_ms)));
    [
        node.node.clone(),
        node.address.clone(),
        vrrp.state.to_string(),
        vrrp.priority.to_string(),
        db.map_or_else(|| "not monitored".into(), |db| db.role.to_string()),
        db.map_or_else(dash, |db| yes_no(db.healthy)),
        yes_no(status.holds_vips),
        db.map_or_else(dash, |db| yes_no(db.maintenance)),
        replication,
        since,
        notes.join("; "),
    ]
}

/// "streaming, async, 0 bytes behind, promotable" on a standby; "standby streaming, sync, 12.0 kB
/// behind" on a primary; the WAL receiver's word where nothing else is known.
fn replication_cell(db: &crate::status::DatabaseStatus) -> String {
    use whpg_policy::replication::bytes_text;
    let Some(r) = &db.replication else {
        return match &db.wal_receiver {
            None if db.role == DbRoleStatus::Standby => "no WAL receiver".to_string(),
            None => "-".to_string(),
            Some(wal) if wal.streaming => "streaming".to_string(),
            Some(_) => "not streaming".to_string(),
        };
    };
    let mut parts = Vec::new();
    let who = if db.role == DbRoleStatus::Primary {
        "standby "
    } else {
        ""
    };
    parts.push(match r.streaming {
        Some(true) => format!("{who}streaming"),
        Some(false) => format!("{who}not streaming"),
        None if db.role == DbRoleStatus::Primary => "no standby connected".to_string(),
        None => "no WAL sender on the primary".to_string(),
    });
    if let Some(sync) = r.synchronous {
        parts.push(if sync { "sync" } else { "async" }.to_string());
    }
    match r.synchronous_standby_names.as_deref() {
        Some("") => parts.push("commits alone".to_string()),
        Some(names) => parts.push(format!("commits wait for {names}")),
        None => {}
    }
    if let Some(lag) = r.lag_bytes {
        let time = match r.lag_ms {
            Some(ms) if ms > 0 => format!(" for {ms} ms"),
            _ => String::new(),
        };
        parts.push(format!("{} behind{time}", bytes_text(lag)));
    }
    match r.promotable {
        Some(true) => parts.push("promotable".to_string()),
        Some(false) => parts.push("NOT PROMOTABLE".to_string()),
        None => {}
    }
    parts.join(", ")
}

/// `1d2h`, `3h4m`, `5m6s`, `7s` — two units at most.
fn age(ms: u64) -> String {
    let s = ms / 1000;
    let (d, h, m) = (s / 86_400, s / 3600 % 24, s / 60 % 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m}m")
    } else if m > 0 {
        format!("{m}m{}s", s % 60)
    } else {
        format!("{}s", s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_short() {
        assert_eq!(age(999), "0s");
        assert_eq!(age(61_000), "1m1s");
        assert_eq!(age(3_600_000 * 5 + 60_000 * 7), "5h7m");
        assert_eq!(age(86_400_000 * 2 + 3_600_000), "2d1h");
    }

    #[test]
    fn a_table_shows_a_reachable_and_an_unreachable_node() {
        let status = crate::status::test_status();
        let report = PairReport {
            at_unix_ms: status.vrrp.since_unix_ms + 5_000,
            nodes: vec![
                NodeReport {
                    node: "a".into(),
                    address: "10.77.0.11".into(),
                    api: String::new(),
                    reachable: true,
                    error: None,
                    status: Some(status),
                },
                NodeReport {
                    node: "b".into(),
                    address: "10.77.0.12".into(),
                    api: String::new(),
                    reachable: false,
                    error: Some("no answer within 1s".into()),
                    status: None,
                },
            ],
        };
        let table = render_table(&report);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("NODE"), "{table}");
        assert!(
            lines[1].contains("BACKUP") && lines[1].contains("5s ago"),
            "{table}"
        );
        assert!(
            lines[2].contains("UNREACHABLE") && lines[2].contains("no answer"),
            "{table}"
        );
    }

    #[test]
    fn a_sync_primary_says_whom_its_commits_wait_for() {
        let db = crate::status::test_sync_primary();
        let cell = replication_cell(&db);
        assert_eq!(
            cell,
            "standby streaming, sync, commits wait for \"b\", 0 bytes behind"
        );
        let mut alone = db;
        if let Some(r) = &mut alone.replication {
            r.synchronous_standby_names = Some(String::new());
            r.synchronous = Some(false);
        }
        assert!(replication_cell(&alone).contains("async, commits alone"));
    }
}
