//! The CLI's HTTP/1.1 client for the daemons' APIs: one request per connection, blocking, and
//! bounded in time from connect to the last byte — a node that hangs costs at most `timeout`.
//!
//! With `[api] tls_*` every request goes over TLS, the daemon's certificate verified against
//! `api.tls_ca_file` for the address asked. Without TLS a bearer token is sent only to an address
//! of this host (loopback or one of its own); to any other address the request is refused
//! before connecting, unless the operator passed `--insecure-token-over-http`.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

/// The largest response accepted (a `/status` is a few kilobytes).
const MAX_RESPONSE: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
    #[error(
        "refusing to send the token in clear to {0}: set [api] tls_cert_file, tls_key_file and \
         tls_ca_file on both nodes, or pass --insecure-token-over-http to accept the risk"
    )]
    ClearToken(SocketAddr),
    #[error("TLS with {0}: {1}")]
    Tls(SocketAddr, String),
}

/// How requests reach the daemons.
#[derive(Clone, Default)]
pub struct Settings {
    /// TLS to every daemon (from `[api] tls_*`); `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Send a bearer token over plain HTTP to an address of another host.
    pub allow_clear_token: bool,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("tls", &self.tls.is_some())
            .field("allow_clear_token", &self.allow_clear_token)
            .finish()
    }
}

static TLS: RwLock<Option<Arc<rustls::ClientConfig>>> = RwLock::new(None);
static ALLOW_CLEAR_TOKEN: AtomicBool = AtomicBool::new(false);

/// The process's TLS settings from `[api]` (the CLI calls this once it has read the file).
pub fn use_api_config(api: &crate::config::Api) -> Result<(), String> {
    let tls = match &api.tls {
        Some(files) => Some(crate::api::tls::client_config(files).map_err(|e| format!("{e:#}"))?),
        None => None,
    };
    *TLS.write().unwrap_or_else(|e| e.into_inner()) = tls;
    Ok(())
}

/// `--insecure-token-over-http`: the operator accepts sending the token in clear.
pub fn allow_clear_token(allow: bool) {
    ALLOW_CLEAR_TOKEN.store(allow, Ordering::Relaxed);
}

/// The settings [`send`] uses.
pub fn settings() -> Settings {
    Settings {
        tls: TLS.read().unwrap_or_else(|e| e.into_inner()).clone(),
        allow_clear_token: ALLOW_CLEAR_TOKEN.load(Ordering::Relaxed),
    }
}

/// Whether `ip` belongs to this host: loopback, or an address a socket can be bound to here.
pub fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Whether `request` would carry a token in clear to another host without the operator's leave.
fn clear_token_refused(settings: &Settings, address: SocketAddr, request: &Request) -> bool {
    request.bearer.is_some()
        && settings.tls.is_none()
        && !settings.allow_clear_token
        && !is_local(address.ip())
}

/// One connection, plain or TLS.
enum Connection {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Connection {
    fn tcp(&self) -> &TcpStream {
        match self {
            Connection::Plain(s) => s,
            Connection::Tls(s) => &s.sock,
        }
    }
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Connection::Plain(s) => s.read(buf),
            Connection::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Connection::Plain(s) => s.write(buf),
            Connection::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Connection::Plain(s) => s.flush(),
            Connection::Tls(s) => s.flush(),
        }
    }
}

/// A request to one daemon.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// `Authorization: Bearer <token>` when set.
    pub bearer: Option<&'a str>,
    /// A JSON body.
    pub json: Option<&'a str>,
}

impl<'a> Request<'a> {
    pub fn get(path: &'a str) -> Request<'a> {
        Request {
            method: "GET",
            path,
            bearer: None,
            json: None,
        }
    }

    pub fn post_json(path: &'a str, json: &'a str, bearer: Option<&'a str>) -> Request<'a> {
        Request {
            method: "POST",
            path,
            bearer,
            json: Some(json),
        }
    }
}

/// Send `request` to `address` with the process's [`settings`] and read the whole response,
/// all within `timeout`.
pub fn send(
    address: SocketAddr,
    request: &Request,
    timeout: Duration,
) -> Result<Response, ClientError> {
    send_with(&settings(), address, request, timeout)
}

/// Send `request` to `address` with `settings` and read the whole response, all within
/// `timeout`.
pub fn send_with(
    settings: &Settings,
    address: SocketAddr,
    request: &Request,
    timeout: Duration,
) -> Result<Response, ClientError> {
    if clear_token_refused(settings, address, request) {
        return Err(ClientError::ClearToken(address));
    }
    let deadline = Instant::now() + timeout;
    let remaining = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(ClientError::TimedOut(timeout))
    };
    let tcp = TcpStream::connect_timeout(&address, remaining()?).map_err(|e| timed(e, timeout))?;
    let mut stream = match &settings.tls {
        None => Connection::Plain(tcp),
        Some(config) => {
            let name = ServerName::IpAddress(address.ip().into());
            let tls = rustls::ClientConnection::new(config.clone(), name)
                .map_err(|e| ClientError::Tls(address, e.to_string()))?;
            Connection::Tls(Box::new(rustls::StreamOwned::new(tls, tcp)))
        }
    };
    let io = |e: std::io::Error| io_error(e, address, timeout);
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nUser-Agent: whpg-ha/{}\r\n",
        request.method,
        request.path,
        env!("CARGO_PKG_VERSION")
    );
    if let Some(token) = request.bearer {
        head += &format!("Authorization: Bearer {token}\r\n");
    }
    let body = request.json.unwrap_or("");
    if request.json.is_some() {
        head += "Content-Type: application/json\r\n";
    }
    head += &format!("Content-Length: {}\r\n\r\n", body.len());
    stream.tcp().set_write_timeout(Some(remaining()?))?;
    stream.tcp().set_read_timeout(Some(remaining()?))?;
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .and_then(|()| stream.flush())
        .map_err(io)?;

    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        stream.tcp().set_read_timeout(Some(remaining()?))?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&chunk[..n]);
                if raw.len() > MAX_RESPONSE {
                    return Err(ClientError::Malformed("response too large".into()));
                }
                if complete(&raw) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A TLS peer that closed without close_notify after a whole response.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => break,
            Err(e) => return Err(io(e)),
        }
    }
    parse(&raw)
}

/// A TLS failure (a certificate not trusted, a handshake refused) as such; timeouts as such.
fn io_error(e: std::io::Error, address: SocketAddr, timeout: Duration) -> ClientError {
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return ClientError::Tls(address, tls.to_string());
    }
    timed(e, timeout)
}

fn timed(e: std::io::Error, timeout: Duration) -> ClientError {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            ClientError::TimedOut(timeout)
        }
        _ => ClientError::Io(e),
    }
}

/// Where the head ends, and the declared body length if any.
fn split_head(raw: &[u8]) -> Option<(usize, Option<usize>, bool)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut length = None;
    let mut chunked = false;
    for line in head.lines().skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.eq_ignore_ascii_case("chunked")
        {
            chunked = true;
        }
    }
    Some((end, length, chunked))
}

/// A response with a known length is complete without waiting for the server to close.
fn complete(raw: &[u8]) -> bool {
    matches!(split_head(raw), Some((end, Some(length), false)) if raw.len() >= end + length)
}

fn parse(raw: &[u8]) -> Result<Response, ClientError> {
    let (end, length, chunked) =
        split_head(raw).ok_or_else(|| ClientError::Malformed("no end of the header".into()))?;
    let status_line = String::from_utf8_lossy(&raw[..end]);
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            ClientError::Malformed(format!("bad status line {:?}", status_line.lines().next()))
        })?;
    let rest = &raw[end..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(length) = length {
        rest.get(..length)
            .ok_or_else(|| ClientError::Malformed("body shorter than Content-Length".into()))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, ClientError> {
    let bad = || ClientError::Malformed("bad chunked body".into());
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad())?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(rest.get(..size).ok_or_else(bad)?);
        rest = rest.get(size + 2..).ok_or_else(bad)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(reply: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(reply);
            // Keep the connection open: a Content-Length response must not need the close.
            std::thread::sleep(Duration::from_secs(2));
        });
        address
    }

    #[test]
    fn reads_a_content_length_response_without_waiting_for_the_close() {
        let address = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
        let started = Instant::now();
        let response = send(address, &Request::get("/health"), Duration::from_secs(1)).unwrap();
        assert_eq!(
            response,
            Response {
                status: 200,
                body: "ok\n".into()
            }
        );
        assert!(started.elapsed() < Duration::from_millis(900));
    }

    #[test]
    fn decodes_a_chunked_body() {
        let raw = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nnot\r\n4\r\n ok\n\r\n0\r\n\r\n";
        assert_eq!(
            parse(raw).unwrap(),
            Response {
                status: 503,
                body: "not ok\n".into()
            }
        );
    }

    #[test]
    fn a_token_is_not_sent_in_clear_to_another_host_unless_allowed() {
        let settings = Settings::default();
        let request = Request::post_json("/maintenance", "{}", Some("secret"));
        // TEST-NET-3: never an address of this host; refused before any packet is sent.
        let remote: SocketAddr = "203.0.113.12:8008".parse().unwrap();
        let error = send_with(&settings, remote, &request, Duration::from_millis(100)).unwrap_err();
        assert!(
            matches!(error, ClientError::ClearToken(a) if a == remote),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(
            text.contains("refusing to send the token in clear to 203.0.113.12:8008")
                && text.contains("--insecure-token-over-http"),
            "{text}"
        );
        // Loopback is this host: the request goes out (and finds a server here).
        let local = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
        let response = send_with(&settings, local, &request, Duration::from_secs(1)).unwrap();
        assert_eq!(response.status, 200);
        // Without a token nothing is secret; the operator may accept the risk. (Decided without
        // connecting: no packet leaves this host in a unit test.)
        assert!(clear_token_refused(&settings, remote, &request));
        assert!(!clear_token_refused(
            &settings,
            remote,
            &Request::get("/status")
        ));
        let allowed = Settings {
            allow_clear_token: true,
            ..Settings::default()
        };
        assert!(!clear_token_refused(&allowed, remote, &request));
    }

    #[test]
    fn loopback_and_own_addresses_are_local_and_others_are_not() {
        assert!(is_local("127.0.0.1".parse().unwrap()));
        assert!(is_local("127.0.0.2".parse().unwrap()));
        assert!(!is_local("203.0.113.12".parse().unwrap()));
    }

    #[test]
    fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let started = Instant::now();
        let result = send(
            address,
            &Request::get("/status"),
            Duration::from_millis(200),
        );
        assert!(
            matches!(result, Err(ClientError::TimedOut(_))),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        drop(listener);
    }
}
