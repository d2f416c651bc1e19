//! `POST /promote {"accept_data_loss": true}`: the operator chooses availability over data and
//! promotes a standby that is not known to hold every acknowledged commit.
//!
//! Only the replication guard is lifted, and for this one promotion: the daemon still refuses
//! beside a live primary, outside the VRRP mastership, in maintenance, or on a fenced database.
//! The answer says whether the promotion started and what the standby was missing as far as it
//! is known; the promotion itself (command, verified write, VIP) goes on in the daemon.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::control::{authorized_body, ApiCommand, LOOP_TIMEOUT};
use super::ApiState;
use crate::status::ReplicationView;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    pub accept_data_loss: bool,
}

/// The answer (also of its errors: `error` set, `promoting` false).
#[derive(Debug, Serialize, Deserialize)]
pub struct PromoteReply {
    pub node: String,
    pub promoting: bool,
    /// What this standby had against its primary when the request came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn reply(state: &ApiState, code: StatusCode, error: Option<String>) -> Response {
    let status = state.status.borrow();
    let body = PromoteReply {
        node: status.node.clone(),
        promoting: error.is_none(),
        replication: status.database.as_ref().and_then(|d| d.replication.clone()),
        error,
    };
    (code, Json(body)).into_response()
}

pub async fn promote(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    let bad = |state: &ApiState, code: StatusCode, text: String| reply(state, code, Some(text));
    let request: PromoteRequest = match authorized_body(
        &state,
        &headers,
        &body,
        r#"{"accept_data_loss": true}"#,
        bad,
    ) {
        Ok(request) => request,
        Err(response) => return *response,
    };
    if !request.accept_data_loss {
        return reply(
            &state,
            StatusCode::BAD_REQUEST,
            Some(
                "accept_data_loss must be true: a standby that holds every acknowledged commit \
                 is promoted by the daemon itself, and a planned move is `whpg-ha switchover`"
                    .into(),
            ),
        );
    }
    let _running = match state.operations.begin("promote accepting data loss") {
        Ok(guard) => guard,
        Err(busy) => return reply(&state, StatusCode::CONFLICT, Some(busy)),
    };
    let (tx, answer) = oneshot::channel();
    let command = ApiCommand::PromoteAcceptingDataLoss { reply: tx };
    let unanswered = || "the daemon loop is not answering".to_string();
    let sent = tokio::time::timeout(LOOP_TIMEOUT, state.commands.send(command)).await;
    if !matches!(sent, Ok(Ok(()))) {
        return reply(&state, StatusCode::SERVICE_UNAVAILABLE, Some(unanswered()));
    }
    match tokio::time::timeout(LOOP_TIMEOUT, answer).await {
        Ok(Ok(Ok(()))) => reply(&state, StatusCode::OK, None),
        Ok(Ok(Err(refused))) => reply(&state, StatusCode::CONFLICT, Some(refused.to_string())),
        _ => reply(&state, StatusCode::SERVICE_UNAVAILABLE, Some(unanswered())),
    }
}
