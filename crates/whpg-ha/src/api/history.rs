//! `GET /history?limit=N`: the newest journal entries (oldest first), as a JSON array.
//!
//! The handler reads the journal files on a blocking thread, so it never touches the VRRP loop.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::journal;

/// Entries returned without `limit`.
const DEFAULT_LIMIT: usize = 100;
/// The most entries one request returns (`limit=0` asks for this many).
const MAX_LIMIT: usize = 10_000;

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    limit: Option<usize>,
}

/// The `/history` route over the journal directory `journal`.
pub fn routes(journal: PathBuf) -> Router {
    Router::new()
        .route("/history", get(history))
        .with_state(Arc::new(journal))
}

async fn history(State(dir): State<Arc<PathBuf>>, Query(query): Query<HistoryQuery>) -> Response {
    let limit = match query.limit.unwrap_or(DEFAULT_LIMIT) {
        0 => MAX_LIMIT,
        n => n.min(MAX_LIMIT),
    };
    let read = tokio::task::spawn_blocking(move || journal::read(&dir, limit)).await;
    match read {
        Ok(Ok(entries)) => (StatusCode::OK, Json(entries)).into_response(),
        Ok(Err(e)) => error(e.to_string()),
        Err(e) => error(format!("reading the journal: {e}")),
    }
}

fn error(message: String) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}
