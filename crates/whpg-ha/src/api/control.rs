//! Mutating endpoints: each checks the bearer token, then asks the daemon loop through a
//! command channel and waits (bounded) for its answer. The loop stays the only owner of the
//! policy; the API never changes state itself.
//!
//! Every mutating route sits behind [`authorize`]: the token is checked from the header alone,
//! before a byte of the body is read, and only then is a body of at most [`MAX_BODY`] bytes read
//! (within `api.header_timeout`). One mutating operation runs at a time ([`Operations`]); a
//! second one is refused with what runs and since when.
//!
//! Maintenance mode lives in memory only: a restarted daemon starts with it off.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::ApiState;
use crate::node::Refusal;

/// How long a mutating request waits for the daemon loop.
pub(super) const LOOP_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest body of a mutating request (the largest real one is under 100 bytes).
pub const MAX_BODY: usize = 4 * 1024;

/// The one mutating operation this daemon is carrying out, if any.
#[derive(Debug, Clone, Default)]
pub struct Operations(Arc<Mutex<Option<Running>>>);

#[derive(Debug)]
struct Running {
    what: String,
    since: SystemTime,
    started: Instant,
}

/// Holds the daemon's one operation slot until dropped.
#[derive(Debug)]
pub struct OperationGuard(Operations);

impl Operations {
    /// Take the slot for `what`, or say what holds it and since when.
    pub fn begin(&self, what: &str) -> Result<OperationGuard, String> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(running) = slot.as_ref() {
            return Err(format!(
                "{} is running on this daemon since {} ({:.1} s ago); one change runs at a time: \
                 wait for it to finish and retry",
                running.what,
                humantime::format_rfc3339_seconds(running.since),
                running.started.elapsed().as_secs_f64()
            ));
        }
        *slot = Some(Running {
            what: what.to_string(),
            since: SystemTime::now(),
            started: Instant::now(),
        });
        Ok(OperationGuard(self.clone()))
    }
}

impl Drop for OperationGuard {
    fn drop(&mut self) {
        *self.0 .0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Middleware of every mutating route: the token from the header first (401/403 without reading
/// the body), then a body of at most [`MAX_BODY`] bytes (413 beyond, 408 when it does not arrive
/// within `api.header_timeout`), handed on already read.
pub async fn authorize(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    if let Some(response) = refusal(&state, request.headers()) {
        return response;
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large(&state);
    }
    let (parts, body) = request.into_parts();
    let limit = state.config.api.header_timeout;
    let body = match tokio::time::timeout(limit, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => return too_large(&state),
        Err(_) => {
            return error(
                &state,
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {:?} (api.header_timeout)",
                    limit
                ),
            )
        }
    };
    next.run(Request::from_parts(parts, Body::from(body))).await
}

fn too_large(state: &ApiState) -> Response {
    error(
        state,
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("a request body may have at most {MAX_BODY} bytes"),
    )
}

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
    /// Promote although the standby may miss acknowledged commits (the operator's choice).
    PromoteAcceptingDataLoss {
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

pub(super) fn error(state: &ApiState, code: StatusCode, text: impl Into<String>) -> Response {
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

/// The JSON body of a mutating request (already read by [`authorize`]), once the token is
/// checked again, or the response refusing it:
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
    let what = format!("maintenance {}", if request.on { "on" } else { "off" });
    let _running = match state.operations.begin(&what) {
        Ok(guard) => guard,
        Err(busy) => return error(&state, StatusCode::CONFLICT, busy),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_operation_is_refused_with_what_runs_until_the_first_ends() {
        let operations = Operations::default();
        let first = operations.begin("switchover demote").expect("free");
        let busy = operations.begin("maintenance on").unwrap_err();
        assert!(
            busy.starts_with("switchover demote is running on this daemon since ")
                && busy.contains(" s ago)")
                && busy.contains("wait for it to finish"),
            "{busy}"
        );
        drop(first);
        operations.begin("maintenance on").expect("free again");
    }
}
