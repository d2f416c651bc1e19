//! `whpg-ha rejoin`, run on a failed or old primary: rebuild it as the standby of the active
//! coordinator.
//!
//! 1. find the active primary through the daemons' APIs (refused on the active primary itself);
//! 2. make sure the local database is stopped (`commands.stop`, else `commands.fence`);
//! 3. move the data directory aside to `<datadir>.whpg-ha-<UTC timestamp>` (never delete it);
//! 4. PostgreSQL: `commands.rejoin` here (pg_basebackup from the primary), then `commands.start`;
//!    WarehousePG: nothing is left at the data directory's path (gpinitstandby refuses one that
//!    exists), then `POST /rejoin` on the primary's daemon, which runs `gpinitstandby -r -a` (a
//!    stale standby entry; "no standby configured" is fine) and `gpinitstandby -s` there
//!    ([`rebuild::init_standby`]);
//! 5. wait until the local daemon reports a streaming standby back in service.
//!
//! `switchover --rejoin` runs the same steps through the old primary's daemon
//! ([`rejoin_through_daemons`]).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::json;

use super::status::ask_all;
use super::steps::{post, runtime, token, Steps};
use super::{load_config, targets, Target};
use crate::api::Token;
use crate::cli::ClientArgs;
use crate::client::{send, Request};
use crate::config::{CommandKind, Config, Flavor};
use crate::rebuild;

/// How long the rebuilt standby may take to stream and be back in service.
const BACK_IN_SERVICE: Duration = Duration::from_secs(120);

pub fn rejoin_command(args: &ClientArgs) -> ExitCode {
    let mut steps = Steps::new("rejoin", args.json);
    let mut aside = None;
    if let Err(e) = run(args, &mut steps, &mut aside) {
        if !args.json && !e.is_empty() {
            eprintln!("whpg-ha rejoin: {e}");
        }
    }
    steps.finish(json!({ "moved_aside": aside }))
}

fn run(args: &ClientArgs, steps: &mut Steps, aside: &mut Option<String>) -> Result<(), String> {
    let config = load_config(&args.config.config, args.config.node.as_deref())?;
    let all = targets(&config)?;
    let me = all
        .iter()
        .find(|t| t.node.name == config.local.name)
        .cloned()
        .ok_or("this host is not a node of the configuration (use --node)")?;
    let stopped = |_| String::new();
    let data_dir = config.database.data_directory.display().to_string();

    let primary = steps
        .run("find the active primary", "nothing was changed", || {
            let primary = active_primary(&all)?;
            if primary.node.name == me.node.name {
                return Err(format!(
                    "this node ({}) is the active primary: rejoin runs on the node to rebuild",
                    me.node.name
                ));
            }
            let detail = format!("{} ({})", primary.node.name, primary.node.address);
            Ok((primary, detail))
        })
        .map_err(stopped)?;

    let rt = runtime();
    steps
        .run(
            "make sure the local database is stopped",
            format!("the local database may still run; {data_dir} is untouched"),
            || {
                rt.block_on(rebuild::ensure_stopped(&config))
                    .map(|d| ((), d))
            },
        )
        .map_err(stopped)?;

    let moved = steps
        .run(
            format!("move {data_dir} aside"),
            format!("the local database is stopped; {data_dir} is untouched or moved aside (see the error)"),
            || {
                let to = rebuild::move_aside(&config)?.display().to_string();
                Ok((to.clone(), format!("moved to {to}")))
            },
        )
        .map_err(stopped)?;
    *aside = Some(moved.clone());

    match config.database.flavor {
        Flavor::Postgres => {
            let primary_host = primary.node.address.to_string();
            steps
                .run(
                    format!("base backup from {} (commands.rejoin)", primary.node.name),
                    format!("data directory moved to {moved}; {data_dir} is empty or partial"),
                    || {
                        rt.block_on(rebuild::base_backup(&config, &primary_host))
                            .map(|d| ((), d))
                    },
                )
                .map_err(stopped)?;
            steps
                .run(
                    "start the standby (commands.start)",
                    format!(
                        "data directory moved to {moved}; {data_dir} holds a fresh base backup that did not start"
                    ),
                    || {
                        rt.block_on(rebuild::run_configured(
                            &config,
                            CommandKind::Start,
                            &Default::default(),
                        ))
                        .map(|d| ((), d))
                    },
                )
                .map_err(stopped)?;
        }
        Flavor::WarehousePg => {
            let token = token(&config)?;
            remote_gpinitstandby(&config, steps, &primary, &me, &token, &moved)?;
        }
    }

    steps
        .run(
            "wait until this node streams and is back in service",
            format!(
                "data directory moved to {moved}; the standby is rebuilt but not (yet) streaming"
            ),
            || wait_back_in_service(&me, BACK_IN_SERVICE),
        )
        .map_err(stopped)?;
    Ok(())
}

/// Through the daemons: the old primary's rebuilds itself (`POST /rejoin/local`), and on
/// WarehousePG the new primary's then runs gpinitstandby for it.
pub fn rejoin_through_daemons(
    config: &Config,
    steps: &mut Steps,
    old: &Target,
    new: &Target,
    token: &Token,
) -> Result<(), String> {
    let body = json!({ "primary_host": new.node.address.to_string() }).to_string();
    let timeout = config.commands.stop.timeout
        + config.commands.fence.timeout
        + config.commands.rejoin.timeout
        + config.commands.start.timeout
        + Duration::from_secs(60);
    let moved = steps
        .run(
            format!(
                "{}: stop, move the data directory aside, rebuild as standby",
                old.node.name
            ),
            format!(
                "the switchover is done; the rebuild of {} failed: run `whpg-ha rejoin` there",
                old.node.name
            ),
            || {
                let reply = post(old, "/rejoin/local", &body, token, timeout)?;
                Ok((
                    reply.detail.clone().unwrap_or_default(),
                    reply.detail.unwrap_or_default(),
                ))
            },
        )
        .map_err(|_| String::new())?;
    if config.database.flavor == Flavor::WarehousePg {
        remote_gpinitstandby(config, steps, new, old, token, &moved)?;
    }
    steps
        .run(
            format!(
                "wait until {} streams and is back in service",
                old.node.name
            ),
            format!("{} is rebuilt but not (yet) streaming", old.node.name),
            || wait_back_in_service(old, BACK_IN_SERVICE),
        )
        .map_err(|_| String::new())?;
    Ok(())
}

fn remote_gpinitstandby(
    config: &Config,
    steps: &mut Steps,
    primary: &Target,
    standby: &Target,
    token: &Token,
    moved: &str,
) -> Result<(), String> {
    let body = json!({ "standby_host": standby.node.address.to_string() }).to_string();
    let timeout = config.commands.rejoin.timeout + Duration::from_secs(30);
    steps
        .run(
            format!(
                "gpinitstandby on {} for {}",
                primary.node.name, standby.node.name
            ),
            format!("{moved}; the standby was not initialized"),
            || {
                post(primary, "/rejoin", &body, token, timeout)
                    .map(|r| ((), r.detail.unwrap_or_default()))
            },
        )
        .map(|_| ())
        .map_err(|_| String::new())
}

/// The node whose `/primary` answers 200 (it holds the VIP with a healthy writable database).
fn active_primary(all: &[Target]) -> Result<Target, String> {
    let found: Vec<&Target> = all
        .iter()
        .filter(|t| {
            send(t.api, &Request::get("/primary"), super::REQUEST_TIMEOUT)
                .is_ok_and(|r| r.status == 200)
        })
        .collect();
    match found[..] {
        [one] => Ok(one.clone()),
        [] => Err("no node answers /primary: there is no active primary to rejoin".into()),
        _ => Err("more than one node answers /primary: refusing to touch anything".into()),
    }
}

fn wait_back_in_service(node: &Target, bound: Duration) -> Result<((), String), String> {
    let deadline = Instant::now() + bound;
    loop {
        let standby = send(node.api, &Request::get("/standby"), super::REQUEST_TIMEOUT);
        let why = match standby {
            Ok(r) if r.status == 200 => {
                let report = ask_all(std::slice::from_ref(node));
                let db = report.nodes[0]
                    .status
                    .as_ref()
                    .and_then(|s| s.database.as_ref());
                match db {
                    Some(db) if !db.needs_rejoin && db.fenced.is_none() => {
                        return Ok((
                            (),
                            format!("{}: /standby 200, needs_rejoin false", node.node.name),
                        ));
                    }
                    Some(db) => format!(
                        "needs_rejoin {} fenced {}",
                        db.needs_rejoin,
                        db.fenced.as_deref().unwrap_or("no")
                    ),
                    None => "its /status has no database part".to_string(),
                }
            }
            Ok(r) => format!("/standby: {}", r.body.trim()),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "{} not back in service within {} s: {why}",
                node.node.name,
                bound.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
