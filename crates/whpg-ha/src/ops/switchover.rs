//! `whpg-ha switchover`: hand the coordinator role to the standby with no acknowledged commit
//! lost (design invariant 6).
//!
//! 1. every node's `/status`: the primary (VIP, database primary) and the standby, which must
//!    stream; on the primary's database `pg_stat_replication` must show it `streaming` and close
//!    behind (never `gp_segment_configuration`: its standby columns are not maintained);
//! 2. confirmation (unless `--yes`);
//! 3. maintenance on at the standby: nothing promotes on its own while the primary stops;
//! 4. the primary's daemon leaves the election (VIP removed), stops its database cleanly and
//!    answers the shutdown checkpoint location;
//! 5. the standby's daemon asks the old primary's daemon itself for the shutdown checkpoint
//!    (`GET /switchover/checkpoint`: the CLI's word is not enough; the location the CLI passes
//!    as `min_lsn` can only raise the bar), waits until it received WAL up to it (so it has every
//!    commit), promotes, verifies a write and installs the VIP;
//! 6. maintenance off; the write gap and the new layout are printed;
//! 7. with `--rejoin`, the old primary is rebuilt as the new standby.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::json;

use super::rejoin::rejoin_through_daemons;
use super::status::{ask_all, render_table};
use super::steps::{maintenance, post, runtime, token, Steps};
use super::{load_config, targets, Target};
use crate::api::switchover::WAL_WAIT;
use crate::cli::SwitchoverArgs;
use crate::config::Config;
use crate::db::{observe, ConnParams};
use crate::status::DbRoleStatus;

/// A standby further behind than this (bytes of WAL not yet flushed there) is refused.
pub const MAX_LAG_BYTES: u64 = 16 * 1024 * 1024;

/// The two roles found in step 1.
struct Layout {
    primary: Target,
    standby: Target,
}

pub fn switchover_command(args: &SwitchoverArgs) -> ExitCode {
    let client = &args.client;
    let mut steps = Steps::new("switchover", client.json);
    let mut gap = None;
    let result = run(args, &mut steps, &mut gap);
    let extra = json!({
        "write_gap_ms": gap.map(|g: Duration| g.as_millis() as u64),
    });
    if let Err(e) = &result {
        if !client.json && !e.is_empty() {
            eprintln!("whpg-ha switchover: {e}");
        }
    }
    steps.finish(extra)
}

/// Errors that happen before any step (configuration) are returned; step failures are recorded
/// by `steps` and returned as an empty string.
fn run(args: &SwitchoverArgs, steps: &mut Steps, gap: &mut Option<Duration>) -> Result<(), String> {
    let client = &args.client;
    let config = load_config(&client.config.config, client.config.node.as_deref())?;
    let token = token(&config)?;
    let all = targets(&config)?;
    let stopped = |_| String::new();

    let nothing = "nothing was changed";
    let layout = steps
        .run(
            "check the pair (status of every node, replication on the primary)",
            nothing,
            || check_pair(&config, &all, args.to.as_deref()),
        )
        .map_err(stopped)?;
    let (primary, standby) = (&layout.primary, &layout.standby);

    steps
        .run("confirm", nothing, || confirm(args.yes, primary, standby))
        .map_err(stopped)?;

    steps
        .run(
            format!(
                "maintenance on at {} (no automatic promotion)",
                standby.node.name
            ),
            nothing,
            || maintenance(standby, true, &token).map(|d| ((), d)),
        )
        .map_err(stopped)?;

    let stop_timeout = config.commands.stop.timeout + Duration::from_secs(60);
    let gap_started = Instant::now();
    let checkpoint = steps
        .run(
            format!(
                "{}: leave the election, stop the database cleanly, read the shutdown checkpoint",
                primary.node.name
            ),
            format!(
                "{} may have left the election (VIP removed) with its database stopping or stopped; \
                 {} is still a standby in maintenance mode. Look at `whpg-ha status`; to undo, \
                 start the database on {} and restart its daemon, then `whpg-ha maintenance off`",
                primary.node.name, standby.node.name, primary.node.name
            ),
            || {
                let reply = post(primary, "/switchover/demote", "{}", &token, stop_timeout)?;
                let lsn = reply
                    .lsn
                    .ok_or("the daemon answered no checkpoint location")?;
                let detail = format!(
                    "stopped in {} ms, shutdown checkpoint at {lsn}",
                    reply.took_ms
                );
                Ok((lsn, detail))
            },
        )
        .map_err(stopped)?;

    let promote_timeout = WAL_WAIT + Duration::from_secs(180);
    let mut body = json!({ "min_lsn": checkpoint });
    if crate::client::settings().allow_clear_token {
        // The standby's daemon asks the old primary's for the checkpoint with the same token.
        body["insecure_token_over_http"] = json!(true);
    }
    let body = body.to_string();
    steps
        .run(
            format!(
                "{}: read the shutdown checkpoint from {}'s daemon, wait for WAL up to it, \
                 promote, verify a write, take the VIP",
                standby.node.name, primary.node.name
            ),
            format!(
                "{} is stopped cleanly and out of the election; {} is in maintenance mode and may \
                 or may not be promoted: look at `whpg-ha status` and `whpg-ha history`. No commit \
                 is lost: {} has the old primary's WAL only if it reported it received it",
                primary.node.name, standby.node.name, standby.node.name
            ),
            || {
                let reply = post(
                    standby,
                    "/switchover/promote",
                    &body,
                    &token,
                    promote_timeout,
                )?;
                *gap = Some(gap_started.elapsed());
                let detail = format!(
                    "received up to {}: {} ({} ms)",
                    reply.lsn.unwrap_or_default(),
                    reply
                        .detail
                        .as_deref()
                        .unwrap_or("promoted and serving the VIP"),
                    reply.took_ms
                );
                Ok(((), detail))
            },
        )
        .map_err(stopped)?;

    steps
        .run(
            format!("maintenance off at {}", standby.node.name),
            format!(
                "{} is the primary with the VIP but still in maintenance mode: run `whpg-ha \
                 maintenance off`",
                standby.node.name
            ),
            || {
                let done = maintenance(standby, false, &token)?;
                Ok(((), done))
            },
        )
        .map_err(stopped)?;

    let gap_text = gap.map_or("?".into(), |g| format!("{:.3} s", g.as_secs_f64()));
    if !args.client.json {
        println!(
            "\nwrite gap as seen from here (stop requested → new primary verified): {gap_text}\n"
        );
        print!("{}", render_table(&ask_all(&all)));
    }

    if args.rejoin {
        let old = primary.clone();
        let new = standby.clone();
        rejoin_through_daemons(&config, steps, &old, &new, &token)?;
    }
    Ok(())
}

fn check_pair(
    config: &Config,
    all: &[Target],
    to: Option<&str>,
) -> Result<(Layout, String), String> {
    let report = ask_all(all);
    for node in &report.nodes {
        if !node.reachable {
            return Err(format!(
                "{} does not answer: {}",
                node.node,
                node.error.as_deref().unwrap_or("no answer")
            ));
        }
    }
    let status = |i: usize| {
        report.nodes[i]
            .status
            .as_ref()
            .expect("reachable nodes have a status")
    };
    let role = |i: usize| {
        status(i)
            .database
            .as_ref()
            .map_or(DbRoleStatus::Unknown, |db| db.role)
    };
    let primaries: Vec<usize> = (0..all.len())
        .filter(|&i| status(i).holds_vips && role(i) == DbRoleStatus::Primary)
        .collect();
    let [p] = primaries[..] else {
        return Err(format!(
            "expected exactly one node holding the VIP with a primary database, found {}",
            primaries.len()
        ));
    };
    let standbys: Vec<usize> = (0..all.len())
        .filter(|&i| i != p && role(i) == DbRoleStatus::Standby)
        .collect();
    let [s] = standbys[..] else {
        let others: Vec<String> = (0..all.len())
            .filter(|&i| i != p)
            .map(|i| format!("{}'s database is {}", all[i].node.name, role(i)))
            .collect();
        return Err(format!(
            "no standby is streaming: {}",
            if others.is_empty() {
                "there is no other node".to_string()
            } else {
                others.join(", ")
            }
        ));
    };
    let (primary, standby) = (all[p].clone(), all[s].clone());
    if let Some(to) = to {
        if to != standby.node.name {
            return Err(format!(
                "{to} is not the standby ({} is)",
                standby.node.name
            ));
        }
    }
    let Some(db) = status(s).database.as_ref() else {
        return Err(format!(
            "the standby {} does not monitor its database (database.monitor = false)",
            standby.node.name
        ));
    };
    // The standby's own daemon: it must hold everything the primary acknowledged (the same
    // guard as a failover's), or it is refused now, before the primary is touched.
    if let Some(r) = &db.replication {
        if r.promotable == Some(false) {
            return Err(format!(
                "the standby {} is not promotable: {}; let it stream and catch up first \
                 (`whpg-ha status` shows its lag)",
                standby.node.name,
                r.not_promotable.as_deref().unwrap_or("unknown why")
            ));
        }
    }
    if !db.wal_receiver.as_ref().is_some_and(|w| w.streaming) {
        return Err(format!(
            "the standby {} is not streaming (its WAL receiver is not streaming)",
            standby.node.name
        ));
    }
    if !db.healthy {
        return Err(format!("the standby {} is not healthy", standby.node.name));
    }
    if db.needs_rejoin || db.fenced.is_some() {
        return Err(format!(
            "the standby {} is fenced or needs a rejoin",
            standby.node.name
        ));
    }
    // The primary's own view: its WAL sender to the standby streams and is close.
    let params = ConnParams::peer(&config.database, std::net::IpAddr::V4(primary.node.address));
    let facts = runtime()
        .block_on(observe(
            &params,
            config.health.timeout.max(Duration::from_secs(3)),
        ))
        .map_err(|e| {
            format!(
                "cannot query the primary's database on {}: {e}",
                primary.node.address
            )
        })?;
    let identity = crate::db::query::StandbyIdentity {
        address: standby.node.address.to_string(),
        application_name: standby.node.application_name.clone(),
    };
    let row = identity
        .find(&facts.replication)
        .or_else(|| match &facts.replication[..] {
            [only] if only.client_addr.is_none() => Some(only),
            _ => None,
        })
        .ok_or_else(|| {
            format!(
                "pg_stat_replication on {} has no row for {} ({}): the standby is not streaming",
                primary.node.name, standby.node.name, standby.node.address
            )
        })?;
    if row.state.as_deref() != Some("streaming") {
        return Err(format!(
            "pg_stat_replication on {} shows {} in state {:?}, not streaming",
            primary.node.name, standby.node.name, row.state
        ));
    }
    let lag = match (facts.current_lsn, row.flush_lsn) {
        (Some(current), Some(flushed)) => current.0.saturating_sub(flushed.0),
        _ => {
            return Err(format!(
                "cannot tell how far behind {} is (no WAL positions on {})",
                standby.node.name, primary.node.name
            ))
        }
    };
    if lag > MAX_LAG_BYTES {
        return Err(format!(
            "the standby {} lags by {lag} bytes of WAL (more than {MAX_LAG_BYTES}): let it catch up first",
            standby.node.name
        ));
    }
    let detail = format!(
        "{} is the primary (VIP), {} streams from it ({} bytes behind, sync_state {})",
        primary.node.name,
        standby.node.name,
        lag,
        row.sync_state.as_deref().unwrap_or("?")
    );
    Ok((Layout { primary, standby }, detail))
}

fn confirm(yes: bool, primary: &Target, standby: &Target) -> Result<((), String), String> {
    if yes {
        return Ok(((), "--yes given".into()));
    }
    let line = super::steps::ask(
        &format!(
            "Stop the database on {} and make {} the primary? [y/N] ",
            primary.node.name, standby.node.name
        ),
        "pass --yes to switch over without a question",
    )?;
    if matches!(line.as_str(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(((), "confirmed".into()))
    } else {
        Err("not confirmed".into())
    }
}
