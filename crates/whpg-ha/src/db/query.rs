//! Logged-in observations of a database, over a real connection (tokio-postgres): recovery state,
//! timeline, WAL receiver and replication state in one round trip ([`observe`]), and the SQL that
//! proves a database takes writes ([`write_check_sql`], run by [`super::write_probe`]). Each
//! call of [`observe`] opens its own short connection,
//! bounded by one timeout, and closes it; nothing is kept open between observations. (The
//! monitor's held session, [`super::session`], reuses the state row's SQL on a connection it
//! keeps.)
//!
//! The login comes from `[database]`; the password, when configured, is read from its file at
//! each connect and never logged. The user needs `pg_monitor` (or superuser) to see the WAL
//! receiver and replication columns.
//!
//! ## Which timeline
//! `pg_control_checkpoint().timeline_id` is the timeline of the last checkpoint: right after a
//! promotion it still shows the old timeline until the (spread, possibly minutes-long) checkpoint
//! the promotion requested completes. So, by state:
//! - not in recovery: the timeline of the WAL being written now, taken from the file name of the
//!   current insert position (`pg_walfile_name(pg_current_wal_lsn())`, whose first 8 hex digits
//!   are the timeline). Exact from the first moment the server accepts writes.
//! - in recovery with a running WAL receiver: `pg_stat_wal_receiver.received_tli`, the timeline
//!   of the WAL last received from the primary.
//! - in recovery without a receiver: the last checkpoint's (restartpoint's) timeline, which can
//!   lag. [`DbFacts::timeline_source`] says which one was used.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage, SimpleQueryRow};

use super::lsn::Lsn;
use super::startup_probe::APPLICATION_NAME;
use super::wire::SqlState;
use crate::config::{Database, DbEndpoint, Flavor};

/// Where and as whom to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnParams {
    pub endpoint: DbEndpoint,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    /// File holding the password (trailing newline ignored); read at each connect.
    pub password_file: Option<PathBuf>,
}

impl ConnParams {
    pub fn new(endpoint: DbEndpoint, port: u16, user: &str, dbname: &str) -> ConnParams {
        ConnParams {
            endpoint,
            port,
            user: user.into(),
            dbname: dbname.into(),
            password_file: None,
        }
    }

    /// The local database as configured.
    pub fn local(db: &Database) -> ConnParams {
        ConnParams {
            endpoint: db.endpoint.clone(),
            port: db.port,
            user: db.user.clone(),
            dbname: db.dbname.clone(),
            password_file: db.password_file.clone(),
        }
    }

    /// The peer's database: its node address with the configured port and login.
    pub fn peer(db: &Database, addr: IpAddr) -> ConnParams {
        ConnParams {
            endpoint: DbEndpoint::Host(addr.to_string()),
            ..ConnParams::local(db)
        }
    }

    /// The driver's configuration. No connect timeout of its own: the caller's deadline bounds
    /// the whole exchange and reports [`QueryError::TimedOut`].
    pub(crate) fn config(&self) -> Result<tokio_postgres::Config, QueryError> {
        let mut config = tokio_postgres::Config::new();
        match &self.endpoint {
            DbEndpoint::Host(host) => config.host(host),
            DbEndpoint::SocketDir(dir) => config.host_path(dir),
        };
        config
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name(APPLICATION_NAME);
        if let Some(path) = &self.password_file {
            let bytes = std::fs::read(path).map_err(|source| QueryError::PasswordFile {
                path: path.clone(),
                source,
            })?;
            config.password(strip_newline(&bytes));
        }
        Ok(config)
    }
}

impl fmt::Display for ConnParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.endpoint {
            DbEndpoint::Host(host) if host.contains(':') => write!(f, "[{host}]:{}", self.port)?,
            DbEndpoint::Host(host) => write!(f, "{host}:{}", self.port)?,
            DbEndpoint::SocketDir(dir) => write!(f, "{}/.s.PGSQL.{}", dir.display(), self.port)?,
        }
        write!(f, " ({}@{})", self.user, self.dbname)
    }
}

/// A password file's content without its final line ending.
fn strip_newline(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.strip_suffix(b"\r").unwrap_or(bytes)
}

/// Failures of [`observe`], the held session and the write probe. Messages name the target, never the password.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{target}: no answer within {timeout:?}")]
    TimedOut { target: String, timeout: Duration },
    #[error("reading the password file {path}: {source}")]
    PasswordFile { path: PathBuf, source: io::Error },
    #[error("connecting to {target}: {}", full_text(source))]
    Connect {
        target: String,
        source: tokio_postgres::Error,
    },
    #[error("{target}: {}", full_text(source))]
    Query {
        target: String,
        source: tokio_postgres::Error,
    },
    /// The write was refused as a write (SQLSTATE 25006): a standby, or a read-only default.
    #[error("{target} refused the write: it is read-only ({})", full_text(source))]
    ReadOnly {
        target: String,
        source: tokio_postgres::Error,
    },
    /// The server is still in recovery (a standby), so no write was tried.
    #[error("{target} is still in recovery (a standby)")]
    InRecovery { target: String },
    #[error("{target}: unexpected answer: {reason}")]
    Unexpected { target: String, reason: String },
    /// Our own socket could not be made or connected (the held session opens its own).
    #[error("connecting to {target}: {source}")]
    Socket { target: String, source: io::Error },
}

/// The driver's error with its causes ("db error: FATAL: ..."); its own text alone is only
/// "db error" or "error connecting to server".
pub(crate) fn full_text(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

impl QueryError {
    /// The errno when this failed for a reason of our own (descriptors, memory): then it says
    /// nothing about the database (see [`super::local_failure`]).
    pub fn local_errno(&self) -> Option<i32> {
        use super::local_failure::{local_errno, local_errno_in};
        match self {
            QueryError::PasswordFile { source, .. } | QueryError::Socket { source, .. } => {
                local_errno(source)
            }
            QueryError::Connect { source, .. }
            | QueryError::Query { source, .. }
            | QueryError::ReadOnly { source, .. } => local_errno_in(source),
            QueryError::TimedOut { .. }
            | QueryError::InRecovery { .. }
            | QueryError::Unexpected { .. } => None,
        }
    }

    /// The server's SQLSTATE, when the server reported an error.
    pub fn sqlstate(&self) -> Option<SqlState> {
        match self {
            QueryError::Connect { source, .. }
            | QueryError::Query { source, .. }
            | QueryError::ReadOnly { source, .. } => {
                source.code().and_then(|c| SqlState::parse(c.code()))
            }
            _ => None,
        }
    }
}

/// Where [`DbFacts::timeline`] came from (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimelineSource {
    /// The WAL being written now (not in recovery): exact.
    Insert,
    /// The WAL receiver's last received timeline (in recovery).
    WalReceiver,
    /// The last checkpoint or restartpoint: may lag behind.
    Checkpoint,
}

/// `pg_stat_wal_receiver.status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalReceiverStatus {
    Starting,
    Streaming,
    Waiting,
    Restarting,
    Stopping,
    Stopped,
    Other(String),
}

impl WalReceiverStatus {
    fn parse(s: &str) -> WalReceiverStatus {
        match s {
            "starting" => WalReceiverStatus::Starting,
            "streaming" => WalReceiverStatus::Streaming,
            "waiting" => WalReceiverStatus::Waiting,
            "restarting" => WalReceiverStatus::Restarting,
            "stopping" => WalReceiverStatus::Stopping,
            "stopped" => WalReceiverStatus::Stopped,
            other => WalReceiverStatus::Other(other.to_string()),
        }
    }
}

/// The standby's WAL receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalReceiver {
    /// `None` when the user may not see it (needs `pg_monitor`).
    pub status: Option<WalReceiverStatus>,
    pub received_tli: Option<u32>,
    /// Time since the last message (data or keepalive) from the primary, by the server's clock.
    /// A keepalive comes only every `wal_sender_timeout / 2` on an idle primary.
    pub last_msg_age: Option<Duration>,
    pub sender_host: Option<String>,
    pub sender_port: Option<u16>,
}

/// One `pg_stat_replication` row: a standby streaming from this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationPeer {
    pub application_name: String,
    /// `None` for a Unix-socket connection, or when hidden from the user.
    pub client_addr: Option<IpAddr>,
    pub state: Option<String>,
    pub sync_state: Option<String>,
    pub sent_lsn: Option<Lsn>,
    pub flush_lsn: Option<Lsn>,
    pub replay_lsn: Option<Lsn>,
}

/// What one observation of a database found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbFacts {
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
    pub timeline: u32,
    pub timeline_source: TimelineSource,
    /// Not in recovery: `pg_current_wal_lsn()`.
    pub current_lsn: Option<Lsn>,
    /// In recovery: `pg_last_wal_receive_lsn()` (WAL received and flushed).
    pub receive_lsn: Option<Lsn>,
    /// In recovery: `pg_last_wal_replay_lsn()`.
    pub replay_lsn: Option<Lsn>,
    /// In recovery with a running WAL receiver.
    pub wal_receiver: Option<WalReceiver>,
    /// Standbys streaming from this server, by application name.
    pub replication: Vec<ReplicationPeer>,
    /// `replication` was read (the held session's state row does not read it).
    pub replication_read: bool,
}

impl DbFacts {
    /// A primary's position and the walsender row of `standby`, when both were read.
    pub fn primary_position(
        &self,
        standby: &StandbyIdentity,
    ) -> Option<(Lsn, Option<WalSenderRow>)> {
        if self.in_recovery || !self.replication_read {
            return None;
        }
        let row = standby
            .find(&self.replication)
            .map(ReplicationPeer::walsender_row);
        self.current_lsn.map(|lsn| (lsn, row))
    }
}

/// The state row: recovery, timeline sources, WAL receiver. Functions that fail during recovery
/// are only evaluated on a server that is not in recovery (one `pg_is_in_recovery()` evaluation
/// decides); the control file is only read when no other timeline source exists (an uncorrelated
/// subquery is evaluated when first needed). Every column is text, so the same parser reads it
/// from the simple protocol and from the held session's prepared statement.
macro_rules! state_sql {
    () => {
        "WITH r AS (SELECT pg_is_in_recovery() AS rec), \
     p AS (SELECT CASE WHEN rec THEN NULL ELSE pg_current_wal_lsn() END AS lsn FROM r) \
SELECT r.rec::text, p.lsn::text, pg_walfile_name(p.lsn), \
       CASE WHEN r.rec AND w.received_tli IS NULL \
            THEN (SELECT timeline_id FROM pg_control_checkpoint())::text END, \
       pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, \
       (w.pid IS NOT NULL)::text, w.status, w.received_tli::text, \
       (extract(epoch FROM clock_timestamp() - w.last_msg_receipt_time) * 1000)::bigint::text, \
       w.sender_host, w.sender_port::text \
FROM r CROSS JOIN p LEFT JOIN pg_stat_wal_receiver w ON true"
    };
}

/// What the held monitoring session asks each interval ([`super::session`]): the state row only.
pub(crate) const STATE_SQL: &str = state_sql!();

/// The role row, for a database whose WAL receiver does not matter (the peer's, or the local
/// one while it is a primary): recovery, and for a primary the timeline and position of the WAL
/// it writes and the walsender row of the pair's standby — matched by its address (`$1`, the
/// text of `host(client_addr)`) or by `replication.application_name` (`$2`, NULL when not set) —
/// with the walsender's pid (column 6, for [`ROLE_BY_PID_SQL`]). One snapshot, so the position
/// and the standby's flush position are consistent. The walsender lookup is only evaluated on a
/// primary.
///
/// The view joins every backend's status (`pg_stat_get_activity`) to find the address: about
/// half the CPU of the whole statement on the server. [`ROLE_BY_PID_SQL`] avoids it once the
/// walsender's pid is known.
pub(crate) const ROLE_SQL: &str = "\
WITH r AS (SELECT pg_is_in_recovery() AS rec), \
     p AS (SELECT CASE WHEN rec THEN NULL ELSE pg_current_wal_lsn() END AS lsn FROM r) \
SELECT r.rec::text, pg_walfile_name(p.lsn), p.lsn::text, \
       w.state, w.sync_state, w.flush_lsn::text, w.pid::text \
FROM r CROSS JOIN p LEFT JOIN LATERAL ( \
    SELECT pid, state, sync_state, flush_lsn FROM pg_stat_replication \
    WHERE NOT r.rec AND (host(client_addr) = $1::text OR application_name = $2::text) \
    ORDER BY state = 'streaming' DESC, flush_lsn DESC NULLS LAST LIMIT 1) w ON true";

/// [`ROLE_SQL`] for a standby whose walsender pid (`$1`) an earlier [`ROLE_SQL`] found: the
/// walsender row straight from `pg_stat_get_wal_senders()`, and only while that walsender
/// streams. No row (it ended, or stopped streaming) sends the caller back to [`ROLE_SQL`] in the
/// same round, so the identity match decides whenever anything changed.
pub(crate) const ROLE_BY_PID_SQL: &str = "\
WITH r AS (SELECT pg_is_in_recovery() AS rec), \
     p AS (SELECT CASE WHEN rec THEN NULL ELSE pg_current_wal_lsn() END AS lsn FROM r) \
SELECT r.rec::text, pg_walfile_name(p.lsn), p.lsn::text, \
       w.state, w.sync_state, w.flush_lsn::text, w.pid::text \
FROM r CROSS JOIN p LEFT JOIN LATERAL ( \
    SELECT pid, state, sync_state, flush_lsn FROM pg_stat_get_wal_senders() \
    WHERE NOT r.rec AND pid = $1::int4 AND state = 'streaming') w ON true";

/// The pair's standby as a primary lists it (`pg_stat_replication`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalSenderRow {
    /// `state = 'streaming'`.
    pub streaming: bool,
    /// `sync_state` is `sync` or `quorum`.
    pub synchronous: bool,
    /// `flush_lsn`; `None` when hidden from the user (it needs `pg_monitor`).
    pub flush: Option<Lsn>,
}

/// What the role row says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Not in recovery, writing WAL on this timeline, at `current`; the standby's walsender row
    /// (`None`: the primary lists none for it).
    Primary {
        timeline: u32,
        current: Option<Lsn>,
        standby: Option<WalSenderRow>,
    },
    InRecovery,
}

/// The walsender pid of a role row ([`ROLE_SQL`], [`ROLE_BY_PID_SQL`]): `None` when it lists
/// no walsender for the standby.
pub(crate) fn walsender_pid_of_role_row(row: &tokio_postgres::Row) -> Result<Option<i32>, String> {
    Columns::of_row(row)?.parsed(6, "walsender pid")
}

pub(crate) fn parse_role_row(row: &tokio_postgres::Row) -> Result<Role, String> {
    let c = Columns::of_row(row)?;
    match c.bool(0, "pg_is_in_recovery")? {
        None => Err("pg_is_in_recovery() is NULL".into()),
        Some(true) => Ok(Role::InRecovery),
        Some(false) => {
            let walfile = c.text(1)?;
            let timeline = walfile
                .and_then(timeline_of_walfile)
                .ok_or_else(|| format!("no timeline in WAL file name {walfile:?}"))?;
            let standby = match c.text(3)? {
                None => None,
                Some(state) => Some(WalSenderRow {
                    streaming: state == "streaming",
                    synchronous: matches!(c.text(4)?, Some("sync" | "quorum")),
                    flush: c.parsed(5, "flush_lsn")?,
                }),
            };
            Ok(Role::Primary {
                timeline,
                current: c.parsed(2, "pg_current_wal_lsn")?,
                standby,
            })
        }
    }
}

/// How a primary's `pg_stat_replication` names the pair's standby.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandbyIdentity {
    /// The standby node's address, as `host(client_addr)` prints it.
    pub address: String,
    /// `replication.application_name`, when set.
    pub application_name: Option<String>,
}

impl StandbyIdentity {
    /// The row of `rows` for this standby: by address, else by application name; a streaming
    /// row first.
    pub fn find<'a>(&self, rows: &'a [ReplicationPeer]) -> Option<&'a ReplicationPeer> {
        let ours = |r: &&ReplicationPeer| {
            r.client_addr.map(|a| a.to_string()).as_deref() == Some(self.address.as_str())
                || self.application_name.as_deref() == Some(r.application_name.as_str())
        };
        let mut found: Vec<&ReplicationPeer> = rows.iter().filter(ours).collect();
        found.sort_by_key(|r| {
            (
                r.state.as_deref() != Some("streaming"),
                std::cmp::Reverse(r.flush_lsn),
            )
        });
        found.first().copied()
    }
}

impl ReplicationPeer {
    pub fn walsender_row(&self) -> WalSenderRow {
        WalSenderRow {
            streaming: self.state.as_deref() == Some("streaming"),
            synchronous: matches!(self.sync_state.as_deref(), Some("sync" | "quorum")),
            flush: self.flush_lsn,
        }
    }
}

/// Two statements, one round trip: the state row and the standbys streaming from the server.
const OBSERVE_SQL: &str = concat!(
    state_sql!(),
    "; SELECT application_name, client_addr, state, sync_state, sent_lsn, flush_lsn, replay_lsn \
FROM pg_stat_replication ORDER BY application_name, client_addr"
);

/// Observes the database at `params` in one query round trip, all within `timeout`.
pub async fn observe(params: &ConnParams, timeout: Duration) -> Result<DbFacts, QueryError> {
    let target = params.to_string();
    let messages = run_simple(params, timeout, OBSERVE_SQL).await?;
    parse_observation(&messages).map_err(|reason| QueryError::Unexpected { target, reason })
}

/// The SQL of the write check for each flavor.
///
/// - PostgreSQL: `txid_current()` makes the server assign a real transaction id, which a server
///   in recovery (or otherwise unable to write) refuses; the rollback then writes an abort
///   record. Works on PostgreSQL 12 (WarehousePG's base) through current releases.
/// - WarehousePG: an xid on the coordinator alone does not prove the coordinator can *dispatch*
///   (after activation it may still be "waiting for distributed transaction recovery"). Creating
///   a temporary table and inserting a row is dispatched to every segment, so it only succeeds
///   once the cluster as a whole takes writes.
///
/// Both run in a transaction that is rolled back, so nothing is left behind, and neither waits
/// for a synchronous standby (an abort is not a commit): a promoted node whose configured sync
/// standby is gone still passes, as it should, because it *is* writable.
pub fn write_check_sql(flavor: Flavor, timeout: Duration) -> String {
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128);
    let write = match flavor {
        Flavor::Postgres => "SELECT txid_current()",
        Flavor::WarehousePg => {
            "CREATE TEMP TABLE whpg_ha_write_check (id int); \
             INSERT INTO whpg_ha_write_check VALUES (1)"
        }
    };
    format!("BEGIN; SET LOCAL statement_timeout = {ms}; {write}; ROLLBACK")
}

/// Aborts the connection task if the caller gives up (timeout, cancellation).
struct ConnectionTask(JoinHandle<()>);

impl Drop for ConnectionTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Asks a standby to leave recovery as `pg_ctl promote` does (the promote signal file, a signal
/// to the postmaster) and returns at once. Needs superuser or EXECUTE on `pg_promote`
/// (PostgreSQL 12 or later).
pub(crate) const PROMOTE_SQL: &str = "SELECT pg_promote(wait => false)";

/// `pg_promote`'s answer: true when the postmaster was signalled.
pub(crate) fn promote_answer(target: &str, answer: Option<bool>) -> Result<(), QueryError> {
    match answer {
        Some(true) => Ok(()),
        other => Err(QueryError::Unexpected {
            target: target.to_string(),
            reason: format!(
                "pg_promote(wait => false) returned {other:?}: the server could not signal its \
                 postmaster"
            ),
        }),
    }
}

/// Logs in to `params` by `deadline` (`timeout` names the bound in the error) and spawns the
/// connection's task; dropping the client ends it.
pub(crate) async fn connect(
    params: &ConnParams,
    deadline: Instant,
    timeout: Duration,
) -> Result<(Client, JoinHandle<()>), QueryError> {
    let config = params.config()?;
    match timeout_at(deadline, config.connect(NoTls)).await {
        Err(_) => Err(QueryError::TimedOut {
            target: params.to_string(),
            timeout,
        }),
        Ok(Err(source)) => Err(QueryError::Connect {
            target: params.to_string(),
            source,
        }),
        Ok(Ok((client, connection))) => Ok((
            client,
            tokio::spawn(async move {
                let _ = connection.await;
            }),
        )),
    }
}

/// Connects, runs `sql` with the simple query protocol (one round trip for all statements),
/// disconnects politely; everything within `timeout`.
async fn run_simple(
    params: &ConnParams,
    timeout: Duration,
    sql: &str,
) -> Result<Vec<SimpleQueryMessage>, QueryError> {
    let target = params.to_string();
    let deadline = Instant::now() + timeout;
    let (client, connection) = connect(params, deadline, timeout).await?;
    let mut task = ConnectionTask(connection);
    let result = match timeout_at(deadline, query(&client, sql)).await {
        Err(_) => Err(QueryError::TimedOut {
            target: target.clone(),
            timeout,
        }),
        Ok(Err(source)) => Err(QueryError::Query {
            target: target.clone(),
            source,
        }),
        Ok(Ok(messages)) => Ok(messages),
    };
    // Dropping the client makes the connection send Terminate and finish.
    drop(client);
    let _ = timeout_at(deadline, &mut task.0).await;
    result
}

async fn query(
    client: &Client,
    sql: &str,
) -> Result<Vec<SimpleQueryMessage>, tokio_postgres::Error> {
    client.simple_query(sql).await
}

/// Splits simple-query messages into the rows of each statement.
fn rows_by_statement(messages: &[SimpleQueryMessage]) -> Vec<Vec<&SimpleQueryRow>> {
    let mut statements = vec![Vec::new()];
    for message in messages {
        match message {
            SimpleQueryMessage::Row(row) => {
                if let Some(current) = statements.last_mut() {
                    current.push(row);
                }
            }
            SimpleQueryMessage::CommandComplete(_) => statements.push(Vec::new()),
            _ => {}
        }
    }
    statements
}

/// Typed access to the text columns of a row: a simple-query row (all text), or a row of the
/// held session's prepared statement (every column cast to `text` in the SQL).
struct Columns<'a>(Vec<Option<&'a str>>);

impl<'a> Columns<'a> {
    fn of_simple(row: &'a SimpleQueryRow) -> Result<Columns<'a>, String> {
        (0..row.len())
            .map(|i| row.try_get(i).map_err(|e| format!("column {i}: {e}")))
            .collect::<Result<Vec<_>, _>>()
            .map(Columns)
    }

    fn of_row(row: &'a tokio_postgres::Row) -> Result<Columns<'a>, String> {
        (0..row.len())
            .map(|i| {
                row.try_get::<_, Option<&str>>(i)
                    .map_err(|e| format!("column {i}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Columns)
    }

    fn text(&self, i: usize) -> Result<Option<&'a str>, String> {
        self.0
            .get(i)
            .copied()
            .ok_or_else(|| format!("column {i}: missing"))
    }

    fn parsed<T: std::str::FromStr>(&self, i: usize, what: &str) -> Result<Option<T>, String> {
        match self.text(i)? {
            None => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|_| format!("column {i} ({what}): {s:?} does not parse")),
        }
    }

    /// A boolean as the simple protocol prints it (`t`/`f`) or as `bool::text` does.
    fn bool(&self, i: usize, what: &str) -> Result<Option<bool>, String> {
        match self.text(i)? {
            None => Ok(None),
            Some("t" | "true") => Ok(Some(true)),
            Some("f" | "false") => Ok(Some(false)),
            Some(s) => Err(format!("column {i} ({what}): {s:?} is not a boolean")),
        }
    }
}

/// The timeline from a WAL file name: its first 8 hex digits.
pub(crate) fn timeline_of_walfile(name: &str) -> Option<u32> {
    let tli = name.get(..8)?;
    u32::from_str_radix(tli, 16).ok().filter(|&t| t > 0)
}

/// An `inet` value as text (`10.0.0.1`, or with a prefix length) as an address.
fn parse_inet(s: &str) -> Option<IpAddr> {
    s.split('/').next()?.parse().ok()
}

fn parse_observation(messages: &[SimpleQueryMessage]) -> Result<DbFacts, String> {
    let statements = rows_by_statement(messages);
    let state = match statements.first().map(Vec::as_slice) {
        Some([row]) => Columns::of_simple(row)?,
        Some(rows) => return Err(format!("{} state rows instead of 1", rows.len())),
        None => return Err("no result".into()),
    };
    let mut facts = parse_state(&state)?;
    facts.replication_read = true;
    for row in statements.get(1).map(Vec::as_slice).unwrap_or_default() {
        let c = Columns::of_simple(row)?;
        facts.replication.push(ReplicationPeer {
            application_name: c.text(0)?.unwrap_or_default().to_string(),
            client_addr: c.text(1)?.and_then(parse_inet),
            state: c.text(2)?.map(str::to_string),
            sync_state: c.text(3)?.map(str::to_string),
            sent_lsn: c.parsed(4, "sent_lsn")?,
            flush_lsn: c.parsed(5, "flush_lsn")?,
            replay_lsn: c.parsed(6, "replay_lsn")?,
        });
    }
    Ok(facts)
}

/// The facts of one state row (the columns of [`STATE_SQL`]); no replication rows.
pub(crate) fn parse_state_row(row: &tokio_postgres::Row) -> Result<DbFacts, String> {
    parse_state(&Columns::of_row(row)?)
}

fn parse_state(state: &Columns<'_>) -> Result<DbFacts, String> {
    let in_recovery = state
        .bool(0, "pg_is_in_recovery")?
        .ok_or("pg_is_in_recovery() is NULL")?;
    let current_lsn = state.parsed::<Lsn>(1, "pg_current_wal_lsn")?;
    let walfile = state.text(2)?;
    let checkpoint_tli = state.parsed::<u32>(3, "checkpoint timeline")?;
    let receive_lsn = state.parsed::<Lsn>(4, "pg_last_wal_receive_lsn")?;
    let replay_lsn = state.parsed::<Lsn>(5, "pg_last_wal_replay_lsn")?;
    let wal_receiver = if state.bool(6, "receiver present")? == Some(true) {
        Some(WalReceiver {
            status: state.text(7)?.map(WalReceiverStatus::parse),
            received_tli: state.parsed(8, "received_tli")?,
            last_msg_age: state
                .parsed::<i64>(9, "last message age")?
                .map(|ms| Duration::from_millis(ms.max(0) as u64)),
            sender_host: state.text(10)?.map(str::to_string),
            sender_port: state.parsed(11, "sender_port")?,
        })
    } else {
        None
    };
    let (timeline, timeline_source) = if !in_recovery {
        let tli = walfile
            .and_then(timeline_of_walfile)
            .ok_or_else(|| format!("no timeline in WAL file name {walfile:?}"))?;
        (tli, TimelineSource::Insert)
    } else if let Some(tli) = wal_receiver.as_ref().and_then(|w| w.received_tli) {
        (tli, TimelineSource::WalReceiver)
    } else {
        let tli = checkpoint_tli.ok_or("no checkpoint timeline")?;
        (tli, TimelineSource::Checkpoint)
    };
    Ok(DbFacts {
        in_recovery,
        timeline,
        timeline_source,
        current_lsn,
        receive_lsn,
        replay_lsn,
        wal_receiver,
        replication: Vec::new(),
        replication_read: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_comes_from_the_first_eight_hex_digits() {
        assert_eq!(timeline_of_walfile("000000020000000000000003"), Some(2));
        assert_eq!(timeline_of_walfile("0000001A00000001000000FF"), Some(26));
        assert_eq!(timeline_of_walfile("00000000000000000000000"), None);
        assert_eq!(timeline_of_walfile("0000"), None);
        assert_eq!(timeline_of_walfile("zzzzzzzz0000"), None);
        assert_eq!(timeline_of_walfile("ééééé"), None);
    }

    #[test]
    fn inet_text_to_address() {
        assert_eq!(
            parse_inet("10.77.0.12"),
            Some("10.77.0.12".parse().unwrap())
        );
        assert_eq!(
            parse_inet("10.77.0.12/32"),
            Some("10.77.0.12".parse().unwrap())
        );
        assert_eq!(parse_inet("::1"), Some("::1".parse().unwrap()));
        assert_eq!(parse_inet("nonsense"), None);
    }

    #[test]
    fn password_file_line_endings_are_dropped_once() {
        assert_eq!(strip_newline(b"secret\n"), b"secret");
        assert_eq!(strip_newline(b"secret\r\n"), b"secret");
        assert_eq!(strip_newline(b"secret"), b"secret");
        assert_eq!(strip_newline(b"two\n\n"), b"two\n");
    }

    #[test]
    fn write_check_sql_per_flavor() {
        let pg = write_check_sql(Flavor::Postgres, Duration::from_millis(1500));
        assert_eq!(
            pg,
            "BEGIN; SET LOCAL statement_timeout = 1500; SELECT txid_current(); ROLLBACK"
        );
        let whpg = write_check_sql(Flavor::WarehousePg, Duration::from_secs(2));
        assert!(whpg.starts_with("BEGIN; SET LOCAL statement_timeout = 2000; CREATE TEMP TABLE"));
        assert!(whpg.ends_with("; ROLLBACK"));
    }

    #[test]
    fn params_display_names_target_and_login_but_no_password() {
        let mut p = ConnParams::new(DbEndpoint::Host("10.0.0.1".into()), 5432, "ha", "postgres");
        p.password_file = Some("/etc/whpg-ha/db.pass".into());
        assert_eq!(p.to_string(), "10.0.0.1:5432 (ha@postgres)");
        let unix = ConnParams::new(DbEndpoint::SocketDir("/run/pg".into()), 6000, "u", "d");
        assert_eq!(unix.to_string(), "/run/pg/.s.PGSQL.6000 (u@d)");
    }

    #[test]
    fn missing_password_file_is_a_clear_error() {
        let mut p = ConnParams::new(DbEndpoint::Host("127.0.0.1".into()), 1, "u", "d");
        p.password_file = Some("/nonexistent/whpg-ha/pass".into());
        let err = p.config().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("reading the password file /nonexistent/whpg-ha/pass:"),
            "{err}"
        );
    }
}
