//! The promotion's proof, tried again and again while the promote command runs: a real write on
//! the local database ([`write_check_sql`]) and, in the same round trip, the timeline it now
//! writes on.
//!
//! One connection serves every attempt. A new connection per attempt would make the server fork
//! a backend every few milliseconds at the moment it is busiest, and would add the fork and the
//! login to the time between the server leaving recovery and the proof. A session opened during
//! recovery can write as soon as recovery ends (the check is per transaction).
//!
//! Each attempt first asks `pg_is_in_recovery()`, and tries the write only once that says false:
//! a write refused during recovery would put an ERROR (and its statement) in the server's log
//! at every attempt, and would leave the session in an aborted transaction block. Any error
//! drops the connection, so the next attempt starts afresh.
//!
//! [`WriteProbe::signal_promotion`] asks the server to leave recovery on the same connection
//! (`pg_promote(wait => false)`): what `pg_ctl promote` does, without forking it.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};
use tokio_postgres::{Client, SimpleQueryMessage};

use super::query::{
    connect, promote_answer, timeline_of_walfile, write_check_sql, ConnParams, QueryError,
    PROMOTE_SQL,
};
use super::SqlState;
use crate::config::Flavor;

/// How long a dropped connection may take to say goodbye before it is cut.
const GOODBYE: Duration = Duration::from_secs(1);

/// Repeated write checks of one database on one connection (see the module documentation).
pub struct WriteProbe {
    params: ConnParams,
    timeout: Duration,
    sql: String,
    connection: Option<Connection>,
}

struct Connection {
    client: Client,
    task: Option<JoinHandle<()>>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Dropping the client sends Terminate; the task ends when the server closes. Cut it
        // after a moment if the server does not.
        let Some(task) = self.task.take() else {
            return;
        };
        let abort = task.abort_handle();
        tokio::spawn(async move {
            if tokio::time::timeout(GOODBYE, task).await.is_err() {
                abort.abort();
            }
        });
    }
}

impl WriteProbe {
    /// Checks of the database at `params`, each attempt (connecting included) within `timeout`.
    pub fn new(params: ConnParams, flavor: Flavor, timeout: Duration) -> WriteProbe {
        let sql = format!(
            "{}; SELECT pg_walfile_name(pg_current_wal_lsn())",
            write_check_sql(flavor, timeout)
        );
        WriteProbe {
            params,
            timeout,
            sql,
            connection: None,
        }
    }

    /// One attempt: `Ok(timeline)` once the database accepted the write (rolled back), the
    /// timeline being `None` only if its WAL file name could not be read. A standby fails with
    /// [`QueryError::InRecovery`] (the connection is kept for the next attempt); a database out
    /// of recovery that refuses the write as read-only with [`QueryError::ReadOnly`].
    pub async fn attempt(&mut self) -> Result<Option<u32>, QueryError> {
        let deadline = Instant::now() + self.timeout;
        let result = self.attempt_by(deadline).await;
        if !matches!(result, Ok(_) | Err(QueryError::InRecovery { .. })) {
            self.connection = None;
        }
        result
    }

    /// Logs in now, so that the first attempt does not (a no-op while connected).
    pub async fn connect(&mut self) -> Result<(), QueryError> {
        let deadline = Instant::now() + self.timeout;
        kept(&mut self.connection, &self.params, deadline, self.timeout)
            .await
            .map(|_| ())
    }

    /// Asks the server to leave recovery: `pg_promote(wait => false)` writes the promote signal
    /// file and signals the postmaster, as `pg_ctl promote` does, and returns at once. The
    /// connection stays for the attempts that prove the promotion. Needs superuser or EXECUTE
    /// on `pg_promote` (PostgreSQL 12 or later); the error says which was missing.
    pub async fn signal_promotion(&mut self) -> Result<(), QueryError> {
        let deadline = Instant::now() + self.timeout;
        let result = self.signal_promotion_by(deadline).await;
        if result.is_err() {
            self.connection = None;
        }
        result
    }

    async fn signal_promotion_by(&mut self, deadline: Instant) -> Result<(), QueryError> {
        let target = self.params.to_string();
        let client = kept(&mut self.connection, &self.params, deadline, self.timeout).await?;
        let messages = run(client, PROMOTE_SQL, deadline, &target, self.timeout).await?;
        let answer = first_value(&messages).map(|v| v == "t");
        promote_answer(&target, answer)
    }

    async fn attempt_by(&mut self, deadline: Instant) -> Result<Option<u32>, QueryError> {
        let target = self.params.to_string();
        let client = kept(&mut self.connection, &self.params, deadline, self.timeout).await?;
        let recovery = run(
            client,
            "SELECT pg_is_in_recovery()",
            deadline,
            &target,
            self.timeout,
        )
        .await?;
        match first_value(&recovery) {
            Some("f") => {}
            Some("t") => {
                return Err(QueryError::InRecovery {
                    target: target.clone(),
                })
            }
            other => {
                return Err(QueryError::Unexpected {
                    target: target.clone(),
                    reason: format!("pg_is_in_recovery() returned {other:?}"),
                })
            }
        }
        let messages = run(client, &self.sql, deadline, &target, self.timeout).await?;
        Ok(last_value(&messages).and_then(timeline_of_walfile))
    }
}

/// The kept connection's client, connecting by `deadline` if there is none.
async fn kept<'a>(
    connection: &'a mut Option<Connection>,
    params: &ConnParams,
    deadline: Instant,
    timeout: Duration,
) -> Result<&'a Client, QueryError> {
    if connection.is_none() {
        let (client, task) = connect(params, deadline, timeout).await?;
        *connection = Some(Connection {
            client,
            task: Some(task),
        });
    }
    match connection {
        Some(connection) => Ok(&connection.client),
        None => unreachable!("connected above"),
    }
}

/// `sql` (simple protocol) on `client`, by `deadline`; a write refused as read-only is
/// [`QueryError::ReadOnly`].
async fn run(
    client: &Client,
    sql: &str,
    deadline: Instant,
    target: &str,
    timeout: Duration,
) -> Result<Vec<SimpleQueryMessage>, QueryError> {
    let target = target.to_string();
    match timeout_at(deadline, client.simple_query(sql)).await {
        Err(_) => Err(QueryError::TimedOut { target, timeout }),
        Ok(Err(source))
            if source.code().map(|c| c.code())
                == Some(SqlState::READ_ONLY_SQL_TRANSACTION.as_str()) =>
        {
            Err(QueryError::ReadOnly { target, source })
        }
        Ok(Err(source)) => Err(QueryError::Query { target, source }),
        Ok(Ok(messages)) => Ok(messages),
    }
}

/// The first column of the first row the batch returned.
fn first_value(messages: &[SimpleQueryMessage]) -> Option<&str> {
    messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => row.get(0),
        _ => None,
    })
}

/// The first column of the last row the batch returned (the WAL file name).
fn last_value(messages: &[SimpleQueryMessage]) -> Option<&str> {
    messages.iter().rev().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => row.get(0),
        _ => None,
    })
}
