//! The credential-free liveness and role probe: send a StartupMessage, read the server's first
//! answer, classify it ([`ProbeOutcome`]), hang up. This is what `pg_isready` does, done natively
//! so the daemon can run it every ~100 ms without forking.
//!
//! The answer tells a primary or hot standby (an authentication request) from a WarehousePG
//! standby replaying WAL (SQLSTATE 57M02, with its replay position) from a server that is
//! starting, stopping or recovering (57P03) from one that is down (refused, timed out). Only
//! SQLSTATEs are matched, never message texts, which are translated. The probe decides nothing:
//! it reports, and the policy core decides.
//!
//! Every probe is bounded by one deadline covering name resolution, connect, write and read.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::{timeout_at, Instant};

use super::lsn::Lsn;
use super::wire::{self, tag, ErrorFields, SqlState, WireError};
use crate::config::{Database, DbEndpoint};

/// The `application_name` the probe announces, so its connections are recognisable in the
/// server's logs and `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "whpg-ha";

/// Where and as whom to probe. The login only matters when the server lets us in (trust): then
/// the probe finishes the login to see it succeed, and a wrong user or database shows up as
/// [`ProbeOutcome::Rejected`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    pub endpoint: DbEndpoint,
    pub port: u16,
    pub user: String,
    pub database: String,
}

impl ProbeTarget {
    /// A target with user and database `postgres`.
    pub fn new(endpoint: DbEndpoint, port: u16) -> ProbeTarget {
        ProbeTarget {
            endpoint,
            port,
            user: "postgres".into(),
            database: "postgres".into(),
        }
    }

    /// TCP to `addr:port`.
    pub fn tcp(addr: IpAddr, port: u16) -> ProbeTarget {
        ProbeTarget::new(DbEndpoint::Host(addr.to_string()), port)
    }

    /// Unix socket `<dir>/.s.PGSQL.<port>`.
    pub fn unix(dir: impl Into<PathBuf>, port: u16) -> ProbeTarget {
        ProbeTarget::new(DbEndpoint::SocketDir(dir.into()), port)
    }

    /// The local database as configured (`[database]` endpoint, port, user, dbname).
    pub fn local(db: &Database) -> ProbeTarget {
        ProbeTarget {
            endpoint: db.endpoint.clone(),
            port: db.port,
            user: db.user.clone(),
            database: db.dbname.clone(),
        }
    }

    /// The peer's database: its node address, the configured port and login.
    pub fn peer(db: &Database, addr: IpAddr) -> ProbeTarget {
        ProbeTarget {
            endpoint: DbEndpoint::Host(addr.to_string()),
            ..ProbeTarget::local(db)
        }
    }

    /// Replaces the login sent in the StartupMessage.
    pub fn with_login(mut self, user: &str, database: &str) -> ProbeTarget {
        self.user = user.into();
        self.database = database.into();
        self
    }

    /// The socket file for a Unix-socket target.
    pub fn socket_path(&self) -> Option<PathBuf> {
        match &self.endpoint {
            DbEndpoint::SocketDir(dir) => Some(dir.join(format!(".s.PGSQL.{}", self.port))),
            DbEndpoint::Host(_) => None,
        }
    }
}

impl fmt::Display for ProbeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.endpoint {
            DbEndpoint::Host(host) if host.contains(':') => write!(f, "[{host}]:{}", self.port),
            DbEndpoint::Host(host) => write!(f, "{host}:{}", self.port),
            DbEndpoint::SocketDir(dir) => {
                write!(f, "{}/.s.PGSQL.{}", dir.display(), self.port)
            }
        }
    }
}

/// What the server's first answer says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// It asked us to authenticate or let us in: it accepts connections (a primary, or a hot
    /// standby; ask `pg_is_in_recovery()` on a real connection to know which).
    Accepting,
    /// SQLSTATE 57M02: a WarehousePG standby (or mirror) that is up and replaying WAL, with the
    /// last replayed position from the error detail when it could be read. It stays like this
    /// after its primary dies, so it says nothing about the primary.
    StandbyReady { replay_lsn: Option<Lsn> },
    /// SQLSTATE 57P03: starting up, shutting down, in crash recovery, or a standby that takes no
    /// connections (PostgreSQL with `hot_standby = off`, a WarehousePG standby whose WAL receiver
    /// never started).
    NotAccepting,
    /// Any other error: the server is alive but refused this login (no `pg_hba.conf` entry, no
    /// such user or database, too many connections, ...).
    Rejected { sqlstate: SqlState },
    /// Nothing listens there (TCP reset, or no socket file).
    Refused,
    /// No answer before the deadline: host down, black-holed, or a server stuck.
    TimedOut,
    /// Any other failure: a network error, or an answer that is not the PostgreSQL protocol
    /// (`InvalidData`), or a close without an answer (`UnexpectedEof`).
    Failed(io::ErrorKind),
    /// The probe could not be made for a reason of our own: this process or machine is out of
    /// descriptors or memory (`errno` is one of [`super::local_failure::LOCAL_ERRNOS`]). It says
    /// nothing about the server: unknown, neither down nor alive.
    LocalFailure { errno: i32 },
}

impl ProbeOutcome {
    /// Whether a server process answered at all (everything but refused / timed out / failed).
    pub fn server_answered(&self) -> bool {
        matches!(
            self,
            ProbeOutcome::Accepting
                | ProbeOutcome::StandbyReady { .. }
                | ProbeOutcome::NotAccepting
                | ProbeOutcome::Rejected { .. }
        )
    }

    /// A short stable name for logs and the status API.
    pub fn as_str(&self) -> &'static str {
        match self {
            ProbeOutcome::Accepting => "accepting",
            ProbeOutcome::StandbyReady { .. } => "standby-ready",
            ProbeOutcome::NotAccepting => "not-accepting",
            ProbeOutcome::Rejected { .. } => "rejected",
            ProbeOutcome::Refused => "refused",
            ProbeOutcome::TimedOut => "timed-out",
            ProbeOutcome::Failed(_) => "failed",
            ProbeOutcome::LocalFailure { .. } => "local-failure",
        }
    }
}

impl fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeOutcome::StandbyReady {
                replay_lsn: Some(lsn),
            } => write!(f, "standby-ready (replayed up to {lsn})"),
            ProbeOutcome::Rejected { sqlstate } => write!(f, "rejected (SQLSTATE {sqlstate})"),
            ProbeOutcome::Failed(kind) => write!(f, "failed ({kind})"),
            ProbeOutcome::LocalFailure { errno } => {
                write!(f, "not probed: {}", super::local_failure::describe(*errno))
            }
            other => f.write_str(other.as_str()),
        }
    }
}

/// Classifies an ErrorResponse: by SQLSTATE only; the detail is read for a WAL position only.
pub fn classify_error(fields: &ErrorFields) -> ProbeOutcome {
    match fields.sqlstate() {
        Some(SqlState::MIRROR_READY) => ProbeOutcome::StandbyReady {
            replay_lsn: fields.detail.as_deref().and_then(Lsn::find_in),
        },
        Some(SqlState::CANNOT_CONNECT_NOW) => ProbeOutcome::NotAccepting,
        Some(sqlstate) => ProbeOutcome::Rejected { sqlstate },
        None => ProbeOutcome::Failed(io::ErrorKind::InvalidData),
    }
}

/// How many messages before the first authentication request or error we tolerate (notices,
/// a protocol version negotiation).
const MAX_PRELUDE_MESSAGES: usize = 8;
/// How many messages after AuthenticationOk we read while waiting for ReadyForQuery.
const MAX_SESSION_START_MESSAGES: usize = 64;

/// Probes `target` and classifies its first answer, all within `timeout`.
pub async fn probe(target: &ProbeTarget, timeout: Duration) -> ProbeOutcome {
    let deadline = Instant::now() + timeout;
    let startup = match wire::startup_message(&[
        ("user", &target.user),
        ("database", &target.database),
        ("application_name", APPLICATION_NAME),
    ]) {
        Ok(msg) => msg,
        Err(_) => return ProbeOutcome::Failed(io::ErrorKind::InvalidInput),
    };
    match &target.endpoint {
        DbEndpoint::SocketDir(_) => {
            let path = target.socket_path().unwrap_or_default();
            match timeout_at(deadline, UnixStream::connect(&path)).await {
                Err(_) => ProbeOutcome::TimedOut,
                // No socket file: nothing listens there (a clean stop removes it).
                Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => ProbeOutcome::Refused,
                Ok(Err(e)) => connect_error(&e),
                Ok(Ok(stream)) => converse(stream, &startup, deadline).await,
            }
        }
        DbEndpoint::Host(host) => {
            let addr = match timeout_at(deadline, resolve(host, target.port)).await {
                Err(_) => return ProbeOutcome::TimedOut,
                Ok(Err(e)) => return io_failure(&e),
                Ok(Ok(addr)) => addr,
            };
            match timeout_at(deadline, TcpStream::connect(addr)).await {
                Err(_) => ProbeOutcome::TimedOut,
                Ok(Err(e)) => connect_error(&e),
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    converse(stream, &startup, deadline).await
                }
            }
        }
    }
}

/// An address literal as is; a name through the resolver (first address).
pub(crate) async fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "name has no address"))
}

fn connect_error(e: &io::Error) -> ProbeOutcome {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ProbeOutcome::Refused,
        _ => io_failure(e),
    }
}

/// A failure of the exchange: ours (descriptors, memory) or the network's / the server's.
pub fn io_failure(e: &io::Error) -> ProbeOutcome {
    match super::local_failure::local_errno(e) {
        Some(errno) => ProbeOutcome::LocalFailure { errno },
        None => ProbeOutcome::Failed(e.kind()),
    }
}

/// Reads backend messages into `buf` and returns the next one as (tag, body).
async fn next_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> io::Result<(u8, Vec<u8>)> {
    loop {
        match wire::split_frame(buf) {
            Ok(Some((frame, used))) => {
                let message = (frame.tag, frame.body.to_vec());
                buf.drain(..used);
                return Ok(message);
            }
            Ok(None) => {}
            Err(e) => return Err(invalid(e)),
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn invalid(e: WireError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// The exchange on a connected stream: send the startup packet, classify the answer.
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    startup: &[u8],
    deadline: Instant,
) -> ProbeOutcome {
    let mut buf = Vec::new();
    let first = timeout_at(deadline, async {
        stream.write_all(startup).await?;
        for _ in 0..MAX_PRELUDE_MESSAGES {
            let (tag, body) = next_message(&mut stream, &mut buf).await?;
            match tag {
                tag::AUTHENTICATION => {
                    return wire::auth_request_code(&body)
                        .map(|code| Answer::Auth {
                            ok: code == wire::AUTH_OK,
                        })
                        .map_err(invalid)
                }
                tag::ERROR_RESPONSE => {
                    return ErrorFields::parse(&body)
                        .map(Answer::Error)
                        .map_err(invalid)
                }
                tag::NOTICE_RESPONSE | tag::NEGOTIATE_PROTOCOL_VERSION => continue,
                _ => break,
            }
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected first answer to a startup packet",
        ))
    })
    .await;
    match first {
        Err(_) => ProbeOutcome::TimedOut,
        Ok(Err(e)) => io_failure(&e),
        Ok(Ok(Answer::Error(fields))) => classify_error(&fields),
        // A password or SASL exchange follows; we have our answer. Hanging up now ends the
        // backend quietly (EOF during authentication is not logged as a failure).
        Ok(Ok(Answer::Auth { ok: false })) => ProbeOutcome::Accepting,
        Ok(Ok(Answer::Auth { ok: true })) => finish_login(&mut stream, &mut buf, deadline).await,
    }
}

enum Answer {
    Auth { ok: bool },
    Error(ErrorFields),
}

/// After AuthenticationOk (trust), reads on until ReadyForQuery (then says Terminate, so the
/// backend ends without complaint) or an error (no such database or user, connection limit).
/// Running out of time here still means the server let us in: [`ProbeOutcome::Accepting`].
async fn finish_login<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> ProbeOutcome {
    let rest = timeout_at(deadline, async {
        for _ in 0..MAX_SESSION_START_MESSAGES {
            let (tag, body) = next_message(stream, buf).await?;
            match tag {
                tag::READY_FOR_QUERY => {
                    stream.write_all(&wire::TERMINATE).await?;
                    let _ = stream.flush().await;
                    return Ok::<_, io::Error>(ProbeOutcome::Accepting);
                }
                tag::ERROR_RESPONSE => {
                    let fields = ErrorFields::parse(&body).map_err(invalid)?;
                    return Ok(classify_error(&fields));
                }
                _ => continue,
            }
        }
        Ok(ProbeOutcome::Accepting)
    })
    .await;
    match rest {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) | Err(_) => ProbeOutcome::Accepting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    fn error_body(code: &str, detail: Option<&str>) -> Vec<u8> {
        let mut body = Vec::new();
        for (kind, value) in [
            (b'S', Some("FATAL")),
            (b'V', Some("FATAL")),
            (b'C', Some(code)),
            (b'M', Some("some translated text")),
            (b'D', detail),
        ] {
            if let Some(value) = value {
                body.push(kind);
                body.extend_from_slice(value.as_bytes());
                body.push(0);
            }
        }
        body.push(0);
        body
    }

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut msg = vec![tag];
        msg.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        msg.extend_from_slice(body);
        msg
    }

    fn fields(code: &str, detail: Option<&str>) -> ErrorFields {
        ErrorFields::parse(&error_body(code, detail)).unwrap()
    }

    #[test]
    fn mirror_ready_carries_the_replay_position() {
        assert_eq!(
            classify_error(&fields("57M02", Some("last replayed record at 0/3000148"))),
            ProbeOutcome::StandbyReady {
                replay_lsn: Some(Lsn(0x300_0148))
            }
        );
        assert_eq!(
            classify_error(&fields("57M02", Some("letzter Datensatz bei 2A/FF"))),
            ProbeOutcome::StandbyReady {
                replay_lsn: Some(Lsn(0x2A_0000_00FF))
            }
        );
        assert_eq!(
            classify_error(&fields("57M02", None)),
            ProbeOutcome::StandbyReady { replay_lsn: None }
        );
    }

    #[test]
    fn other_sqlstates() {
        assert_eq!(
            classify_error(&fields("57P03", Some("Hot standby mode is disabled."))),
            ProbeOutcome::NotAccepting
        );
        assert_eq!(
            classify_error(&fields("28000", None)),
            ProbeOutcome::Rejected {
                sqlstate: SqlState::parse("28000").unwrap()
            }
        );
        let mut no_code = fields("x", None);
        no_code.code = None;
        assert_eq!(
            classify_error(&no_code),
            ProbeOutcome::Failed(io::ErrorKind::InvalidData)
        );
    }

    /// Plays a server on the other end of an in-memory pipe: checks the startup packet, sends
    /// `reply`, then reports what the client sent afterwards.
    async fn exchange(reply: Vec<u8>, timeout: Duration) -> (ProbeOutcome, Vec<u8>) {
        let (client, mut server) = duplex(64 * 1024);
        let startup = default_startup();
        let startup_len = startup.len();
        let server_side = tokio::spawn(async move {
            let mut got = vec![0u8; startup_len];
            server.read_exact(&mut got).await.unwrap();
            assert_eq!(got, startup);
            server.write_all(&reply).await.unwrap();
            let mut after = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_millis(200), server.read_to_end(&mut after))
                    .await;
            after
        });
        let outcome = converse(client, &default_startup(), Instant::now() + timeout).await;
        (outcome, server_side.await.unwrap())
    }

    /// The startup packet [`probe`] sends for [`ProbeTarget::new`].
    fn default_startup() -> Vec<u8> {
        wire::startup_message(&[
            ("user", "postgres"),
            ("database", "postgres"),
            ("application_name", APPLICATION_NAME),
        ])
        .unwrap()
    }

    #[tokio::test]
    async fn password_request_means_accepting_and_we_hang_up_silently() {
        let (outcome, after) =
            exchange(message(b'R', &[0, 0, 0, 10]), Duration::from_secs(2)).await;
        assert_eq!(outcome, ProbeOutcome::Accepting);
        assert!(after.is_empty(), "sent {after:?} after a password request");
    }

    #[tokio::test]
    async fn trust_login_reads_to_ready_for_query_then_terminates() {
        let mut reply = message(b'R', &[0, 0, 0, 0]);
        reply.extend(message(b'S', b"server_version\x0015.8\0"));
        reply.extend(message(b'K', &[0, 0, 0, 1, 0, 0, 0, 2]));
        reply.extend(message(b'Z', b"I"));
        let (outcome, after) = exchange(reply, Duration::from_secs(2)).await;
        assert_eq!(outcome, ProbeOutcome::Accepting);
        assert_eq!(after, wire::TERMINATE);
    }

    #[tokio::test]
    async fn trust_login_then_missing_database_is_rejected() {
        let mut reply = message(b'R', &[0, 0, 0, 0]);
        reply.extend(message(b'E', &error_body("3D000", None)));
        let (outcome, _) = exchange(reply, Duration::from_secs(2)).await;
        assert_eq!(
            outcome,
            ProbeOutcome::Rejected {
                sqlstate: SqlState::parse("3D000").unwrap()
            }
        );
    }

    #[tokio::test]
    async fn trust_login_without_ready_for_query_still_counts_as_accepting() {
        let reply = message(b'R', &[0, 0, 0, 0]);
        let (outcome, _) = exchange(reply, Duration::from_millis(100)).await;
        assert_eq!(outcome, ProbeOutcome::Accepting);
    }

    #[tokio::test]
    async fn mirror_ready_error_after_a_notice() {
        let mut reply = message(b'N', &error_body("01000", None));
        reply.extend(message(
            b'E',
            &error_body("57M02", Some("last replayed record at 1/A0")),
        ));
        let (outcome, _) = exchange(reply, Duration::from_secs(2)).await;
        assert_eq!(
            outcome,
            ProbeOutcome::StandbyReady {
                replay_lsn: Some(Lsn(0x1_0000_00A0))
            }
        );
    }

    #[tokio::test]
    async fn garbage_silence_and_eof() {
        let (outcome, _) = exchange(
            b"HTTP/1.1 400 Bad Request\r\n".to_vec(),
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(outcome, ProbeOutcome::Failed(io::ErrorKind::InvalidData));
        let (outcome, _) = exchange(vec![b'E', 0x7f, 0, 0, 0], Duration::from_secs(2)).await;
        assert_eq!(outcome, ProbeOutcome::Failed(io::ErrorKind::InvalidData));
        let (outcome, _) = exchange(message(b'E', b"C57P03"), Duration::from_secs(2)).await;
        assert_eq!(outcome, ProbeOutcome::Failed(io::ErrorKind::InvalidData));
        let (outcome, _) = exchange(Vec::new(), Duration::from_millis(100)).await;
        assert_eq!(outcome, ProbeOutcome::TimedOut);
    }

    #[tokio::test]
    async fn closed_without_answer_is_unexpected_eof() {
        let (client, server) = duplex(1024);
        drop(server);
        let outcome = converse(
            client,
            &default_startup(),
            Instant::now() + Duration::from_secs(1),
        )
        .await;
        // Writing to a closed pipe fails first; either way it is a failure, not a timeout.
        assert!(matches!(outcome, ProbeOutcome::Failed(_)), "{outcome:?}");
    }

    #[test]
    fn exhaustion_is_a_local_failure_and_network_errors_are_not() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOMEM, libc::ENOBUFS] {
            let e = io::Error::from_raw_os_error(errno);
            assert_eq!(connect_error(&e), ProbeOutcome::LocalFailure { errno });
            assert_eq!(io_failure(&e), ProbeOutcome::LocalFailure { errno });
            assert!(!ProbeOutcome::LocalFailure { errno }.server_answered());
        }
        assert_eq!(
            connect_error(&io::Error::from_raw_os_error(libc::ECONNREFUSED)),
            ProbeOutcome::Refused
        );
        assert_eq!(
            connect_error(&io::Error::from_raw_os_error(libc::EHOSTUNREACH)),
            ProbeOutcome::Failed(io::ErrorKind::HostUnreachable)
        );
        assert_eq!(
            io_failure(&io::Error::from_raw_os_error(libc::ECONNRESET)),
            ProbeOutcome::Failed(io::ErrorKind::ConnectionReset)
        );
        assert_eq!(
            ProbeOutcome::LocalFailure {
                errno: libc::EMFILE
            }
            .as_str(),
            "local-failure"
        );
    }

    #[tokio::test]
    async fn missing_socket_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("whpg-ha-probe-{}", std::process::id()));
        let target = ProbeTarget::unix(&dir, 1);
        assert_eq!(
            probe(&target, Duration::from_secs(1)).await,
            ProbeOutcome::Refused
        );
    }

    #[test]
    fn targets_display_and_derive_from_the_config() {
        assert_eq!(
            ProbeTarget::tcp("10.0.0.1".parse().unwrap(), 5432).to_string(),
            "10.0.0.1:5432"
        );
        assert_eq!(
            ProbeTarget::tcp("::1".parse().unwrap(), 5432).to_string(),
            "[::1]:5432"
        );
        let unix = ProbeTarget::unix("/run/pg", 6000);
        assert_eq!(unix.to_string(), "/run/pg/.s.PGSQL.6000");
        assert_eq!(
            unix.socket_path(),
            Some(PathBuf::from("/run/pg/.s.PGSQL.6000"))
        );
    }
}
