//! The daemon's half of a planned switchover and of a WarehousePG rejoin, driven by the CLI:
//!
//! | route | what this daemon does |
//! |---|---|
//! | `POST /switchover/demote` | leaves the election (VIP removed), stops its database cleanly, answers the shutdown checkpoint |
//! | `POST /switchover/promote` `{"min_lsn": "X/Y"}` | waits until its standby received WAL up to `min_lsn`, promotes, answers once writable with the VIP |
//! | `POST /rejoin` `{"standby_host": "A.B.C.D"}` | WarehousePG, on the active coordinator: removes a stale standby entry (`gpinitstandby -r -a`), then runs `commands.rejoin` (gpinitstandby) for that host |
//! | `POST /rejoin/local` `{"primary_host": "A.B.C.D"}` | on the node to rebuild (`switchover --rejoin`): stop, move the data directory aside, PostgreSQL: base backup and start |
//!
//! All need the bearer token, and one runs at a time per daemon. The rejoin routes also need the
//! caller to be the configured peer or this node itself, and name the peer as the other host;
//! `/rejoin/local` refuses while the local database answers as a primary. The loop is only asked for short things (feed a policy input,
//! journal a line); the long work (commands, waiting for WAL) runs in a spawned task that
//! answers over a oneshot channel, so the VRRP loop keeps advertising and a client that goes
//! away does not cut a step in half.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::control::{authorized_body, refusal, ApiCommand, OperationGuard};
use super::{checks, ApiState};
use crate::config::{CommandKind, Config, Flavor};
use crate::db::Lsn;
use crate::node::Refusal;
use crate::rebuild;

/// How long the promoting standby waits for the old primary's last WAL.
pub const WAL_WAIT: Duration = Duration::from_secs(30);
/// How long it waits to be VRRP master after the old primary resigned.
const MASTER_WAIT: Duration = Duration::from_secs(10);
/// How long it waits for the promotion to be verified and the VIP installed.
const PROMOTION_WAIT: Duration = Duration::from_secs(120);
const LOOP_TIMEOUT: Duration = Duration::from_secs(2);

/// The answer of every endpoint here.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StepReply {
    pub node: String,
    pub ok: bool,
    /// What was done, one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Demote: the shutdown checkpoint; promote: the WAL position received before promoting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub took_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    pub min_lsn: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejoinRequest {
    pub standby_host: std::net::Ipv4Addr,
}

fn node(state: &ApiState) -> String {
    state.status.borrow().node.clone()
}

fn answer(state: &ApiState, code: StatusCode, mut reply: StepReply) -> Response {
    reply.node = node(state);
    (code, Json(reply)).into_response()
}

fn refused(state: &ApiState, code: StatusCode, error: impl Into<String>) -> Response {
    let reply = StepReply {
        error: Some(error.into()),
        ..StepReply::default()
    };
    answer(state, code, reply)
}

/// Why the loop did not do what it was asked.
#[derive(Debug, thiserror::Error)]
enum LoopError {
    #[error("the daemon loop is not answering")]
    NotAnswering,
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// Ask the loop something short and wait (bounded) for its answer.
async fn ask_loop(
    state: &ApiState,
    make: impl FnOnce(oneshot::Sender<Result<(), Refusal>>) -> ApiCommand,
) -> Result<(), LoopError> {
    let (reply, answer) = oneshot::channel();
    let sent = tokio::time::timeout(LOOP_TIMEOUT, state.commands.send(make(reply))).await;
    if !matches!(sent, Ok(Ok(()))) {
        return Err(LoopError::NotAnswering);
    }
    match tokio::time::timeout(LOOP_TIMEOUT, answer).await {
        Ok(Ok(result)) => Ok(result?),
        _ => Err(LoopError::NotAnswering),
    }
}

/// Journal one line through the loop (best effort: the step's answer matters more).
async fn journal(state: &ApiState, detail: String) {
    let (reply, _answer) = oneshot::channel();
    let command = ApiCommand::Record { detail, reply };
    let _ = tokio::time::timeout(LOOP_TIMEOUT, state.commands.send(command)).await;
}

/// Take the daemon's one operation slot for `what`, or the 409 saying what holds it.
fn begin(state: &ApiState, what: &str) -> Result<OperationGuard, Box<Response>> {
    state
        .operations
        .begin(what)
        .map_err(|busy| Box::new(refused(state, StatusCode::CONFLICT, busy)))
}

/// Run `work` in its own task and wait for it; the reply's timing is measured here. The task
/// holds `running` until the work is done, even when the client went away.
async fn in_task<F>(state: &ApiState, running: OperationGuard, work: F) -> Response
where
    F: Future<Output = Result<StepReply, String>> + Send + 'static,
{
    let started = Instant::now();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let result = work.await;
        drop(running);
        let _ = tx.send(result);
    });
    let result = rx
        .await
        .unwrap_or_else(|_| Err("the task running the step stopped".into()));
    let took_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(reply) => answer(
            state,
            StatusCode::OK,
            StepReply {
                ok: true,
                took_ms,
                ..reply
            },
        ),
        Err(error) => answer(
            state,
            StatusCode::CONFLICT,
            StepReply {
                error: Some(error),
                took_ms,
                ..StepReply::default()
            },
        ),
    }
}

pub async fn demote(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Some(response) = refusal(&state, &headers) {
        return response;
    }
    if let Err(why) = checks::primary(&state.status.borrow()) {
        return refused(
            &state,
            StatusCode::CONFLICT,
            format!("this node is not the serving primary ({why})"),
        );
    }
    let running = match begin(&state, "switchover demote") {
        Ok(guard) => guard,
        Err(response) => return *response,
    };
    if let Err(e) = ask_loop(&state, |reply| ApiCommand::Demote { reply }).await {
        return refused(&state, StatusCode::CONFLICT, e.to_string());
    }
    let task_state = state.clone();
    in_task(&state, running, async move {
        let config = &task_state.config;
        let result = async {
            let stopped = rebuild::stop_cleanly(config)
                .await
                .map_err(|e| format!("clean stop failed: {e}"))?;
            let checkpoint = rebuild::shutdown_checkpoint(config)
                .await
                .map_err(|e| format!("database stopped ({stopped}); {e}"))?;
            Ok::<_, String>((stopped, checkpoint))
        }
        .await;
        let line = match &result {
            Ok((stopped, lsn)) => {
                format!(
                    "switchover: database stopped cleanly ({stopped}); shutdown checkpoint {lsn}"
                )
            }
            Err(e) => format!("switchover: demoted, but {e}"),
        };
        journal(&task_state, line).await;
        let (stopped, checkpoint) = result?;
        Ok(StepReply {
            detail: Some(stopped),
            lsn: Some(checkpoint.to_string()),
            ..StepReply::default()
        })
    })
    .await
}

pub async fn promote(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    const EXPECTED: &str = r#"{"min_lsn": "X/Y"}"#;
    let request: PromoteRequest =
        match authorized_body(&state, &headers, &body, EXPECTED, |s, c, t| {
            refused(s, c, t)
        }) {
            Ok(request) => request,
            Err(response) => return *response,
        };
    let min_lsn: Lsn = match request.min_lsn.parse() {
        Ok(lsn) => lsn,
        Err(e) => {
            return refused(
                &state,
                StatusCode::BAD_REQUEST,
                format!("expected {EXPECTED}: min_lsn: {e}"),
            )
        }
    };
    let running = match begin(&state, "switchover promote") {
        Ok(guard) => guard,
        Err(response) => return *response,
    };
    let task_state = state.clone();
    in_task(&state, running, async move {
        let state = &task_state;
        let received = rebuild::wait_received(&state.config, min_lsn, WAL_WAIT).await?;
        journal(
            state,
            format!("switchover: received WAL up to {received} (needed {min_lsn}): promoting"),
        )
        .await;
        // The old primary resigned; until our instance has taken over, the policy refuses.
        let deadline = Instant::now() + MASTER_WAIT;
        loop {
            let planned = |reply| ApiCommand::PlannedPromotion {
                shutdown_checkpoint: min_lsn.0,
                received: received.0,
                reply,
            };
            match ask_loop(state, planned).await {
                Ok(()) => break,
                Err(LoopError::Refused(refusal))
                    if refusal.is_transient() && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(format!("promotion refused: {e}")),
            }
        }
        let mut status = state.status.clone();
        let deadline = tokio::time::Instant::now() + PROMOTION_WAIT;
        loop {
            {
                let now = status.borrow_and_update();
                if checks::primary(&now).is_ok() {
                    break;
                }
                if let Some(db) = &now.database {
                    if db.promotion_gave_up {
                        let last = now
                            .events
                            .iter()
                            .rev()
                            .find(|e| e.kind == "policy")
                            .map_or(String::new(), |e| format!(": {}", e.detail));
                        return Err(format!("the promotion failed{last}"));
                    }
                }
            }
            match tokio::time::timeout_at(deadline, status.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    let why = checks::primary(&status.borrow()).err().unwrap_or_default();
                    return Err(format!(
                        "not a writable primary with the VIP within {} s ({why})",
                        PROMOTION_WAIT.as_secs()
                    ));
                }
            }
        }
        Ok(StepReply {
            detail: Some("promoted, verified writable, VIP installed".into()),
            lsn: Some(received.to_string()),
            ..StepReply::default()
        })
    })
    .await
}

/// The address as IPv4 when it is one (also an IPv4-mapped IPv6 address).
fn plain(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The configured peer's address (a pair has one).
fn peer_address(config: &Config) -> Option<Ipv4Addr> {
    config.peer().map(|p| p.address)
}

/// Whether `remote` may ask for a rejoin: the configured peer, or this node itself (a CLI on
/// this host, over loopback or the node's own address). `Err` says why not.
pub fn rejoin_caller(config: &Config, remote: IpAddr) -> Result<(), String> {
    let remote = plain(remote);
    if remote.is_loopback() || remote == IpAddr::V4(config.local.address) {
        return Ok(());
    }
    match peer_address(config) {
        Some(peer) if remote == IpAddr::V4(peer) => Ok(()),
        Some(peer) => Err(format!(
            "rejoin requests are accepted only from the peer {peer} or from this node; \
             {remote} is neither: run the command on a node of the pair"
        )),
        None => Err("no peer is configured: there is nothing to rejoin".into()),
    }
}

/// Whether `host`, named in a rejoin request as the other side, is the configured peer.
fn names_the_peer(config: &Config, key: &str, host: Ipv4Addr) -> Result<(), String> {
    match peer_address(config) {
        Some(peer) if peer == host => Ok(()),
        Some(peer) => Err(format!(
            "{key} {host} is not the configured peer {peer}: a rejoin pairs this node with \
             its peer only"
        )),
        None => Err("no peer is configured: there is nothing to rejoin".into()),
    }
}

pub async fn rejoin(
    State(state): State<ApiState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: RejoinRequest = match authorized_body(
        &state,
        &headers,
        &body,
        r#"{"standby_host": "A.B.C.D"}"#,
        refused,
    ) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    if let Err(why) = rejoin_caller(&state.config, remote.ip()) {
        return refused(&state, StatusCode::FORBIDDEN, why);
    }
    if let Err(why) = names_the_peer(&state.config, "standby_host", request.standby_host) {
        return refused(&state, StatusCode::BAD_REQUEST, why);
    }
    if state.config.database.flavor != Flavor::WarehousePg {
        return refused(
            &state,
            StatusCode::CONFLICT,
            "database.flavor = postgres: the new standby runs its own base backup (`whpg-ha rejoin` there)",
        );
    }
    if let Err(why) = checks::primary(&state.status.borrow()) {
        return refused(
            &state,
            StatusCode::CONFLICT,
            format!("this node is not the serving primary ({why})"),
        );
    }
    let running = match begin(&state, "rejoin (gpinitstandby)") {
        Ok(guard) => guard,
        Err(response) => return *response,
    };
    let task_state = state.clone();
    in_task(&state, running, async move {
        let mut vars = BTreeMap::new();
        vars.insert("standby_host", request.standby_host.to_string());
        vars.insert("primary_host", task_state.config.local.address.to_string());
        let result = rebuild::init_standby(&task_state.config, &vars).await;
        let line = match &result {
            Ok(done) => format!("rejoin of {}: {done}", request.standby_host),
            Err(e) => format!("rejoin of {} failed: {e}", request.standby_host),
        };
        journal(&task_state, line).await;
        Ok(StepReply {
            detail: Some(result?),
            ..StepReply::default()
        })
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejoinLocalRequest {
    pub primary_host: std::net::Ipv4Addr,
}

/// `POST /rejoin/local {"primary_host"}` on the node to rebuild (`switchover --rejoin`): make sure
/// the local database is stopped, move the data directory aside, and on PostgreSQL take the base
/// backup from the primary and start it. On WarehousePG the CLI then asks the primary's daemon to
/// run gpinitstandby (`POST /rejoin`).
pub async fn rejoin_local(
    State(state): State<ApiState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: RejoinLocalRequest = match authorized_body(
        &state,
        &headers,
        &body,
        r#"{"primary_host": "A.B.C.D"}"#,
        refused,
    ) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    if let Err(why) = rejoin_caller(&state.config, remote.ip()) {
        return refused(&state, StatusCode::FORBIDDEN, why);
    }
    if request.primary_host == state.config.local.address || state.status.borrow().holds_vips {
        return refused(
            &state,
            StatusCode::CONFLICT,
            "this node is the active primary: it cannot be rebuilt as a standby",
        );
    }
    if let Err(why) = names_the_peer(&state.config, "primary_host", request.primary_host) {
        return refused(&state, StatusCode::BAD_REQUEST, why);
    }
    let answers_as_primary = state
        .status
        .borrow()
        .database
        .as_ref()
        .is_some_and(|db| db.role == crate::status::DbRoleStatus::Primary && db.healthy);
    if answers_as_primary {
        return refused(
            &state,
            StatusCode::CONFLICT,
            "the local database answers as a primary: it is not rebuilt while it serves; \
             stop it (or fence it) first, or run `whpg-ha rejoin` on this node",
        );
    }
    let running = match begin(&state, "rejoin (rebuild this node)") {
        Ok(guard) => guard,
        Err(response) => return *response,
    };
    let task_state = state.clone();
    in_task(&state, running, async move {
        let state = &task_state;
        let config = &state.config;
        let result = async {
            let stopped = rebuild::ensure_stopped(config).await?;
            journal(state, format!("rejoin: local database stopped ({stopped})")).await;
            let aside = rebuild::move_aside(config)?;
            let moved = format!("data directory moved to {}", aside.display());
            journal(state, format!("rejoin: {moved}")).await;
            if config.database.flavor == Flavor::Postgres {
                let primary = request.primary_host.to_string();
                rebuild::base_backup(config, &primary)
                    .await
                    .map_err(|e| format!("{moved}; base backup failed: {e}"))?;
                journal(state, format!("rejoin: base backup from {primary} done")).await;
                rebuild::run_configured(config, CommandKind::Start, &BTreeMap::new())
                    .await
                    .map_err(|e| format!("{moved}; start failed: {e}"))?;
                journal(state, "rejoin: standby started".to_string()).await;
            }
            Ok::<_, String>(if config.database.flavor == Flavor::Postgres {
                format!(
                    "{moved}; base backup from {} taken; standby started",
                    request.primary_host
                )
            } else {
                moved
            })
        }
        .await;
        if let Err(e) = &result {
            journal(state, format!("rejoin failed: {e}")).await;
        }
        Ok(StepReply {
            detail: Some(result?),
            ..StepReply::default()
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        crate::config::testing::TestConfig::pair().parse("a")
    }

    #[test]
    fn rejoin_is_asked_only_by_the_peer_or_this_node() {
        let c = config();
        for ok in [
            "10.77.0.12",
            "10.77.0.11",
            "127.0.0.1",
            "::1",
            "::ffff:10.77.0.12",
        ] {
            assert!(rejoin_caller(&c, ok.parse().unwrap()).is_ok(), "{ok}");
        }
        let why = rejoin_caller(&c, "10.77.0.99".parse().unwrap()).unwrap_err();
        assert!(
            why.contains("only from the peer 10.77.0.12") && why.contains("10.77.0.99 is neither"),
            "{why}"
        );
        assert!(names_the_peer(&c, "standby_host", Ipv4Addr::new(10, 77, 0, 12)).is_ok());
        let why = names_the_peer(&c, "standby_host", Ipv4Addr::new(10, 77, 0, 99)).unwrap_err();
        assert!(
            why.contains("standby_host 10.77.0.99 is not the configured peer"),
            "{why}"
        );
    }
}
