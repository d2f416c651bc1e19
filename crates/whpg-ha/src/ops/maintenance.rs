//! `whpg-ha maintenance on|off`: sets maintenance mode on every node's daemon (no automatic
//! failover while it is on) and prints what each one answered. Exits non-zero when any node
//! refused or could not be reached: the pair is then not in the mode that was asked for.
//!
//! Each daemon keeps the mode on disk (`state.json` in `[journal] path`) before it answers, so a
//! restarted daemon, or a rebooted host, comes back in the mode it was in.

use std::process::ExitCode;

use serde::Serialize;

use super::{for_each_node, load_config, targets, REQUEST_TIMEOUT};
use crate::api::control::MaintenanceReply;
use crate::api::Token;
use crate::cli::{MaintenanceArgs, OnOff};
use crate::client::{send, Request};

#[derive(Debug, Serialize)]
struct Outcome {
    node: String,
    address: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    maintenance: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn maintenance_command(args: &MaintenanceArgs) -> ExitCode {
    let client = &args.client;
    let config = match load_config(&client.config.config, client.config.node.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let Some(token_file) = &config.api.token_file else {
        eprintln!(
            "whpg-ha maintenance: no api.token_file configured, so the daemons refuse every change; \
             create a token file (chmod 600) on both nodes and set api.token_file"
        );
        return ExitCode::from(1);
    };
    let token = match Token::read(token_file) {
        Ok(token) => token,
        Err(e) => {
            eprintln!("whpg-ha maintenance: {e:#}");
            return ExitCode::from(1);
        }
    };
    let targets = match targets(&config) {
        Ok(targets) => targets,
        Err(e) => {
            eprintln!("whpg-ha maintenance: {e}");
            return ExitCode::from(1);
        }
    };
    let on = args.mode == OnOff::On;
    let body = format!("{{\"on\": {on}}}");
    let outcomes = for_each_node(&targets, |target| {
        let request = Request::post_json("/maintenance", &body, Some(token.expose()));
        let mut outcome = Outcome {
            node: target.node.name.clone(),
            address: target.node.address.to_string(),
            ok: false,
            maintenance: None,
            error: None,
        };
        match send(target.api, &request, REQUEST_TIMEOUT) {
            Ok(response) => {
                let reply: Option<MaintenanceReply> = serde_json::from_str(&response.body).ok();
                if response.status == 200 {
                    outcome.maintenance = reply.as_ref().and_then(|r| r.maintenance);
                    outcome.ok = outcome.maintenance == Some(on);
                    if !outcome.ok {
                        outcome.error = Some(format!(
                            "the daemon reports maintenance {:?}",
                            outcome.maintenance
                        ));
                    }
                } else {
                    let why = reply
                        .and_then(|r| r.error)
                        .unwrap_or_else(|| response.body.trim().to_string());
                    outcome.error = Some(format!("refused (HTTP {}): {why}", response.status));
                }
            }
            Err(e) => outcome.error = Some(format!("unreachable at {}: {e}", target.api)),
        }
        outcome
    });
    if client.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&outcomes).expect("outcomes serialize")
        );
    } else {
        for o in &outcomes {
            match (&o.error, o.maintenance) {
                (None, Some(mode)) => println!(
                    "{} ({}): maintenance {}",
                    o.node,
                    o.address,
                    if mode { "on" } else { "off" }
                ),
                (error, _) => println!(
                    "{} ({}): {}",
                    o.node,
                    o.address,
                    error.as_deref().unwrap_or("no answer")
                ),
            }
        }
    }
    if outcomes.iter().all(|o| o.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
