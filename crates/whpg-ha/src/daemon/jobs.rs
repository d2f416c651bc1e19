//! Long-running actions the policy asks for (promotion, fencing), run as tasks that report
//! back, so the VRRP loop keeps advertising while a command runs.
//!
//! The tasks are owned: on shutdown [`Jobs::drain`] lets a running fence or promotion finish
//! within its own bound instead of dropping it half-way, and names what it had to cut short.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{error, info, warn};
use whpg_policy::{FenceReason, Input, SyncTarget, WriteVerified};

use crate::config::{CommandKind, Config, Flavor};
use crate::daemon::observers::{PromoteSignal, SignalError};
use crate::db::{observe, ConnParams, QueryError, WriteProbe};
use crate::exec::{self, PreparedCommand};
use crate::fence::fence_database;

/// After a promotion command that succeeded, how long the database may take to accept a write
/// (WarehousePG may still be "waiting for distributed transaction recovery").
const VERIFY_AFTER_SUCCESS: Duration = Duration::from_secs(30);
/// After one that failed or hung: its exit code is not trusted (gpactivatestandby has reported
/// failure after promoting), so look briefly before calling it failed.
const VERIFY_AFTER_FAILURE: Duration = Duration::from_secs(2);
const VERIFY_POLL: Duration = Duration::from_millis(50);
/// While the promote command runs (postgres flavor): how often a write is tried, and for how long
/// at that pace before falling back to [`VERIFY_POLL`] (a hanging command is not hammered). An
/// attempt on the probe's kept connection costs the server one short statement, not a backend.
const EARLY_POLL: Duration = Duration::from_millis(2);
const EARLY_POLL_FOR: Duration = Duration::from_secs(2);
/// After `pg_promote`: still in recovery this long after the last signal, signal again.
/// PostgreSQL 15 can log a promote request that arrives just after its WAL receiver lost the
/// primary, and still sleep `wal_retrieve_retry_interval` (5 s) before it acts on it (seen in 2
/// of 30 crash trials); a second request wakes it. A signal file left over is removed at the
/// server's next start.
const RESIGNAL_AFTER: Duration = Duration::from_millis(100);

/// Beyond a job's own bounds (command timeout, verification): its polls and the fence's kill
/// rounds, so a job that keeps to its bounds is never cut short on shutdown.
const JOB_MARGIN: Duration = Duration::from_secs(15);
/// Setting `synchronous_standby_names` (three short statements); the policy tries again after
/// its retry delay when this passes.
const SYNC_SET_TIMEOUT: Duration = Duration::from_secs(5);

pub use crate::node::JobReport;

/// One running job: what it is and when it must be over by its own bounds.
struct Running {
    what: String,
    deadline: tokio::time::Instant,
}

pub struct Jobs {
    config: Config,
    tx: mpsc::Sender<Input>,
    reports: mpsc::UnboundedSender<JobReport>,
    /// The local monitor's held session, which carries the SQL promotion.
    promote_signal: PromoteSignal,
    running: JoinSet<()>,
    /// By task id, for [`Jobs::drain`]'s account of what it cut short.
    details: BTreeMap<tokio::task::Id, Running>,
}

impl Jobs {
    pub fn new(
        config: Config,
        tx: mpsc::Sender<Input>,
        reports: mpsc::UnboundedSender<JobReport>,
        promote_signal: PromoteSignal,
    ) -> Jobs {
        Jobs {
            config,
            tx,
            reports,
            promote_signal,
            running: JoinSet::new(),
            details: BTreeMap::new(),
        }
    }

    fn own(
        &mut self,
        what: String,
        bound: Duration,
        job: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        // Forget finished jobs first, so the map only holds running ones.
        while let Some(done) = self.running.try_join_next_with_id() {
            let id = match done {
                Ok((id, ())) => id,
                Err(e) => e.id(),
            };
            self.details.remove(&id);
        }
        let handle = self.running.spawn(job);
        self.details.insert(
            handle.id(),
            Running {
                what,
                deadline: tokio::time::Instant::now() + bound,
            },
        );
    }

    /// Run the promotion command, verify with a real write, report `PromotionFinished`.
    pub fn promote(&mut self, attempt: u32) {
        let config = self.config.clone();
        let tx = self.tx.clone();
        let signal = self.promote_signal.clone();
        // The SQL promotion's own waits come first (the monitor's answer, then the probe's
        // connection), bounded by three probe timeouts, before any fallback to the command.
        let bound = config.commands.promote.timeout
            + VERIFY_AFTER_SUCCESS
            + 3 * config.health.timeout
            + JOB_MARGIN;
        self.own(format!("promotion attempt {attempt}"), bound, async move {
            let started = Instant::now();
            let result = promote_and_verify(&config, &signal).await;
            match &result {
                Ok(proof) => info!(
                    "promotion attempt {attempt}: writable after {} ms (timeline {})",
                    started.elapsed().as_millis(),
                    proof.timeline().map_or("?".into(), |t| t.to_string())
                ),
                Err(e) => error!(
                    "promotion attempt {attempt} failed after {} ms: {e}",
                    started.elapsed().as_millis()
                ),
            }
            let _ = tx.send(Input::PromotionFinished(result)).await;
        });
    }

    /// Stop the local database and clean up after it; the report goes to the log.
    pub fn fence(&mut self, reason: FenceReason) {
        let config = self.config.clone();
        let reports = self.reports.clone();
        let bound = config.commands.fence.timeout + JOB_MARGIN;
        self.own(format!("fence ({reason:?})"), bound, async move {
            let command = match PreparedCommand::from_config(
                &config,
                CommandKind::Fence,
                &runtime_vars(&config),
            ) {
                Ok(command) => command,
                Err(e) => {
                    error!("cannot fence ({reason:?}): commands.fence: {e}");
                    let _ = reports.send(JobReport {
                        kind: "fence",
                        complete: false,
                        detail: format!("cannot fence ({reason:?}): commands.fence: {e}"),
                    });
                    return;
                }
            };
            let report = fence_database(&config.database, &command).await;
            let complete = report.is_fenced();
            let detail = if complete {
                warn!("fenced the local database ({reason:?}): {report}");
                format!("fenced the local database ({reason:?}): {report}")
            } else {
                error!("fencing the local database ({reason:?}) is incomplete: {report}");
                format!("fencing the local database ({reason:?}) is incomplete: {report}")
            };
            let _ = reports.send(JobReport {
                kind: "fence",
                complete,
                detail,
            });
        });
    }

    /// Set `synchronous_standby_names` on the local primary, report `SynchronousStandbySet`.
    pub fn set_synchronous_standby(&mut self, target: SyncTarget) {
        let config = self.config.clone();
        let tx = self.tx.clone();
        let what = match target {
            SyncTarget::Standby => "synchronous_standby_names = the standby",
            SyncTarget::Alone => "synchronous_standby_names = ''",
        };
        self.own(
            what.to_string(),
            SYNC_SET_TIMEOUT + JOB_MARGIN,
            async move {
                let result = match config.peer() {
                    None => Err("no peer node in [nodes]: no standby to name".to_string()),
                    Some(peer) => {
                        let standby = crate::db::query::StandbyIdentity {
                            address: peer.address.to_string(),
                            application_name: peer.application_name.clone(),
                        };
                        let params = ConnParams::local(&config.database);
                        crate::db::sync_standby::set_synchronous_standby(
                            &params,
                            &standby,
                            target,
                            SYNC_SET_TIMEOUT,
                        )
                        .await
                        .inspect(|value| info!("synchronous_standby_names = '{value}' (reloaded)"))
                        .map_err(|e| e.to_string())
                    }
                };
                // A failure is logged and journalled by the node, once per distinct error.
                let _ = tx
                    .send(Input::SynchronousStandbySet { target, result })
                    .await;
            },
        );
    }

    /// Wait for the running jobs, each until its own bound at most; abort the rest. Returns
    /// what was cut short, for the journal.
    pub async fn drain(&mut self) -> Vec<String> {
        let mut cut_short = Vec::new();
        while let Some(latest) = self.details.values().map(|r| r.deadline).max() {
            match tokio::time::timeout_at(latest, self.running.join_next_with_id()).await {
                Ok(Some(Ok((id, ())))) => {
                    self.details.remove(&id);
                }
                Ok(Some(Err(e))) => {
                    if let Some(job) = self.details.remove(&e.id()) {
                        cut_short.push(format!("{}: ended abnormally: {e}", job.what));
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    // Every bound passed: what is left did not finish in time.
                    let now = tokio::time::Instant::now();
                    for job in self.details.values().filter(|r| r.deadline <= now) {
                        cut_short.push(format!("{}: still running past its bound", job.what));
                    }
                    self.running.abort_all();
                    break;
                }
            }
        }
        self.details.clear();
        cut_short
    }

    /// How many jobs are running.
    pub fn running(&self) -> usize {
        self.running.len()
    }
}

/// Values of the run-time placeholders: on promotion this node becomes the primary.
fn runtime_vars(config: &Config) -> BTreeMap<&'static str, String> {
    let mut vars = BTreeMap::new();
    vars.insert("primary_host", config.local.address.to_string());
    if let Some(peer) = config.peer() {
        vars.insert("standby_host", peer.address.to_string());
    }
    vars
}

/// The promotion and its proof: [`WriteVerified`] is built only here, right after a write
/// committed on the local database.
async fn promote_and_verify(
    config: &Config,
    signal: &PromoteSignal,
) -> Result<WriteVerified, String> {
    let params = ConnParams::local(&config.database);
    let timeout = config.health.timeout;
    let mut probe = WriteProbe::new(params.clone(), config.database.flavor, timeout);
    if promotes_by_sql(config) {
        let started = Instant::now();
        match signal_promotion(signal, &mut probe, timeout).await {
            Ok(how) => {
                info!("asked {params} to promote on {how}: SELECT pg_promote(wait => false)");
                return verify_write(
                    &mut probe,
                    &params,
                    timeout,
                    Verify {
                        early_until: started + EARLY_POLL_FOR,
                        deadline: started + VERIFY_AFTER_SUCCESS,
                        resignal: true,
                    },
                    "pg_promote(wait => false) signalled the server",
                )
                .await;
            }
            Err(e) => warn!(
                "could not promote through SQL ({e}); running commands.promote instead. \
                 Superuser or `GRANT EXECUTE ON FUNCTION pg_promote(boolean, integer) TO \
                 {user}` lets the daemon promote without forking pg_ctl",
                user = config.database.user
            ),
        }
    }
    let command = PreparedCommand::from_config(config, CommandKind::Promote, &runtime_vars(config))
        .map_err(|e| format!("commands.promote: {e}"))?;
    info!("running {}", command.display_argv());
    let started = Instant::now();
    let argv_text = command.display_argv();
    // The command runs in its own task, so that it is neither killed nor left unreaped when the
    // database turns writable before it returns.
    let mut running = tokio::spawn(async move { exec::run(&command).await });
    // PostgreSQL leaves recovery tens of milliseconds after `pg_ctl promote` signals it, but
    // `pg_ctl` notices only at its next poll, up to 100 ms later: a write that succeeds is the
    // proof the promotion needs, so look while it runs. WarehousePG's gpactivatestandby has
    // catalog work left after the coordinator is writable; its exit is awaited.
    let race = config.database.flavor == Flavor::Postgres;
    let finished = loop {
        let poll = if started.elapsed() < EARLY_POLL_FOR {
            EARLY_POLL
        } else {
            VERIFY_POLL
        };
        tokio::select! {
            joined = &mut running => break joined,
            () = tokio::time::sleep(poll), if race => {
                if let Ok(timeline) = probe.attempt().await {
                    info!(
                        "the database accepts writes {} ms into the promote command; it is left \
                         to finish on its own",
                        started.elapsed().as_millis()
                    );
                    tokio::spawn(async move {
                        match running.await {
                            Ok(Ok(outcome)) if outcome.success() => {}
                            Ok(Ok(outcome)) => warn!(
                                "{argv_text} exited with {:?} after the database was already \
                                 writable: {}",
                                outcome.exit,
                                outcome.output.last_line().unwrap_or("(no output)")
                            ),
                            Ok(Err(e)) => warn!("{argv_text}: {e}"),
                            Err(e) => warn!("{argv_text}: the task ended abnormally: {e}"),
                        }
                    });
                    return Ok(WriteVerified::assertion(timeline));
                }
            }
        }
    };
    let (verify_for, command_result) = match finished {
        Ok(Ok(outcome)) if outcome.success() => (
            VERIFY_AFTER_SUCCESS,
            "the promote command succeeded".to_string(),
        ),
        Ok(Ok(outcome)) => (
            VERIFY_AFTER_FAILURE,
            format!(
                "the promote command exited with {:?}: {}",
                outcome.exit,
                outcome.output.last_line().unwrap_or("(no output)")
            ),
        ),
        Ok(Err(e)) => (VERIFY_AFTER_FAILURE, e.to_string()),
        Err(e) => (
            VERIFY_AFTER_FAILURE,
            format!("the promote command's task ended abnormally: {e}"),
        ),
    };
    // Say at once what the command did: a verification that then fails takes up to
    // `verify_for`, and the log must not be silent meanwhile.
    let took_ms = started.elapsed().as_millis();
    if verify_for == VERIFY_AFTER_SUCCESS {
        info!(
            "{argv_text}: {command_result} after {took_ms} ms; verifying with a write for at most \
             {} s",
            verify_for.as_secs()
        );
    } else {
        warn!(
            "{argv_text}: {command_result} after {took_ms} ms; looking for {} s whether the \
             database accepts a write anyway",
            verify_for.as_secs()
        );
    }
    let now = Instant::now();
    verify_write(
        &mut probe,
        &params,
        timeout,
        Verify {
            early_until: now,
            deadline: now + verify_for,
            resignal: false,
        },
        &format!("{argv_text}: {command_result}"),
    )
    .await
}

/// The default promotion of the postgres flavor (`pg_ctl promote`) is done over SQL instead:
/// `pg_promote(wait => false)` does the same thing in the server, without a fork and an exec.
/// A promote command of one's own (any other argv) is always run as given; so is
/// gpactivatestandby, which does far more than leave recovery.
fn promotes_by_sql(config: &Config) -> bool {
    config.database.flavor == Flavor::Postgres && config.promote_is_default()
}

/// `pg_promote(wait => false)` on the local monitor's held session, while the write probe logs
/// in beside it; on the probe's own connection when no session is held. Says which carried it.
async fn signal_promotion(
    signal: &PromoteSignal,
    probe: &mut WriteProbe,
    timeout: Duration,
) -> Result<&'static str, String> {
    // The monitor may be in the middle of a round (bounded by the probe timeout).
    let (held, connected) = tokio::join!(signal.ask(2 * timeout), probe.connect());
    match held {
        Ok(()) => Ok("the monitoring session"),
        Err(SignalError::NoSession | SignalError::NoAnswer(_)) => {
            if let Err(e) = connected {
                return Err(e.to_string());
            }
            probe
                .signal_promotion()
                .await
                .map(|()| "the write probe's connection")
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// How long and how often [`verify_write`] tries.
struct Verify {
    /// Every [`EARLY_POLL`] until then, then every [`VERIFY_POLL`].
    early_until: Instant,
    /// The last attempt.
    deadline: Instant,
    /// Send `pg_promote` again every [`RESIGNAL_AFTER`] while the server is in recovery.
    resignal: bool,
}

/// Tries the write until `how.deadline`. `done` says what was done to promote, for the error.
async fn verify_write(
    probe: &mut WriteProbe,
    params: &ConnParams,
    timeout: Duration,
    how: Verify,
    done: &str,
) -> Result<WriteVerified, String> {
    let started = Instant::now();
    let mut signalled = started;
    let mut resignals = 0u32;
    loop {
        let last_error = match probe.attempt().await {
            Ok(timeline) => {
                let again = if resignals > 0 {
                    format!(" (signalled {resignals} more time(s))")
                } else {
                    String::new()
                };
                info!(
                    "the database accepts writes {} ms after: {done}{again}",
                    started.elapsed().as_millis()
                );
                return Ok(WriteVerified::assertion(timeline));
            }
            Err(e) => {
                if how.resignal
                    && matches!(e, QueryError::InRecovery { .. })
                    && signalled.elapsed() >= RESIGNAL_AFTER
                {
                    if resignals == 0 {
                        info!(
                            "still in recovery {} ms after the promote signal: signalling again",
                            started.elapsed().as_millis()
                        );
                    }
                    resignals += 1;
                    signalled = Instant::now();
                    // Its failure is the next attempt's to report.
                    let _ = probe.signal_promotion().await;
                }
                e.to_string()
            }
        };
        let now = Instant::now();
        if now >= how.deadline {
            let state = match observe(params, timeout).await {
                Ok(facts) if facts.in_recovery => "it is still in recovery (a standby)".to_string(),
                Ok(_) => "it is out of recovery but refuses writes".to_string(),
                Err(e) => format!("it does not answer a query: {e}"),
            };
            return Err(format!(
                "{done}, and the database did not accept a write within {} s ({last_error}); \
                 {state}",
                how.deadline.saturating_duration_since(started).as_secs()
            ));
        }
        let poll = if now < how.early_until {
            EARLY_POLL
        } else {
            VERIFY_POLL
        };
        tokio::time::sleep(poll).await;
    }
}
