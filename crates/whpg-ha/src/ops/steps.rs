//! Numbered steps with timings for the multi-step commands (`switchover`, `rejoin`): each step
//! is printed as it ends, the first failure stops the command and says what state it left; with
//! `--json` one document is printed at the end instead.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::api::switchover::StepReply;
use crate::api::Token;
use crate::client::{send, Request};
use crate::config::Config;

use super::Target;

#[derive(Debug, Serialize)]
pub struct StepRecord {
    pub step: usize,
    pub name: String,
    pub ok: bool,
    /// Since the command started, when the step ended.
    pub at_ms: u64,
    pub took_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The steps of one command run.
pub struct Steps {
    command: &'static str,
    started: Instant,
    json: bool,
    records: Vec<StepRecord>,
    /// What the command left behind when it stopped early.
    left: Option<String>,
}

/// Why a command stopped: the step's error, already recorded.
#[derive(Debug)]
pub struct Stopped;

impl Steps {
    pub fn new(command: &'static str, json: bool) -> Steps {
        Steps {
            command,
            started: Instant::now(),
            json,
            records: Vec::new(),
            left: None,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Run one step. `Ok((value, detail))` continues; `Err(error)` stops the command, and
    /// `left` says in what state (it is printed with the error).
    pub fn run<T>(
        &mut self,
        name: impl Into<String>,
        left: impl Into<String>,
        f: impl FnOnce() -> Result<(T, String), String>,
    ) -> Result<T, Stopped> {
        let name = name.into();
        let step = self.records.len() + 1;
        if !self.json {
            println!("{step}. {name} ...");
        }
        let began = Instant::now();
        let result = f();
        let took = began.elapsed();
        let mut record = StepRecord {
            step,
            name,
            ok: result.is_ok(),
            at_ms: self.started.elapsed().as_millis() as u64,
            took_ms: took.as_millis() as u64,
            detail: None,
            error: None,
        };
        let outcome = match result {
            Ok((value, detail)) => {
                if !self.json {
                    println!(
                        "   ok in {:.3} s (at {:.3} s): {detail}",
                        took.as_secs_f64(),
                        record.at_ms as f64 / 1000.0
                    );
                }
                record.detail = Some(detail);
                Ok(value)
            }
            Err(error) => {
                let left = left.into();
                if !self.json {
                    println!(
                        "   FAILED after {:.3} s: {error}\n\nwhpg-ha {}: stopped at step {step}. State left: {left}",
                        took.as_secs_f64(),
                        self.command
                    );
                }
                record.error = Some(error);
                self.left = Some(left);
                Err(Stopped)
            }
        };
        self.records.push(record);
        outcome
    }

    /// Print the JSON document (with `extra` fields) and the exit code.
    pub fn finish(self, extra: serde_json::Value) -> ExitCode {
        let ok = self.left.is_none() && self.records.iter().all(|r| r.ok);
        if self.json {
            let mut doc = serde_json::json!({
                "command": self.command,
                "ok": ok,
                "took_ms": self.started.elapsed().as_millis() as u64,
                "steps": self.records,
                "state_left": self.left,
            });
            if let (Some(doc), serde_json::Value::Object(extra)) = (doc.as_object_mut(), extra) {
                doc.extend(extra);
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&doc).expect("steps serialize")
            );
        }
        if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    }
}

/// The token from `api.token_file`, as the CLI reads it.
pub fn token(config: &Config) -> Result<Token, String> {
    let Some(path) = &config.api.token_file else {
        return Err(
            "no api.token_file configured, so the daemons refuse every change; create a \
                    token file (chmod 600) on both nodes and set api.token_file"
                .into(),
        );
    };
    Token::read(path).map_err(|e| format!("{e:#}"))
}

/// `POST path` with `body` on `target`'s daemon, bounded by `timeout`; the daemon's answer, or
/// why there is none. A refusal (not 200) is an error carrying the daemon's reason.
pub fn post(
    target: &Target,
    path: &str,
    body: &str,
    token: &Token,
    timeout: Duration,
) -> Result<StepReply, String> {
    let request = Request::post_json(path, body, Some(token.expose()));
    let response = send(target.api, &request, timeout)
        .map_err(|e| format!("{} at {}: {e}", target.node.name, target.api))?;
    let reply: Option<StepReply> = serde_json::from_str(&response.body).ok();
    if response.status == 200 {
        return Ok(reply.unwrap_or_default());
    }
    let why = serde_json::from_str::<serde_json::Value>(&response.body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| response.body.trim().to_string());
    Err(format!(
        "{} refused (HTTP {}): {why}",
        target.node.name, response.status
    ))
}

/// Turn maintenance mode on or off on one node.
pub fn maintenance(target: &Target, on: bool, token: &Token) -> Result<String, String> {
    let body = format!("{{\"on\": {on}}}");
    let request = Request::post_json("/maintenance", &body, Some(token.expose()));
    let response = send(target.api, &request, super::REQUEST_TIMEOUT * 3)
        .map_err(|e| format!("{} at {}: {e}", target.node.name, target.api))?;
    if response.status == 200 {
        Ok(format!(
            "{}: maintenance {}",
            target.node.name,
            if on { "on" } else { "off" }
        ))
    } else {
        Err(format!(
            "{} refused (HTTP {}): {}",
            target.node.name,
            response.status,
            response.body.trim()
        ))
    }
}

/// A current-thread runtime for the CLI's few async calls (database queries, commands).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a tokio runtime")
}

/// Asks `question` on the terminal and returns the answer, trimmed; without a terminal, an error
/// saying `without_terminal` (how to go on without the question).
pub fn ask(question: &str, without_terminal: &str) -> Result<String, String> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(format!("no terminal to ask on: {without_terminal}"));
    }
    print!("{question}");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("reading the answer: {e}"))?;
    Ok(line.trim().to_string())
}
