//! The daemon's HTTP API: read-only endpoints over the latest status snapshot.
//!
//! Handlers only read the snapshot published on a watch channel; they never reach into the VRRP
//! loop, so a slow client cannot delay an advert.

mod history;

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::daemon::status::NodeStatus;

/// Routes of the API.
pub fn router(status: watch::Receiver<NodeStatus>, journal: PathBuf) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/status", get(status_json))
        .with_state(status)
        .merge(history::routes(journal))
}

/// Bind every listen address first (so a bad address is reported before the daemon says it is
/// ready), then serve them in the background.
pub async fn start(
    listen: &[SocketAddr],
    status: watch::Receiver<NodeStatus>,
    journal: PathBuf,
) -> anyhow::Result<()> {
    let mut listeners = Vec::with_capacity(listen.len());
    for address in listen {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {address} (api.listen): {e}"))?;
        listeners.push(listener);
    }
    for listener in listeners {
        let app = router(status.clone(), journal.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("HTTP API stopped: {e}");
            }
        });
    }
    Ok(())
}

async fn health() -> &'static str {
    "ok\n"
}

async fn status_json(
    State(status): State<watch::Receiver<NodeStatus>>,
) -> (StatusCode, Json<NodeStatus>) {
    (StatusCode::OK, Json(status.borrow().clone()))
}
