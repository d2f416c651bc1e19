//! Long-running actions the policy asks for (promotion, fencing), run as separate tasks that
//! report back, so the VRRP loop keeps advertising while a command runs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{error, info, warn};
use whpg_policy::{FenceReason, Input};

use crate::config::{CommandKind, Config};
use crate::db::{observe, write_check, ConnParams};
use crate::exec::{self, PreparedCommand};
use crate::fence::fence_database;

/// After a promotion command that succeeded, how long the database may take to accept a write
/// (WarehousePG may still be "waiting for distributed transaction recovery").
const VERIFY_AFTER_SUCCESS: Duration = Duration::from_secs(30);
/// After one that failed or hung: its exit code is not trusted (gpactivatestandby has reported
/// failure after promoting), so look briefly before calling it failed.
const VERIFY_AFTER_FAILURE: Duration = Duration::from_secs(2);
const VERIFY_POLL: Duration = Duration::from_millis(50);

pub struct Jobs {
    config: Config,
    tx: mpsc::Sender<Input>,
    reports: mpsc::UnboundedSender<JobReport>,
}

/// What a job wants in the journal once it is done (the loop owns the journal).
#[derive(Debug, Clone)]
pub struct JobReport {
    pub kind: &'static str,
    /// True when the job did all it had to.
    pub complete: bool,
    pub detail: String,
}

impl Jobs {
    pub fn new(
        config: Config,
        tx: mpsc::Sender<Input>,
        reports: mpsc::UnboundedSender<JobReport>,
    ) -> Jobs {
        Jobs {
            config,
            tx,
            reports,
        }
    }

    /// Run the promotion command, verify with a real write, report `PromotionFinished`.
    pub fn promote(&self, attempt: u32) {
        let config = self.config.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = promote_and_verify(&config).await;
            match &result {
                Ok(timeline) => info!(
                    "promotion attempt {attempt}: writable after {} ms (timeline {})",
                    started.elapsed().as_millis(),
                    timeline.map_or("?".into(), |t| t.to_string())
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
    pub fn fence(&self, reason: FenceReason) {
        let config = self.config.clone();
        let reports = self.reports.clone();
        tokio::spawn(async move {
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

async fn promote_and_verify(config: &Config) -> Result<Option<u32>, String> {
    let command = PreparedCommand::from_config(config, CommandKind::Promote, &runtime_vars(config))
        .map_err(|e| format!("commands.promote: {e}"))?;
    info!("running {}", command.display_argv());
    let (verify_for, command_result) = match exec::run(&command).await {
        Ok(outcome) if outcome.success() => (
            VERIFY_AFTER_SUCCESS,
            "the promote command succeeded".to_string(),
        ),
        Ok(outcome) => (
            VERIFY_AFTER_FAILURE,
            format!(
                "the promote command exited with {:?}: {}",
                outcome.exit,
                outcome.output.last_line().unwrap_or("(no output)")
            ),
        ),
        Err(e) => (VERIFY_AFTER_FAILURE, e.to_string()),
    };
    let params = ConnParams::local(&config.database);
    let timeout = config.health.timeout;
    let deadline = Instant::now() + verify_for;
    loop {
        let last_error = match write_check(&params, config.database.flavor, timeout).await {
            Ok(()) => {
                let timeline = observe(&params, timeout).await.ok().map(|f| f.timeline);
                return Ok(timeline);
            }
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "{command_result}, and the database did not accept a write within {} s: {last_error}",
                verify_for.as_secs()
            ));
        }
        tokio::time::sleep(VERIFY_POLL).await;
    }
}
