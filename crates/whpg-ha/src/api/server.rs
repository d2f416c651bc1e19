//! The API's HTTP server: an accept loop per listen address that a careless or hostile client
//! cannot use to take the daemon's file descriptors, memory or time.
//!
//! - At most `api.max_connections` connections are served at once on each listen address (so a
//!   flood on the node's address leaves the loopback API served); one more is accepted and
//!   closed at once, so the excess costs one descriptor for a moment and never waits in the
//!   daemon.
//! - A client has `api.header_timeout` for the TLS handshake and for each request's header
//!   (hyper's header-read timer, which also runs while a kept-alive connection waits for its next
//!   request), so a connection that sends nothing, half a header or a byte now and then is closed.
//! - A connection on which no byte moves for `api.idle_timeout` while no request is being
//!   answered (a client that stopped reading its response) is closed.
//! - A failing `accept` (EMFILE, ENFILE, ENOBUFS, ENOMEM) is logged at most once per
//!   [`LOG_EVERY`] with the count since the last line, and the loop backs off (up to
//!   [`MAX_BACKOFF`]) instead of spinning on a listen socket that stays readable.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Shortest pause after a failed accept.
pub const MIN_BACKOFF: Duration = Duration::from_millis(10);
/// Longest pause after failed accepts in a row.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// At most one log line per kind of trouble in this time.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// The request head buffer (hyper's minimum is 8 KiB): a longer header is refused.
const MAX_HEAD: usize = 16 * 1024;

/// What bounds each connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Limits {
    pub fn of(api: &crate::config::Api) -> Limits {
        Limits {
            max_connections: api.max_connections as usize,
            header_timeout: api.header_timeout,
            idle_timeout: api.idle_timeout,
        }
    }
}

/// One log line per [`LOG_EVERY`] at most; the line says how many were left out.
#[derive(Debug, Default)]
pub struct LogLimiter {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    /// `Some(n)` when a line may be written now (`n` occurrences were left out since the last
    /// one), `None` when this one is to be counted only.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < LOG_EVERY => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// The pause after `failures` failed accepts in a row (1 for the first): doubling from
/// [`MIN_BACKOFF`] up to [`MAX_BACKOFF`].
pub fn backoff(failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(16);
    MIN_BACKOFF.saturating_mul(1 << shift).min(MAX_BACKOFF)
}

/// Whether a failed accept is the process or the machine running out of something (the listen
/// socket stays readable, so an immediate retry would spin) rather than one client's
/// connection failing before it was accepted.
pub fn is_resource_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Serve `app` on `listener` until the process ends, at most `permits` connections at once.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    permits: Arc<Semaphore>,
    limits: Limits,
) {
    let address = listener
        .local_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let mut accept_log = LogLimiter::default();
    let mut full_log = LogLimiter::default();
    let mut failures = 0u32;
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => {
                failures = 0;
                accepted
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let pause = if is_resource_error(&e) {
                    backoff(failures)
                } else if failures > 3 {
                    // Not one client's connection failing (ECONNABORTED and the like) but
                    // something that repeats: never spin on it either.
                    backoff(failures - 3)
                } else {
                    Duration::ZERO
                };
                if let Some(left_out) = accept_log.allow(Instant::now()) {
                    tracing::warn!(
                        "API on {address}: accept failed: {e} ({left_out} more such failures \
                         not logged since the last line); pausing {pause:?} before the next \
                         accept (raise LimitNOFILE or lower api.max_connections if this repeats)"
                    );
                }
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if let Some(left_out) = full_log.allow(Instant::now()) {
                tracing::warn!(
                    "API on {address}: closed a connection from {remote}: {} connections are \
                     open (api.max_connections; {left_out} more closed since the last line)",
                    limits.max_connections
                );
            }
            drop(stream);
            continue;
        };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            connection(stream, remote, app, tls, limits).await;
            drop(permit);
        });
    }
}

/// When bytes last moved on a connection, and how many requests it has being answered.
#[derive(Debug)]
struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }
}

/// Counts a request as being answered while it lives.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A TCP stream that notes every byte read or written.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = Tracked {
        inner: stream,
        activity: activity.clone(),
    };
    match tls {
        None => http(io, remote, app, activity, limits).await,
        Some(acceptor) => {
            match tokio::time::timeout(limits.header_timeout, acceptor.accept(io)).await {
                Ok(Ok(stream)) => http(stream, remote, app, activity, limits).await,
                Ok(Err(e)) => tracing::debug!("API: TLS handshake with {remote} failed: {e}"),
                Err(_) => tracing::debug!(
                    "API: no TLS handshake from {remote} within {:?} (api.header_timeout)",
                    limits.header_timeout
                ),
            }
        }
    }
}

async fn http<I>(io: I, remote: SocketAddr, app: Router, activity: Arc<Activity>, limits: Limits)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(remote));
        let answering = InFlight::new(&requests);
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await;
            drop(answering);
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut check = limits.idle_timeout;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!("API: connection from {remote}: {e}");
                }
                return;
            }
            () = tokio::time::sleep(check) => {
                let idle = activity.idle_for();
                if activity.in_flight.load(Ordering::Relaxed) > 0 {
                    check = limits.idle_timeout;
                } else if idle >= limits.idle_timeout {
                    tracing::debug!(
                        "API: closed the connection from {remote}: no byte moved for {idle:?} \
                         (api.idle_timeout)"
                    );
                    return;
                } else {
                    check = limits.idle_timeout.saturating_sub(idle);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const BIG: usize = 8 * 1024 * 1024;

    /// A server on loopback with `limits`: `/health` and an 8 MiB `/big`.
    async fn server(limits: Limits) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/health", get(|| async { "ok\n" }))
            .route("/big", get(|| async { vec![b'x'; BIG] }));
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        tokio::spawn(serve(listener, app, None, permits, limits));
        address
    }

    fn limits(max_connections: usize) -> Limits {
        Limits {
            max_connections,
            header_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(300),
        }
    }

    /// Everything the server sends until it closes, and whether it closed within `limit`.
    async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
        let mut all = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (all, true),
                Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
                Err(_) => return (all, false),
            }
        }
    }

    #[tokio::test]
    async fn a_connection_that_sends_no_header_is_closed_after_the_header_timeout() {
        let address = server(limits(8)).await;
        let mut idle = TcpStream::connect(address).await.unwrap();
        let mut half = TcpStream::connect(address).await.unwrap();
        half.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        for stream in [&mut idle, &mut half] {
            let (_, closed) = read_until_closed(stream, Duration::from_secs(3)).await;
            assert!(closed, "still open after {:?}", started.elapsed());
        }
        assert!(started.elapsed() >= Duration::from_millis(250));
        // A whole request is still answered.
        let mut good = TcpStream::connect(address).await.unwrap();
        good.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let (answer, _) = read_until_closed(&mut good, Duration::from_secs(3)).await;
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    }

    #[tokio::test]
    async fn a_connection_over_the_cap_is_closed_at_once() {
        let address = server(limits(2)).await;
        let _a = TcpStream::connect(address).await.unwrap();
        let _b = TcpStream::connect(address).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut c = TcpStream::connect(address).await.unwrap();
        let started = Instant::now();
        let (_, closed) = read_until_closed(&mut c, Duration::from_millis(200)).await;
        assert!(closed && started.elapsed() < Duration::from_millis(200));
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_closed_after_the_idle_timeout() {
        let address = server(limits(8)).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        // Read nothing while the server's writes back up, well past the idle timeout.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let (got, closed) = read_until_closed(&mut stream, Duration::from_secs(3)).await;
        assert!(closed, "the connection stayed open");
        assert!(
            got.len() < BIG,
            "the whole {BIG}-byte body arrived ({} bytes): the connection was not cut",
            got.len()
        );
    }

    #[test]
    fn a_burst_of_failures_is_logged_once_per_interval_with_the_count() {
        let mut limiter = LogLimiter::default();
        let t0 = Instant::now();
        assert_eq!(limiter.allow(t0), Some(0));
        for i in 1..=999 {
            assert_eq!(limiter.allow(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(limiter.allow(t0 + LOG_EVERY), Some(999));
        assert_eq!(limiter.allow(t0 + LOG_EVERY + Duration::from_secs(1)), None);
        assert_eq!(limiter.allow(t0 + LOG_EVERY * 3), Some(1));
    }

    #[test]
    fn failed_accepts_back_off_doubling_to_a_bound() {
        let pauses: Vec<Duration> = (1..=10).map(backoff).collect();
        assert_eq!(pauses[0], MIN_BACKOFF);
        assert_eq!(pauses[1], MIN_BACKOFF * 2);
        assert_eq!(pauses[2], MIN_BACKOFF * 4);
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
        assert_eq!(pauses[9], MAX_BACKOFF);
    }

    #[test]
    fn running_out_of_descriptors_is_a_resource_error_and_a_reset_is_not() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(is_resource_error(&io::Error::from_raw_os_error(errno)));
        }
        for errno in [libc::ECONNABORTED, libc::EPROTO, libc::EINTR] {
            assert!(!is_resource_error(&io::Error::from_raw_os_error(errno)));
        }
    }
}
