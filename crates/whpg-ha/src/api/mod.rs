//! The daemon's HTTP API: read-only endpoints over the latest status snapshot, role checks for
//! load balancers, Prometheus metrics, and token-guarded commands to the daemon loop.
//!
//! Read handlers only read the snapshot published on a watch channel; they never reach into the
//! VRRP loop, so a slow client cannot delay an advert. Commands go to the loop over a bounded
//! channel and wait (bounded) for its answer.
//!
//! | route | answer |
//! |---|---|
//! | `GET /health` | 200 while the daemon runs |
//! | `GET /status` | the [`NodeStatus`] snapshot as JSON |
//! | `GET /primary` | 200 on the node that holds the VIP with a healthy writable database, else 503 |
//! | `GET /standby` | 200 on a healthy standby whose WAL receiver streams, else 503 |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /history` | the newest journal entries |
//! | `GET /check` | this daemon's self-test for `whpg-ha check` ([`crate::selftest`]): config digest, commands, witnesses, journal |
//! | `POST /check/token` | 200 when the bearer token is accepted; changes nothing |
//! | `POST /maintenance` | `{"on": bool}`, bearer token required |
//! | `POST /promote` | `{"accept_data_loss": true}`: promote a standby that may miss acknowledged commits ([`promote`]) |
//! | `POST /switchover/demote`, `/switchover/promote`, `/rejoin` | planned switchover and rejoin steps ([`switchover`]) |
//! | `GET /switchover/checkpoint` | the shutdown checkpoint of this node's cleanly stopped database, for the promoting peer (bearer token, peer or this node only) |
//!
//! The server ([`server`]) bounds connections, header and idle time; mutating routes check the
//! token before reading a body of a few KiB at most ([`control::authorize`]); with `api.tls_*`
//! every listen address speaks TLS only ([`tls`]).

pub mod auth;
pub mod checks;
pub mod control;
mod history;
pub mod promote;
pub mod server;
pub mod switchover;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRef, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};

pub use auth::Token;
pub use control::{ApiCommand, Operations};

use crate::status::NodeStatus;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub status: watch::Receiver<NodeStatus>,
    /// To the daemon loop.
    pub commands: mpsc::Sender<ApiCommand>,
    /// `None` without `api.token_file`: mutating endpoints answer 403.
    pub token: Option<Token>,
    pub metrics: Arc<Registry>,
    /// The daemon's configuration (switchover and rejoin steps run its commands).
    pub config: Arc<crate::config::Config>,
    /// The one mutating operation running, if any.
    pub operations: Operations,
}

impl FromRef<ApiState> for watch::Receiver<NodeStatus> {
    fn from_ref(state: &ApiState) -> Self {
        state.status.clone()
    }
}

/// Routes of the API.
pub fn router(state: ApiState, journal: PathBuf) -> Router {
    // The token is checked before any body is read; only then is a small body read.
    let mutating = Router::new()
        .route("/maintenance", post(control::maintenance))
        .route("/promote", post(promote::promote))
        .route("/switchover/demote", post(switchover::demote))
        .route("/switchover/promote", post(switchover::promote))
        .route("/switchover/checkpoint", get(switchover::checkpoint))
        .route("/rejoin", post(switchover::rejoin))
        .route("/rejoin/local", post(switchover::rejoin_local))
        .route("/check/token", post(check_token))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            control::authorize,
        ));
    Router::new()
        .route("/health", get(health))
        .route("/status", get(status_json))
        .route("/primary", get(primary))
        .route("/standby", get(standby))
        .route("/metrics", get(metrics))
        .route("/check", get(self_test))
        .merge(mutating)
        .with_state(state)
        .merge(history::routes(journal))
        .layer(DefaultBodyLimit::max(control::MAX_BODY))
}

/// Bind every listen address and load the TLS files first (so a bad address or file is
/// reported before the daemon says it is ready), then serve them in the background.
pub async fn start(
    api: &crate::config::Api,
    state: ApiState,
    journal: PathBuf,
) -> anyhow::Result<()> {
    let tls = match &api.tls {
        Some(files) => Some(tokio_rustls::TlsAcceptor::from(tls::server_config(files)?)),
        None => None,
    };
    let mut listeners = Vec::with_capacity(api.listen.len());
    for address in &api.listen {
        listeners.push(bind(*address)?);
    }
    let limits = server::Limits::of(api);
    let app = router(state, journal);
    for listener in listeners {
        // Each address has its own connections: a flood on the node's address leaves the
        // loopback API (the local CLI and checks) served.
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        tokio::spawn(server::serve(
            listener,
            app.clone(),
            tls.clone(),
            permits,
            limits,
        ));
    }
    Ok(())
}

/// A listening socket with `SO_REUSEADDR` (a restart finds the port free while old connections
/// linger in TIME_WAIT).
fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    let fail = |e: std::io::Error| anyhow::anyhow!("cannot listen on {address} (api.listen): {e}");
    let socket = match address {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .map_err(fail)?;
    socket.set_reuseaddr(true).map_err(fail)?;
    socket.bind(address).map_err(fail)?;
    socket.listen(1024).map_err(fail)
}

async fn health() -> &'static str {
    "ok\n"
}

async fn status_json(
    State(status): State<watch::Receiver<NodeStatus>>,
) -> (StatusCode, Json<NodeStatus>) {
    (StatusCode::OK, Json(status.borrow().clone()))
}

/// A role check as HAProxy wants it: 200 or 503, with the reason in the body.
fn role_check(result: Result<(), String>, role: &str) -> (StatusCode, String) {
    match result {
        Ok(()) => (StatusCode::OK, format!("{role}\n")),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not {role}: {why}\n"),
        ),
    }
}

async fn primary(State(status): State<watch::Receiver<NodeStatus>>) -> (StatusCode, String) {
    role_check(checks::primary(&status.borrow()), "primary")
}

async fn standby(State(status): State<watch::Receiver<NodeStatus>>) -> (StatusCode, String) {
    role_check(checks::standby(&status.borrow()), "standby")
}

async fn metrics(State(state): State<ApiState>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        crate::metrics::render(&state.metrics),
    )
        .into_response()
}

/// `GET /check`: one self-test at a time (a second request waits for the first), each bounded by
/// the slowest of its probes (`witness.timeout`, a few seconds for the `test` runs).
async fn self_test(State(state): State<ApiState>) -> Json<crate::selftest::SelfTest> {
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = ONE_AT_A_TIME.lock().await;
    Json(crate::selftest::run(&state.config).await)
}

/// `POST /check/token`: reached only through [`control::authorize`], so a 200 proves the token is
/// accepted; nothing is changed.
async fn check_token(State(state): State<ApiState>) -> Json<serde_json::Value> {
    let node = state.status.borrow().node.clone();
    Json(serde_json::json!({ "node": node, "token": "accepted" }))
}
