//! The daemon's half of a planned switchover and of a WarehousePG rejoin, driven by the CLI:
//!
//! | route | what this daemon does |
//! |---|---|
//! | `POST /switchover/demote` | leaves the election (VIP removed), stops its database cleanly, answers the shutdown checkpoint |
//! | `GET /switchover/checkpoint` | on the old primary: answers the shutdown checkpoint of its cleanly stopped database (`pg_controldata`); refuses (409) while the database runs or did not stop cleanly, saying its cluster state |
//! | `POST /switchover/promote` `{}` or `{"min_lsn": "X/Y"}` | asks the configured peer's daemon for the old primary's shutdown checkpoint (`GET /switchover/checkpoint`), waits until its standby received WAL up to it (or up to `min_lsn` when that is later: the caller can only raise the bar), promotes, answers once writable with the VIP |
//! | `POST /rejoin` `{"standby_host": "A.B.C.D"}` | WarehousePG, on the active coordinator: removes a stale standby entry (`gpinitstandby -r -a`), then runs `commands.rejoin` (gpinitstandby) for that host |
//! | `POST /rejoin/local` `{"primary_host": "A.B.C.D"}` | on the node to rebuild (`switchover --rejoin`): stop, move the data directory aside, PostgreSQL: base backup and start |
//!
//! All need the bearer token, and the changing ones run one at a time per daemon. The rejoin
//! routes and `/switchover/checkpoint` also need the caller to be the configured peer or this node
//! itself; the rejoin routes name the peer as the other host; `/rejoin/local` refuses while the
//! local database answers as a primary.
//!
//! The promoting daemon never takes the shutdown checkpoint from its caller: it asks the old
//! primary's daemon — the configured peer, at its API address, with the same token, over TLS when
//! `[api] tls_*` is set — through the CLI's client ([`crate::client`]). Without TLS the token goes
//! to the peer in clear only when the request says `"insecure_token_over_http": true` (the CLI
//! sets it when given `--insecure-token-over-http`). When the peer's daemon does not answer, or
//! its database is not cleanly shut down, the promotion is refused ([`CheckpointRefusal`]) and
//! nothing changes. The loop is only asked for short things (feed a policy input,
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
use crate::client::{self, ClientError};
use crate::config::{CommandKind, Config, Flavor};
use crate::db::Lsn;
use crate::node::Refusal;
use crate::rebuild::{self, CheckpointError};

/// How long the promoting standby waits for the old primary's last WAL.
pub const WAL_WAIT: Duration = Duration::from_secs(30);
/// How long it waits to be VRRP master after the old primary resigned.
const MASTER_WAIT: Duration = Duration::from_secs(10);
/// How long it waits for the promotion to be verified and the VIP installed.
const PROMOTION_WAIT: Duration = Duration::from_secs(120);
const LOOP_TIMEOUT: Duration = Duration::from_secs(2);
/// The route on the old primary's daemon that answers its shutdown checkpoint.
pub const CHECKPOINT_PATH: &str = "/switchover/checkpoint";
/// How long the promoting standby waits for the old primary's daemon to answer it (one
/// `pg_controldata` run there, milliseconds).
pub const CHECKPOINT_ASK_TIMEOUT: Duration = Duration::from_secs(10);

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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    /// A floor the caller sets: the standby waits for the later of this and the shutdown
    /// checkpoint the old primary's daemon reports. It never lowers the bar.
    #[serde(default)]
    pub min_lsn: Option<String>,
    /// The operator accepts that the token goes to the peer's daemon in clear (no `[api] tls_*`).
    #[serde(default)]
    pub insecure_token_over_http: bool,
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

/// `GET /switchover/checkpoint`, on the old primary: the shutdown checkpoint of its cleanly
/// stopped database, read here with `pg_controldata`. Only the configured peer (the standby that
/// is to promote) or this node may ask; 409 while the database runs or did not stop cleanly.
pub async fn checkpoint(
    State(state): State<ApiState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    // One pg_controldata at a time; a second caller waits for the first.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    if let Some(response) = refusal(&state, &headers) {
        return response;
    }
    if let Err(why) = peer_or_local_caller(&state.config, remote.ip(), "checkpoint requests") {
        return refused(&state, StatusCode::FORBIDDEN, why);
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let result = rebuild::shutdown_checkpoint(&state.config).await;
    let took_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(lsn) => answer(
            &state,
            StatusCode::OK,
            StepReply {
                ok: true,
                detail: Some("the database is cleanly shut down".into()),
                lsn: Some(lsn.to_string()),
                took_ms,
                ..StepReply::default()
            },
        ),
        Err(e) => {
            let code = match e {
                CheckpointError::NotShutDown { .. } => StatusCode::CONFLICT,
                CheckpointError::Unreadable(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let reply = StepReply {
                error: Some(format!("no shutdown checkpoint here: {e}")),
                took_ms,
                ..StepReply::default()
            };
            answer(&state, code, reply)
        }
    }
}

/// Why the promoting standby could not establish the old primary's shutdown checkpoint itself.
/// In every case nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointRefusal {
    #[error("no peer is configured: there is no old primary to take the shutdown checkpoint from")]
    NoPeer,
    #[error("api.listen is empty: the peer's daemon, which reports the shutdown checkpoint, cannot be reached")]
    NoApi,
    #[error("[api] tls_*: {0}")]
    Tls(String),
    /// No (complete) answer: the daemon is down, frozen or unreachable, or the token would have
    /// gone in clear.
    #[error(
        "asked {peer}'s daemon at {api} (GET {CHECKPOINT_PATH}) for the old primary's shutdown \
         checkpoint: {error}. Nothing was changed: a planned promotion needs that daemon's own \
         answer; check it runs and answers (`whpg-ha status`), then run `whpg-ha switchover`"
    )]
    Unreachable {
        peer: String,
        api: SocketAddr,
        error: String,
    },
    /// The daemon answered that it has no shutdown checkpoint (its database runs, crashed, or
    /// cannot be read) or refused the request.
    #[error(
        "asked {peer}'s daemon at {api} (GET {CHECKPOINT_PATH}) for the old primary's shutdown \
         checkpoint: it refused (HTTP {status}): {why}. Nothing was changed: {}",
        refused_remedy(*.status)
    )]
    Refused {
        peer: String,
        api: SocketAddr,
        status: u16,
        why: String,
    },
    /// Another daemon answered at the peer's address, or the answer carried no WAL location.
    #[error(
        "asked {peer}'s daemon at {api} (GET {CHECKPOINT_PATH}) for the old primary's shutdown \
         checkpoint: {what}. Nothing was changed: check [nodes] and api.listen on both nodes"
    )]
    BadAnswer {
        peer: String,
        api: SocketAddr,
        what: String,
    },
}

/// What to do about a refusal of the peer's daemon, by its status.
fn refused_remedy(status: u16) -> &'static str {
    match status {
        409 => {
            "the old primary must be stopped cleanly first; run `whpg-ha switchover`, which \
             stops it and then promotes"
        }
        401 | 403 => "both nodes need the same api.token_file contents",
        _ => "fix what that daemon reports, then run `whpg-ha switchover`",
    }
}

/// The old primary's shutdown checkpoint as its daemon reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCheckpoint {
    pub peer: String,
    pub api: SocketAddr,
    pub lsn: Lsn,
}

/// The configured peer and where its daemon's API answers (never an address from a request).
pub fn peer_target(config: &Config) -> Result<crate::ops::Target, CheckpointRefusal> {
    let peer = config.peer().ok_or(CheckpointRefusal::NoPeer)?;
    let targets = crate::ops::targets(config).map_err(|_| CheckpointRefusal::NoApi)?;
    targets
        .into_iter()
        .find(|t| t.node.name == peer.name)
        .ok_or(CheckpointRefusal::NoPeer)
}

/// Read the peer daemon's answer to `GET /switchover/checkpoint`.
pub fn checkpoint_from_response(
    peer: &str,
    api: SocketAddr,
    response: &client::Response,
) -> Result<PeerCheckpoint, CheckpointRefusal> {
    if response.status != 200 {
        // Every refusal of the API carries `error`, whatever else its body holds.
        let why = serde_json::from_str::<serde_json::Value>(&response.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| response.body.trim().to_string());
        return Err(CheckpointRefusal::Refused {
            peer: peer.to_string(),
            api,
            status: response.status,
            why,
        });
    }
    let bad = |what: String| CheckpointRefusal::BadAnswer {
        peer: peer.to_string(),
        api,
        what,
    };
    let reply: StepReply = serde_json::from_str(&response.body)
        .map_err(|_| bad(format!("the answer is not JSON: {:?}", response.body)))?;
    if reply.node != peer {
        return Err(bad(format!(
            "the daemon that answered is {:?}, not {peer}",
            reply.node
        )));
    }
    let text = reply
        .lsn
        .ok_or_else(|| bad("the answer carries no checkpoint location".into()))?;
    let lsn = text
        .parse()
        .map_err(|e| bad(format!("the checkpoint location: {e}")))?;
    Ok(PeerCheckpoint {
        peer: peer.to_string(),
        api,
        lsn,
    })
}

/// Ask the configured peer's daemon for the old primary's shutdown checkpoint, with `token`,
/// over TLS when `[api] tls_*` is set; without TLS the token goes to another host only when
/// `allow_clear_token`. Bounded by [`CHECKPOINT_ASK_TIMEOUT`].
pub async fn ask_peer_checkpoint(
    config: &Config,
    token: &super::Token,
    allow_clear_token: bool,
) -> Result<PeerCheckpoint, CheckpointRefusal> {
    let target = peer_target(config)?;
    let tls = match &config.api.tls {
        Some(files) => Some(
            super::tls::client_config(files)
                .map_err(|e| CheckpointRefusal::Tls(format!("{e:#}")))?,
        ),
        None => None,
    };
    let settings = client::Settings {
        tls,
        allow_clear_token,
    };
    let (peer, api) = (target.node.name.clone(), target.api);
    let bearer = token.expose().to_string();
    let sent = tokio::task::spawn_blocking(move || {
        let request = client::Request {
            method: "GET",
            path: CHECKPOINT_PATH,
            bearer: Some(&bearer),
            json: None,
        };
        client::send_with(&settings, api, &request, CHECKPOINT_ASK_TIMEOUT)
    })
    .await;
    let unreachable = |error: String| CheckpointRefusal::Unreachable {
        peer: peer.clone(),
        api,
        error,
    };
    match sent {
        Ok(Ok(response)) => checkpoint_from_response(&peer, api, &response),
        Ok(Err(e @ ClientError::ClearToken(_))) => Err(unreachable(format!(
            "{e} (with `whpg-ha switchover`, that flag is passed on to this daemon)"
        ))),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(e) => Err(unreachable(format!("the request task failed: {e}"))),
    }
}

/// The WAL position the standby must have received before it promotes: the old primary's
/// shutdown checkpoint, or the caller's `min_lsn` when that is later. A caller can only raise
/// the bar, never lower it.
pub fn required_lsn(shutdown_checkpoint: Lsn, min_lsn: Option<Lsn>) -> Lsn {
    min_lsn.map_or(shutdown_checkpoint, |floor| floor.max(shutdown_checkpoint))
}

pub async fn promote(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    const EXPECTED: &str =
        r#"{} or {"min_lsn": "X/Y"}, optionally with "insecure_token_over_http": true"#;
    let request: PromoteRequest =
        match authorized_body(&state, &headers, &body, EXPECTED, |s, c, t| {
            refused(s, c, t)
        }) {
            Ok(request) => request,
            Err(response) => return *response,
        };
    let min_lsn: Option<Lsn> = match request.min_lsn.as_deref().map(str::parse).transpose() {
        Ok(lsn) => lsn,
        Err(e) => {
            return refused(
                &state,
                StatusCode::BAD_REQUEST,
                format!("expected {EXPECTED}: min_lsn: {e}"),
            )
        }
    };
    let Some(token) = state.token.clone() else {
        // Not reached: `refusal` answered 403 already.
        return refused(
            &state,
            StatusCode::FORBIDDEN,
            "no api.token_file configured",
        );
    };
    let running = match begin(&state, "switchover promote") {
        Ok(guard) => guard,
        Err(response) => return *response,
    };
    let task_state = state.clone();
    in_task(&state, running, async move {
        let state = &task_state;
        let asked =
            ask_peer_checkpoint(&state.config, &token, request.insecure_token_over_http).await;
        let peer = match asked {
            Ok(peer) => peer,
            Err(refusal) => {
                journal(state, format!("switchover: promotion refused: {refusal}")).await;
                return Err(refusal.to_string());
            }
        };
        let needed = required_lsn(peer.lsn, min_lsn);
        let floor = match min_lsn {
            Some(floor) if floor > peer.lsn => format!("; the caller's min_lsn {floor} is later"),
            _ => String::new(),
        };
        journal(
            state,
            format!(
                "switchover: {}'s daemon reports the old primary cleanly shut down at checkpoint \
                 {}{floor}; waiting for WAL up to {needed}",
                peer.peer, peer.lsn
            ),
        )
        .await;
        let received = match rebuild::wait_received(&state.config, needed, WAL_WAIT).await {
            Ok(received) => received,
            Err(e) => {
                let e = format!(
                    "{e}: the old primary's shutdown checkpoint {needed} (reported by {}'s \
                     daemon) has not arrived here, so promoting would lose commits; nothing was \
                     changed: check the standby's replication (`whpg-ha status`), start the old \
                     primary again if it is to serve, or rebuild this standby",
                    peer.peer
                );
                journal(state, format!("switchover: promotion refused: {e}")).await;
                return Err(e);
            }
        };
        journal(
            state,
            format!("switchover: received WAL up to {received} (needed {needed}): promoting"),
        )
        .await;
        // The old primary resigned; until our instance has taken over, the policy refuses.
        let deadline = Instant::now() + MASTER_WAIT;
        loop {
            let planned = |reply| ApiCommand::PlannedPromotion {
                shutdown_checkpoint: needed.0,
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
            detail: Some(format!(
                "promoted, verified writable, VIP installed; the old primary's shutdown \
                 checkpoint {} was read from {}'s daemon",
                peer.lsn, peer.peer
            )),
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
    peer_or_local_caller(config, remote, "rejoin requests")
}

/// Whether `remote` is the configured peer or this node itself; `Err` says why not, naming the
/// requests (`what`) refused.
pub fn peer_or_local_caller(config: &Config, remote: IpAddr, what: &str) -> Result<(), String> {
    let remote = plain(remote);
    if remote.is_loopback() || remote == IpAddr::V4(config.local.address) {
        return Ok(());
    }
    match peer_address(config) {
        Some(peer) if remote == IpAddr::V4(peer) => Ok(()),
        Some(peer) => Err(format!(
            "{what} are accepted only from the peer {peer} or from this node; \
             {remote} is neither: run the command on a node of the pair"
        )),
        None => Err(format!(
            "no peer is configured: {what} have no one to come from"
        )),
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

    fn lsn(text: &str) -> Lsn {
        text.parse().unwrap()
    }

    #[test]
    fn a_callers_min_lsn_only_raises_the_bar() {
        let checkpoint = lsn("0/3000060");
        assert_eq!(required_lsn(checkpoint, None), checkpoint);
        assert_eq!(required_lsn(checkpoint, Some(lsn("0/0"))), checkpoint);
        assert_eq!(required_lsn(checkpoint, Some(lsn("0/3000028"))), checkpoint);
        assert_eq!(
            required_lsn(checkpoint, Some(lsn("1/0"))),
            lsn("1/0"),
            "a later floor is kept"
        );
    }

    #[test]
    fn a_promote_request_may_omit_min_lsn_and_carries_nothing_else() {
        let parse = |text: &str| serde_json::from_str::<PromoteRequest>(text);
        let empty = parse("{}").unwrap();
        assert_eq!(empty.min_lsn, None);
        assert!(!empty.insecure_token_over_http);
        let full = parse(r#"{"min_lsn":"0/0","insecure_token_over_http":true}"#).unwrap();
        assert_eq!(full.min_lsn.as_deref(), Some("0/0"));
        assert!(full.insecure_token_over_http);
        // No way to name another daemon to ask, or to hand over a checkpoint.
        for bad in [
            r#"{"min_lsn":"0/0","peer":"10.77.0.99:8008"}"#,
            r#"{"shutdown_checkpoint":"0/0"}"#,
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("unknown field"), "{bad}: {e}");
        }
    }

    #[test]
    fn only_the_configured_peers_daemon_is_asked() {
        let c = config();
        let target = peer_target(&c).unwrap();
        assert_eq!(target.node.name, "b");
        assert_eq!(target.api.ip(), IpAddr::V4(Ipv4Addr::new(10, 77, 0, 12)));
        assert_eq!(Some(target.api.port()), c.api.port());
        // Seen from the other node, the peer is the first one.
        let from_b = crate::config::testing::TestConfig::pair().parse("b");
        assert_eq!(peer_target(&from_b).unwrap().node.name, "a");
    }

    fn response(status: u16, body: &str) -> client::Response {
        client::Response {
            status,
            body: body.into(),
        }
    }

    #[test]
    fn the_peers_answer_is_its_checkpoint_or_a_typed_refusal() {
        let api: SocketAddr = "10.77.0.12:8008".parse().unwrap();
        let ok = response(
            200,
            r#"{"node":"b","ok":true,"lsn":"0/3000060","took_ms":3}"#,
        );
        assert_eq!(
            checkpoint_from_response("b", api, &ok).unwrap(),
            PeerCheckpoint {
                peer: "b".into(),
                api,
                lsn: lsn("0/3000060")
            }
        );
        // The old primary still runs: its daemon's reason is passed on, with what to run.
        let running = response(
            409,
            r#"{"node":"b","ok":false,"error":"no shutdown checkpoint here: the cluster state is "in production", not "shut down"","took_ms":3}"#,
        );
        let refused = checkpoint_from_response("b", api, &running).unwrap_err();
        assert!(
            matches!(&refused, CheckpointRefusal::Refused { status: 409, why, .. }
                if why.contains("\"in production\"")),
            "{refused:?}"
        );
        let text = refused.to_string();
        assert!(
            text.contains("asked b's daemon at 10.77.0.12:8008 (GET /switchover/checkpoint)")
                && text.contains("refused (HTTP 409)")
                && text.contains("Nothing was changed")
                && text.contains("run `whpg-ha switchover`"),
            "{text}"
        );
        let unreadable = response(
            500,
            r#"{"node":"b","ok":false,"error":"no shutdown checkpoint here: pg_controldata: not found","took_ms":1}"#,
        );
        let text = checkpoint_from_response("b", api, &unreadable)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("refused (HTTP 500)") && text.contains("fix what that daemon reports"),
            "{text}"
        );
        let wrong_token = response(
            401,
            r#"{"node":"b","error":"missing or wrong bearer token"}"#,
        );
        let text = checkpoint_from_response("b", api, &wrong_token)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains(
                "(HTTP 401): missing or wrong bearer token. Nothing was changed: both \
                           nodes need the same api.token_file contents"
            ),
            "{text}"
        );
        // Not JSON (a proxy, another service on the port), another node, no location.
        for (body, expected) in [
            ("hello", "not JSON"),
            (
                r#"{"node":"a","ok":true,"lsn":"0/3000060","took_ms":1}"#,
                "is \"a\", not b",
            ),
            (
                r#"{"node":"b","ok":true,"took_ms":1}"#,
                "no checkpoint location",
            ),
            (
                r#"{"node":"b","ok":true,"lsn":"yesterday","took_ms":1}"#,
                "not a WAL location",
            ),
        ] {
            let e = checkpoint_from_response("b", api, &response(200, body)).unwrap_err();
            assert!(
                matches!(e, CheckpointRefusal::BadAnswer { .. })
                    && e.to_string().contains(expected),
                "{body}: {e}"
            );
        }
    }

    #[tokio::test]
    async fn without_tls_the_token_goes_to_the_peer_only_with_the_operators_leave() {
        let path = std::env::temp_dir().join(format!("whpg-ha-token-{}", std::process::id()));
        std::fs::write(&path, "0123456789abcdef0123456789abcdef\n").unwrap();
        let token = super::super::Token::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        // The peer 10.77.0.12 is not an address of this host: refused before connecting.
        let refused = ask_peer_checkpoint(&config(), &token, false)
            .await
            .unwrap_err();
        let text = refused.to_string();
        assert!(
            matches!(refused, CheckpointRefusal::Unreachable { .. })
                && text.contains("refusing to send the token in clear to 10.77.0.12:")
                && text.contains("--insecure-token-over-http")
                && text.contains("Nothing was changed"),
            "{text}"
        );
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
        let why = peer_or_local_caller(&c, "10.77.0.99".parse().unwrap(), "checkpoint requests")
            .unwrap_err();
        assert!(
            why.starts_with("checkpoint requests are accepted only from the peer 10.77.0.12"),
            "{why}"
        );
    }
}
