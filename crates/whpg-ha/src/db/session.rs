//! The held monitoring session: one logged-in connection per watched database, kept open, asked
//! once per probe interval either the state row ([`super::query::STATE_SQL`]: recovery, timeline,
//! WAL receiver) or, where only the role matters, the cheaper role row ([`super::query::ROLE_SQL`]);
//! both are prepared once.
//!
//! A new connection makes the server fork a backend and initialise it; a query on a held session
//! costs a fraction of that. So in steady state the monitor asks its questions here, and opens new
//! connections only at a low rate (the startup-packet probe, to see that the server still takes
//! them and to notice a smart shutdown) and when this session breaks.
//!
//! The socket is our own (tokio-postgres logs in over it with `connect_raw`), so that:
//! - `TCP_USER_TIMEOUT` is the probe timeout: a query sent to a host that died is abandoned by
//!   the kernel as soon as the caller's own deadline passes, and TCP keepalive probes an idle
//!   session every second;
//! - a failure to make the socket (descriptors, memory) is seen as ours
//!   ([`QueryError::Socket`], [`QueryError::local_errno`]), not as the server's.
//!
//! The session ends on its own when the server ends it (`57P01 admin_shutdown` on a fast stop,
//! a crash, a reset); [`HeldSession::ended`] resolves then, so the caller can look again at once.
//! Dropping it says goodbye (Terminate) and gives the connection a moment to close cleanly.

use std::io;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::{TcpSocket, TcpStream, UnixStream};
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};
use tokio_postgres::{Client, NoTls, Statement};

use super::query::{
    parse_role_row, parse_state_row, promote_answer, walsender_pid_of_role_row, ConnParams,
    DbFacts, QueryError, Role, StandbyIdentity, PROMOTE_SQL, ROLE_BY_PID_SQL, ROLE_SQL, STATE_SQL,
};
use super::startup_probe::resolve;
use crate::config::DbEndpoint;

/// How long a dropped session's connection may take to say goodbye before it is cut.
const GOODBYE: Duration = Duration::from_secs(1);
/// TCP keepalive of an idle held socket: first probe after, then every, this long.
const KEEPALIVE: Duration = Duration::from_secs(1);
const KEEPALIVE_RETRIES: u32 = 3;
/// The standby's walsender, once found by its address or name, is read by its pid; every this
/// many rounds the identity match runs again all the same (a pid is reused only after the
/// walsender ended, which sends the next round to the match anyway: this bounds the rest).
const WALSENDER_RECHECK_ROUNDS: u32 = 20;

/// An open monitoring session (see the module documentation).
pub struct HeldSession {
    target: String,
    client: Client,
    statement: Statement,
    role_statement: Statement,
    /// [`ROLE_BY_PID_SQL`], prepared on first use.
    role_by_pid_statement: Option<Statement>,
    /// The pid of the standby's streaming walsender as the last role row found it.
    walsender_pid: Option<i32>,
    /// Role rounds read by pid since the identity match last ran.
    rounds_by_pid: u32,
    /// The connection task; `None` once it has ended (and was awaited).
    connection: Option<JoinHandle<Option<tokio_postgres::Error>>>,
    /// Why the connection ended, when it did with an error.
    end_error: Option<tokio_postgres::Error>,
}

impl std::fmt::Debug for HeldSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldSession")
            .field("target", &self.target)
            .field("open", &self.is_open())
            .finish()
    }
}

/// A TCP socket with the held session's options, connected to `host:port`.
async fn connect_tcp(host: &str, port: u16, user_timeout: Duration) -> io::Result<TcpStream> {
    let addr = resolve(host, port).await?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_keepalive(true)?;
    {
        let sock = SockRef::from(&socket);
        sock.set_tcp_user_timeout(Some(user_timeout))?;
        sock.set_tcp_keepalive(
            &TcpKeepalive::new()
                .with_time(KEEPALIVE)
                .with_interval(KEEPALIVE)
                .with_retries(KEEPALIVE_RETRIES),
        )?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl HeldSession {
    /// Connects, logs in and prepares the state statement, all within `timeout` (which is also
    /// the socket's `TCP_USER_TIMEOUT`).
    pub async fn open(params: &ConnParams, timeout: Duration) -> Result<HeldSession, QueryError> {
        let target = params.to_string();
        let deadline = Instant::now() + timeout;
        let config = params.config()?;
        let timed_out = || QueryError::TimedOut {
            target: target.clone(),
            timeout,
        };
        let socket_error = |source| QueryError::Socket {
            target: target.clone(),
            source,
        };
        let connect_error = |source| QueryError::Connect {
            target: target.clone(),
            source,
        };
        let login = async {
            match &params.endpoint {
                DbEndpoint::Host(host) => {
                    let stream = connect_tcp(host, params.port, timeout)
                        .await
                        .map_err(socket_error)?;
                    let (client, connection) = config
                        .connect_raw(stream, NoTls)
                        .await
                        .map_err(connect_error)?;
                    Ok::<_, QueryError>((client, tokio::spawn(async { connection.await.err() })))
                }
                DbEndpoint::SocketDir(dir) => {
                    let path = dir.join(format!(".s.PGSQL.{}", params.port));
                    let stream = UnixStream::connect(&path).await.map_err(socket_error)?;
                    let (client, connection) = config
                        .connect_raw(stream, NoTls)
                        .await
                        .map_err(connect_error)?;
                    Ok((client, tokio::spawn(async { connection.await.err() })))
                }
            }
        };
        let (client, connection) = timeout_at(deadline, login)
            .await
            .map_err(|_| timed_out())??;
        // From here on the connection task runs; aborting it on failure closes the socket.
        let prepare = async {
            let state = client.prepare(STATE_SQL).await?;
            let role = client.prepare(ROLE_SQL).await?;
            Ok::<_, tokio_postgres::Error>((state, role))
        };
        let (statement, role_statement) = match timeout_at(deadline, prepare).await {
            Ok(Ok(statements)) => statements,
            Ok(Err(source)) => {
                connection.abort();
                return Err(QueryError::Query { target, source });
            }
            Err(_) => {
                connection.abort();
                return Err(timed_out());
            }
        };
        Ok(HeldSession {
            target,
            client,
            statement,
            role_statement,
            role_by_pid_statement: None,
            walsender_pid: None,
            rounds_by_pid: 0,
            connection: Some(connection),
            end_error: None,
        })
    }

    /// One observation on the session (one round trip), within `timeout`. After an error the
    /// session should be dropped: its state is unknown.
    pub async fn observe(&mut self, timeout: Duration) -> Result<DbFacts, QueryError> {
        let deadline = Instant::now() + timeout;
        let row = self
            .within(
                deadline,
                timeout,
                self.client.query_one(&self.statement, &[]),
            )
            .await?;
        parse_state_row(&row).map_err(|reason| QueryError::Unexpected {
            target: self.target.clone(),
            reason,
        })
    }

    /// Asks the server to leave recovery (`pg_promote(wait => false)`, what `pg_ctl promote`
    /// does) on this session, within `timeout`: the standby's own monitoring session carries the
    /// signal, so no login is needed at the moment it matters most. A refusal (no right to run
    /// `pg_promote`, not in recovery) leaves the session usable.
    pub async fn signal_promotion(&mut self, timeout: Duration) -> Result<(), QueryError> {
        let deadline = Instant::now() + timeout;
        let row = self
            .within(deadline, timeout, self.client.query_one(PROMOTE_SQL, &[]))
            .await?;
        promote_answer(&self.target, row.try_get::<_, bool>(0).ok())
    }

    /// The role only ([`ROLE_SQL`]), with a primary's position and the walsender row of
    /// `standby`: cheaper, for when the WAL receiver does not matter. Once the standby's
    /// streaming walsender is known, it is read by its pid ([`ROLE_BY_PID_SQL`]) and the
    /// identity match runs only when that finds nothing, or every
    /// [`WALSENDER_RECHECK_ROUNDS`] rounds; both within the one `timeout`.
    pub async fn role(
        &mut self,
        timeout: Duration,
        standby: &StandbyIdentity,
    ) -> Result<Role, QueryError> {
        let deadline = Instant::now() + timeout;
        let by_pid = match self.walsender_pid {
            Some(pid) if self.rounds_by_pid < WALSENDER_RECHECK_ROUNDS => Some(pid),
            _ => None,
        };
        if let Some(pid) = by_pid {
            let statement = match &self.role_by_pid_statement {
                Some(statement) => statement.clone(),
                None => {
                    let statement = self
                        .within(deadline, timeout, self.client.prepare(ROLE_BY_PID_SQL))
                        .await?;
                    self.role_by_pid_statement = Some(statement.clone());
                    statement
                }
            };
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&pid];
            let row = self
                .within(
                    deadline,
                    timeout,
                    self.client.query_one(&statement, &params),
                )
                .await?;
            let (role, found) = self.parse_role(&row)?;
            // A standby now, or the walsender still streams: that is the answer.
            if found.is_some() || !matches!(role, Role::Primary { .. }) {
                self.rounds_by_pid += 1;
                return Ok(role);
            }
        }
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
            [&standby.address, &standby.application_name];
        let row = self
            .within(
                deadline,
                timeout,
                self.client.query_one(&self.role_statement, &params),
            )
            .await?;
        let (role, found) = self.parse_role(&row)?;
        self.rounds_by_pid = 0;
        self.walsender_pid = match role {
            // Only a streaming walsender is worth reading by pid.
            Role::Primary {
                standby: Some(row), ..
            } if row.streaming => found,
            _ => None,
        };
        Ok(role)
    }

    /// `request` within `deadline` (`timeout` from the round's start), as this session's error.
    async fn within<T>(
        &self,
        deadline: Instant,
        timeout: Duration,
        request: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, QueryError> {
        match timeout_at(deadline, request).await {
            Err(_) => Err(QueryError::TimedOut {
                target: self.target.clone(),
                timeout,
            }),
            Ok(Err(source)) => Err(QueryError::Query {
                target: self.target.clone(),
                source,
            }),
            Ok(Ok(value)) => Ok(value),
        }
    }

    /// A role row and the walsender pid it lists.
    fn parse_role(&self, row: &tokio_postgres::Row) -> Result<(Role, Option<i32>), QueryError> {
        let unexpected = |reason| QueryError::Unexpected {
            target: self.target.clone(),
            reason,
        };
        let role = parse_role_row(row).map_err(unexpected)?;
        let pid = walsender_pid_of_role_row(row).map_err(unexpected)?;
        Ok((role, pid))
    }

    /// Whether the connection still runs.
    pub fn is_open(&self) -> bool {
        self.connection.as_ref().is_some_and(|c| !c.is_finished()) && !self.client.is_closed()
    }

    /// Resolves when the connection ends (the server closed it, or it broke). Cancel-safe.
    pub async fn ended(&mut self) {
        match &mut self.connection {
            Some(handle) => {
                let result = handle.await;
                self.connection = None;
                self.end_error = result.ok().flatten();
            }
            None => std::future::pending().await,
        }
    }

    /// Why the connection ended, once [`HeldSession::ended`] has resolved.
    pub fn end_error(&self) -> Option<&tokio_postgres::Error> {
        self.end_error.as_ref()
    }

    /// The errno of a failure of our own that ended the connection, if that is what ended it.
    pub fn ended_for_local_reason(&self) -> Option<i32> {
        self.end_error
            .as_ref()
            .and_then(|e| super::local_failure::local_errno_in(e))
    }
}

impl Drop for HeldSession {
    fn drop(&mut self) {
        // The client goes with this struct, which makes the connection send Terminate and end;
        // it gets a moment for that, then is cut.
        if let Some(handle) = self.connection.take() {
            let abort = handle.abort_handle();
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(async move {
                        if tokio::time::timeout(GOODBYE, handle).await.is_err() {
                            abort.abort();
                        }
                    });
                }
                Err(_) => abort.abort(),
            }
        }
    }
}
