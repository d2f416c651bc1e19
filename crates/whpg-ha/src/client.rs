//! The CLI's HTTP/1.1 client for the daemons' APIs: one request per connection, blocking, and
//! bounded in time from connect to the last byte — a node that hangs costs at most `timeout`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

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

/// Send `request` to `address` and read the whole response, all within `timeout`.
pub fn send(
    address: SocketAddr,
    request: &Request,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let deadline = Instant::now() + timeout;
    let remaining = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(ClientError::TimedOut(timeout))
    };
    let mut stream =
        TcpStream::connect_timeout(&address, remaining()?).map_err(|e| timed(e, timeout))?;
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
    stream.set_write_timeout(Some(remaining()?))?;
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .map_err(|e| timed(e, timeout))?;

    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        stream.set_read_timeout(Some(remaining()?))?;
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
            Err(e) => return Err(timed(e, timeout)),
        }
    }
    parse(&raw)
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
