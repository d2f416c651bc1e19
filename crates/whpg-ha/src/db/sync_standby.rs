//! Sets `synchronous_standby_names` on the local primary (`[replication] mode = "sync"` or
//! `"sync-strict"`): to the pair's standby, named by its `application_name` exactly as the
//! primary lists it in `pg_stat_replication`, or to `''` so the primary commits alone.
//!
//! Three statements on one short connection, all within one timeout: the standby's name (by
//! address or `nodes.NAME.application_name`, a streaming row first), `ALTER SYSTEM SET ...` (it
//! cannot run in a transaction block, so it is a statement of its own) and `SELECT
//! pg_reload_conf()`. The rules that decide when are the policy's (`whpg_policy::sync_standby`);
//! this only carries one setting out and says precisely why it could not.
//!
//! The login needs to be a superuser, or on PostgreSQL 15 and later to hold `GRANT ALTER SYSTEM
//! ON PARAMETER synchronous_standby_names` and `GRANT EXECUTE ON FUNCTION pg_reload_conf()`.

use std::time::Duration;

use tokio::time::{timeout_at, Instant};
use tokio_postgres::NoTls;
use whpg_policy::SyncTarget;

use super::query::{ConnParams, StandbyIdentity};

/// The standby's name as the primary lists it; a streaming row first.
const STANDBY_NAME_SQL: &str = "\
SELECT application_name FROM pg_stat_replication \
WHERE host(client_addr) = $1::text OR application_name = $2::text \
ORDER BY state = 'streaming' DESC, flush_lsn DESC NULLS LAST LIMIT 1";

/// `name` as a quoted identifier, the form `synchronous_standby_names` takes for one standby:
/// double quotes around it, each double quote inside doubled.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The `ALTER SYSTEM` statement that sets `value` (a string literal: single quotes doubled; the
/// server's `standard_conforming_strings`, on since PostgreSQL 9.1, keeps backslashes literal).
pub fn alter_system_sql(value: &str) -> String {
    format!(
        "ALTER SYSTEM SET synchronous_standby_names = '{}'",
        value.replace('\'', "''")
    )
}

/// Why the setting could not be made, in words that say what to fix.
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    #[error("{target}: no answer within {timeout:?}")]
    TimedOut { target: String, timeout: Duration },
    #[error("connecting to {target}: {detail}")]
    Connect { target: String, detail: String },
    #[error(
        "{target} lists no WAL sender for the standby (address {address}{}): nothing to name \
         in synchronous_standby_names yet",
        application_name.as_deref().map(|n| format!(" or application_name {n:?}")).unwrap_or_default()
    )]
    NoStandby {
        target: String,
        address: String,
        application_name: Option<String>,
    },
    #[error(
        "{target}: {user} may not {what} ({detail}): make it a superuser, or on PostgreSQL 15 and \
         later: GRANT ALTER SYSTEM ON PARAMETER synchronous_standby_names TO {user}; GRANT \
         EXECUTE ON FUNCTION pg_reload_conf() TO {user}"
    )]
    NotAllowed {
        target: String,
        user: String,
        what: &'static str,
        detail: String,
    },
    #[error("{target}: {what}: {detail}")]
    Failed {
        target: String,
        what: &'static str,
        detail: String,
    },
}

/// The driver's error with its causes and the server's message.
fn detail(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
    }
    super::query::full_text(error)
}

/// Sets `synchronous_standby_names` for `target` on the database at `params` and reloads the
/// configuration; returns the value set. Everything within `timeout`.
pub async fn set_synchronous_standby(
    params: &ConnParams,
    standby: &StandbyIdentity,
    target: SyncTarget,
    timeout: Duration,
) -> Result<String, SetError> {
    let shown = params.to_string();
    let deadline = Instant::now() + timeout;
    let timed_out = || SetError::TimedOut {
        target: shown.clone(),
        timeout,
    };
    let config = params.config().map_err(|e| SetError::Connect {
        target: shown.clone(),
        detail: e.to_string(),
    })?;
    let (client, connection) = match timeout_at(deadline, config.connect(NoTls)).await {
        Err(_) => return Err(timed_out()),
        Ok(Err(e)) => {
            return Err(SetError::Connect {
                target: shown.clone(),
                detail: detail(&e),
            })
        }
        Ok(Ok(pair)) => pair,
    };
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    let failed = |what: &'static str, e: tokio_postgres::Error| {
        let denied = e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE);
        if denied {
            SetError::NotAllowed {
                target: shown.clone(),
                user: params.user.clone(),
                what,
                detail: detail(&e),
            }
        } else {
            SetError::Failed {
                target: shown.clone(),
                what,
                detail: detail(&e),
            }
        }
    };
    let result = async {
        let value = match target {
            SyncTarget::Alone => String::new(),
            SyncTarget::Standby => {
                let row = timeout_at(
                    deadline,
                    client.query_opt(
                        STANDBY_NAME_SQL,
                        &[&standby.address, &standby.application_name],
                    ),
                )
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| failed("read pg_stat_replication", e))?;
                let name: Option<String> = row.and_then(|r| r.get(0));
                match name {
                    Some(name) => quote_identifier(&name),
                    None => {
                        return Err(SetError::NoStandby {
                            target: shown.clone(),
                            address: standby.address.clone(),
                            application_name: standby.application_name.clone(),
                        })
                    }
                }
            }
        };
        timeout_at(deadline, client.simple_query(&alter_system_sql(&value)))
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| failed("ALTER SYSTEM SET synchronous_standby_names", e))?;
        timeout_at(deadline, client.simple_query("SELECT pg_reload_conf()"))
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| failed("run pg_reload_conf()", e))?;
        Ok(value)
    }
    .await;
    drop(client);
    let _ = timeout_at(deadline, task).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_as_identifiers_inside_a_string_literal() {
        assert_eq!(quote_identifier("b"), "\"b\"");
        assert_eq!(quote_identifier("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(
            alter_system_sql(&quote_identifier("o'brien")),
            "ALTER SYSTEM SET synchronous_standby_names = '\"o''brien\"'"
        );
        assert_eq!(
            alter_system_sql(""),
            "ALTER SYSTEM SET synchronous_standby_names = ''"
        );
    }

    #[test]
    fn a_permission_error_says_which_grants_fix_it() {
        let e = SetError::NotAllowed {
            target: "/tmp/.s.PGSQL.5432 (ha@postgres)".into(),
            user: "ha".into(),
            what: "ALTER SYSTEM SET synchronous_standby_names",
            detail: "permission denied".into(),
        };
        let text = e.to_string();
        assert!(text.contains("GRANT ALTER SYSTEM ON PARAMETER synchronous_standby_names TO ha"));
        assert!(text.contains("superuser"));
    }
}
