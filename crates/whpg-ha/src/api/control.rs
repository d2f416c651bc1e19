//! Mutating endpoints: each checks the bearer token, then asks the daemon loop through a
//! command channel and waits (bounded) for its answer. The loop stays the only owner of the
//! policy; the API never changes state itself.
//!
//! Maintenance mode lives in memory only: a restarted daemon starts with it off.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::ApiState;
use crate::node::Refusal;

/// How long a mutating request waits for the daemon loop.
const LOOP_TIMEOUT: Duration = Duration::from_secs(2);

/// A request from the API to the daemon loop; the loop answers on `reply`.
#[derive(Debug)]
pub enum ApiCommand {
    /// Turn maintenance mode on or off; the answer is the mode now in force.
    Maintenance {
        on: bool,
        reply: oneshot::Sender<Result<bool, Refusal>>,
    },
    /// Planned switchover, old primary: leave the election and remove the VIP.
    Demote {
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// Planned switchover, new primary: promote now (the policy may refuse, with its reason).
    PlannedPromotion {
        /// The old primary's shutdown checkpoint and what this standby received (LSNs).
        shutdown_checkpoint: u64,
        received: u64,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// Journal one action done by an API task (switchover and rejoin steps).
    Record {
        detail: String,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceRequest {
    pub on: bool,
}

/// The answer of `POST /maintenance` (and of its errors: `maintenance` absent, `error` set).
#[derive(Debug, Serialize, Deserialize)]
pub struct MaintenanceReply {
    pub node: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn error(state: &ApiState, code: StatusCode, text: impl Into<String>) -> Response {
    let reply = MaintenanceReply {
        node: state.status.borrow().node.clone(),
        maintenance: None,
        error: Some(text.into()),
    };
    (code, Json(reply)).into_response()
}

/// The refusal of a request without the configured bearer token (`None`: authorized).
pub(super) fn refusal(state: &ApiState, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = &state.token else {
        return Some(error(
            state,
            StatusCode::FORBIDDEN,
            "no api.token_file configured: mutating endpoints are disabled",
        ));
    };
    let presented = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if token.accepts_header(presented) {
        None
    } else {
        let mut response = error(
            state,
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (Authorization: Bearer <contents of api.token_file>)",
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static"));
        Some(response)
    }
}

/// The JSON body of a mutating request, once the token is checked, or the response refusing it:
/// [`refusal`]'s 401 or 403, or a 400 built by `bad_request` saying what was `expected`.
pub(super) fn authorized_body<T: DeserializeOwned>(
    state: &ApiState,
    headers: &HeaderMap,
    body: &[u8],
    expected: &str,
    bad_request: impl FnOnce(&ApiState, StatusCode, String) -> Response,
) -> Result<T, Box<Response>> {
    if let Some(response) = refusal(state, headers) {
        return Err(Box::new(response));
    }
    serde_json::from_slice(body).map_err(|e| {
        Box::new(bad_request(
            state,
            StatusCode::BAD_REQUEST,
            format!("expected {expected}: {e}"),
        ))
    })
}

pub async fn maintenance(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: MaintenanceRequest =
        match authorized_body(&state, &headers, &body, r#"{"on": true|false}"#, error) {
            Ok(request) => request,
            Err(response) => return *response,
        };
    let (reply, answer) = oneshot::channel();
    let command = ApiCommand::Maintenance {
        on: request.on,
        reply,
    };
    let sent = tokio::time::timeout(LOOP_TIMEOUT, state.commands.send(command)).await;
    if !matches!(sent, Ok(Ok(()))) {
        return error(
            &state,
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon loop is not answering",
        );
    }
    match tokio::time::timeout(LOOP_TIMEOUT, answer).await {
        Ok(Ok(Ok(on))) => {
            let reply = MaintenanceReply {
                node: state.status.borrow().node.clone(),
                maintenance: Some(on),
                error: None,
            };
            (StatusCode::OK, Json(reply)).into_response()
        }
        Ok(Ok(Err(refused))) => error(&state, StatusCode::CONFLICT, refused.to_string()),
        _ => error(
            &state,
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon loop is not answering",
        ),
    }
}
