//! `GET /history?limit=N&before=CURSOR`: journal entries (oldest first), as a JSON array.
//!
//! Without `before`, the newest `limit` entries (default 100, at most 10 000; `limit=0` asks for the
//! most). Paging backwards: every answer that has older entries behind it carries the header
//! `x-history-next` with a cursor; `before=` that cursor returns the `limit` entries just older
//! than the oldest one of this answer. Without the header, the answer reached the oldest entry kept.
//! A cursor the journal has rotated past is answered 410, a malformed one 400.
//!
//! The handler reads the journal on a blocking thread, so it never touches the VRRP loop, and
//! reads backwards only as far as the page needs, never every file.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::journal::{self, Cursor, JournalError};

/// Entries returned without `limit`.
const DEFAULT_LIMIT: usize = 100;
/// The most entries one request returns (`limit=0` asks for this many).
const MAX_LIMIT: usize = 10_000;
/// The response header holding the cursor of the next (older) page.
pub const NEXT_HEADER: &str = "x-history-next";

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    limit: Option<usize>,
    before: Option<String>,
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
    let before = match query
        .before
        .as_deref()
        .map(str::parse::<Cursor>)
        .transpose()
    {
        Ok(before) => before,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let read = tokio::task::spawn_blocking(move || journal::read_page(&dir, limit, before)).await;
    match read {
        Ok(Ok(page)) => {
            let mut response = (StatusCode::OK, Json(page.entries)).into_response();
            if let Some(next) = page.next {
                if let Ok(value) = next.to_string().parse() {
                    response.headers_mut().insert(NEXT_HEADER, value);
                }
            }
            response
        }
        Ok(Err(e @ JournalError::StaleCursor { .. })) => error(StatusCode::GONE, e.to_string()),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading the journal: {e}"),
        ),
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Entry, Journal, Kind};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One GET over a real socket: (status, the `x-history-next` header, body).
    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, Option<String>, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut raw = String::new();
        stream.read_to_string(&mut raw).await.expect("read");
        let (head, body) = raw.split_once("\r\n\r\n").expect("a response");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let next = head.lines().find_map(|l| {
            l.strip_prefix(&format!("{NEXT_HEADER}: "))
                .map(str::to_string)
        });
        (status, next, body.to_string())
    }

    fn seqs(body: &str) -> Vec<u64> {
        let entries: Vec<serde_json::Value> = serde_json::from_str(body).expect("a JSON array");
        entries
            .iter()
            .map(|e| e["seq"].as_u64().expect("seq"))
            .collect()
    }

    #[tokio::test]
    async fn history_pages_backwards_with_the_next_header() {
        let dir = std::env::temp_dir().join(format!("whpg-history-api-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut journal = Journal::open(&dir, 600, 10).expect("open");
        for seq in 0..12u64 {
            let mut entry = Entry::new("n1", Kind::Decision, format!("d{seq}")).with("seq", seq);
            entry.at_unix_ms = 1_700_000_000_000 + seq;
            journal.append(&entry).expect("append");
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = routes(dir.clone());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        // The default answer is unchanged: a JSON array, oldest first.
        let (status, _, body) = get(addr, "/history").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(seqs(&body), (0..12).collect::<Vec<_>>());

        let (status, next, body) = get(addr, "/history?limit=5").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(seqs(&body), [7, 8, 9, 10, 11]);
        let next = next.expect("older entries: a cursor");
        let (_, next, body) = get(addr, &format!("/history?limit=5&before={next}")).await;
        assert_eq!(seqs(&body), [2, 3, 4, 5, 6]);
        let (_, next, body) = get(
            addr,
            &format!("/history?limit=5&before={}", next.expect("more")),
        )
        .await;
        assert_eq!(seqs(&body), [0, 1]);
        assert_eq!(next, None, "the oldest entry was reached");

        let (status, _, body) = get(addr, "/history?before=nonsense").await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("not one"), "{body}");
        let (status, _, body) = get(addr, "/history?before=1-0-5").await;
        assert_eq!(status, 410, "{body}");

        server.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
