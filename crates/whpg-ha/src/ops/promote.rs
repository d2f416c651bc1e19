//! `whpg-ha promote --accept-data-loss [--on NODE] [--yes]`: availability over data. Promotes a
//! standby that the daemon refuses to promote because it is not known to hold every commit the
//! primary acknowledged, after printing what is missing as far as it is known and asking.
//!
//! It never promotes beside a live primary: it refuses when the other node's database answers
//! as a primary, and so does the daemon (its own probes decide, not this command). It prints each
//! step and waits, bounded, for the promoted database to be writable with the virtual address.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::status::{ask_all, NodeReport};
use super::{load_config, steps, targets, Target};
use crate::api::promote::PromoteReply;
use crate::cli::PromoteArgs;
use crate::client::{send, Request};
use crate::status::{DbRoleStatus, ReplicationView};

/// How long the promotion may take before this command stops waiting (the daemon goes on): the
/// promote command's own timeout is 60 s by default, and the write check follows it.
const WAIT_FOR_PRIMARY: Duration = Duration::from_secs(120);

pub fn promote_command(args: &PromoteArgs) -> ExitCode {
    match run(args) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("whpg-ha promote: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &PromoteArgs) -> Result<String, String> {
    let client = &args.client;
    let config = load_config(&client.config.config, client.config.node.as_deref())?;
    let token = steps::token(&config)?;
    let targets = targets(&config)?;
    let report = ask_all(&targets);
    let (target, node) = choose(&targets, &report.nodes, args.on.as_deref())?;
    let view = node
        .status
        .as_ref()
        .and_then(|s| s.database.as_ref())
        .and_then(|d| d.replication.clone());
    println!("{}", what_is_lost(&target.node.name, view.as_ref()));
    confirm(args.yes, &target.node.name)?;
    let request = Request::post_json(
        "/promote",
        r#"{"accept_data_loss": true}"#,
        Some(token.expose()),
    );
    let response = send(target.api, &request, super::REQUEST_TIMEOUT * 5)
        .map_err(|e| format!("{} at {}: {e}", target.node.name, target.api))?;
    let reply: Option<PromoteReply> = serde_json::from_str(&response.body).ok();
    if response.status != 200 {
        let why = reply
            .and_then(|r| r.error)
            .unwrap_or_else(|| response.body.trim().to_string());
        return Err(format!(
            "{} refused (HTTP {}): {why}",
            target.node.name, response.status
        ));
    }
    println!(
        "{}: promotion started; waiting for a verified write and the virtual address (at most {} s)",
        target.node.name,
        WAIT_FOR_PRIMARY.as_secs()
    );
    wait_for_primary(target)
}

/// The node to promote: `--on`, else the only node whose database is a standby. Refuses when
/// the other node's database answers as a primary.
fn choose<'a>(
    targets: &'a [Target],
    nodes: &'a [NodeReport],
    on: Option<&str>,
) -> Result<(&'a Target, &'a NodeReport), String> {
    let role = |n: &NodeReport| {
        n.status
            .as_ref()
            .and_then(|s| s.database.as_ref())
            .map(|d| d.role)
    };
    let index =
        match on {
            Some(name) => targets
                .iter()
                .position(|t| t.node.name == name)
                .ok_or_else(|| format!("no node {name:?} in the configuration"))?,
            None => {
                let standbys: Vec<usize> = (0..nodes.len())
                    .filter(|&i| role(&nodes[i]) == Some(DbRoleStatus::Standby))
                    .collect();
                match standbys.as_slice() {
                    [one] => *one,
                    [] => return Err(
                        "no node reports a standby database (unreachable daemons, or nothing to \
                         promote); name it with --on NODE"
                            .into(),
                    ),
                    _ => {
                        return Err(
                            "both nodes report a standby database: name one with --on NODE".into(),
                        )
                    }
                }
            }
        };
    let node = &nodes[index];
    if node.status.is_none() {
        return Err(format!(
            "{}'s daemon does not answer ({}): it decides, so it must run",
            node.node,
            node.error.clone().unwrap_or_default()
        ));
    }
    if role(node) != Some(DbRoleStatus::Standby) {
        return Err(format!("{}'s database is not a standby", node.node));
    }
    for (i, other) in nodes.iter().enumerate() {
        if i != index && role(other) == Some(DbRoleStatus::Primary) {
            let healthy = other
                .status
                .as_ref()
                .and_then(|s| s.database.as_ref())
                .is_some_and(|d| d.healthy);
            if healthy {
                return Err(format!(
                    "{}'s database is a live primary: promoting {} beside it would make two \
                     primaries; stop it first, or use `whpg-ha switchover` to move the role \
                     without losing anything",
                    other.node, node.node
                ));
            }
        }
    }
    Ok((&targets[index], node))
}

/// What the standby misses, as far as its daemon knows.
fn what_is_lost(name: &str, view: Option<&ReplicationView>) -> String {
    use whpg_policy::replication::bytes_text;
    let Some(r) = view else {
        return format!(
            "{name}: its daemon reports no replication state: what would be lost is unknown"
        );
    };
    let mut text = format!("{name}: ");
    match (r.lag_bytes, &r.primary_lsn, &r.standby_lsn) {
        (Some(lag), Some(p), Some(s)) => {
            text += &format!(
                "has WAL up to {s}; the primary was last seen at {p}: at least {} of WAL, with \
             every commit in it, will be lost",
                bytes_text(lag)
            )
        }
        (_, Some(p), None) => {
            text += &format!("the primary was last seen at {p}; what this standby has is unknown")
        }
        _ => text += "the primary's WAL position was never seen: what would be lost is unknown",
    }
    text += ", plus whatever the primary committed after it was last seen.";
    if let Some(why) = &r.not_promotable {
        text += &format!("\nNot promotable because {why}.");
    }
    text
}

fn confirm(yes: bool, node: &str) -> Result<(), String> {
    if yes {
        return Ok(());
    }
    let line = steps::ask(
        &format!("Promote {node} and lose what is missing? Type the node's name to confirm: "),
        "pass --yes to promote without a question",
    )?;
    if line == node {
        Ok(())
    } else {
        Err("not confirmed: nothing was changed".into())
    }
}

/// Polls the node until its database is a primary and it holds the virtual address.
fn wait_for_primary(target: &Target) -> Result<String, String> {
    let started = Instant::now();
    let mut last_note = String::new();
    while started.elapsed() < WAIT_FOR_PRIMARY {
        std::thread::sleep(Duration::from_millis(200));
        let Ok(response) = send(target.api, &Request::get("/status"), super::REQUEST_TIMEOUT)
        else {
            continue;
        };
        let Ok(status) = serde_json::from_str::<crate::status::NodeStatus>(&response.body) else {
            continue;
        };
        let Some(db) = &status.database else { continue };
        if db.role == DbRoleStatus::Primary && status.holds_vips {
            return Ok(format!(
                "{}: promoted in {:.1} s: the database is writable and holds the virtual address",
                target.node.name,
                started.elapsed().as_secs_f64()
            ));
        }
        if db.promotion_gave_up {
            return Err(format!(
                "{}: every promotion attempt failed; see `whpg-ha history` on it",
                target.node.name
            ));
        }
        let note = status
            .events
            .back()
            .map(|e| e.detail.clone())
            .unwrap_or_default();
        if note != last_note {
            println!("{}: {note}", target.node.name);
            last_note = note;
        }
    }
    Err(format!(
        "{} is not a writable primary with the virtual address after {} s; the daemon goes on \
         (whpg-ha status)",
        target.node.name,
        WAIT_FOR_PRIMARY.as_secs()
    ))
}
