//! The database-side steps of a planned switchover and of a rejoin, shared by the daemon (which
//! runs them for the CLI through its API) and by the CLI itself (`whpg-ha rejoin` on the node
//! being rebuilt).
//!
//! Every step is a configured command run as the database OS user with its timeout (no shell),
//! or a plain file-system operation. Nothing here deletes anything: an old data directory is
//! renamed aside, never removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::config::{CommandKind, CommandSpec, Config, Flavor};
use crate::db::postmaster::PID_FILE;
use crate::db::{observe, ConnParams, Lsn, PostmasterWatch};
use crate::exec::{self, lookup_user, PreparedCommand};
use crate::fence::fence_database;

/// Bound on `pg_controldata` (it reads one file).
const CONTROLDATA_TIMEOUT: Duration = Duration::from_secs(30);

/// Run `[commands.<kind>]` with the run-time placeholders `runtime`; `Ok` with a one-line summary
/// when it exits 0, `Err` saying what it printed last otherwise.
pub async fn run_configured(
    config: &Config,
    kind: CommandKind,
    runtime: &BTreeMap<&str, String>,
) -> Result<String, String> {
    let command = PreparedCommand::from_config(config, kind, runtime)
        .map_err(|e| format!("commands.{}: {e}", kind.name()))?;
    match exec::run(&command).await {
        Ok(outcome) if outcome.success() => Ok(outcome.to_string()),
        Ok(outcome) => Err(outcome.to_string()),
        Err(e) => Err(format!("{}: {e}", command.display_argv())),
    }
}

/// Whether a live postmaster serves the local data directory.
pub fn postmaster_alive(data_dir: &Path) -> bool {
    PostmasterWatch::open(data_dir).is_ok_and(|w| !w.has_exited())
}

/// Stop the local database cleanly (`commands.stop`); it must be stopped afterwards. `Ok` says
/// whether it was running.
pub async fn stop_cleanly(config: &Config) -> Result<String, String> {
    let data_dir = &config.database.data_directory;
    if !postmaster_alive(data_dir) {
        return Ok("the database was not running".into());
    }
    let summary = run_configured(config, CommandKind::Stop, &BTreeMap::new()).await?;
    if postmaster_alive(data_dir) {
        return Err(format!("{summary}, but the postmaster still runs"));
    }
    Ok(summary)
}

/// Make sure nothing of the local data directory runs: `commands.stop`, and when that fails
/// or something is left, `commands.fence` with the fence's clean-up.
pub async fn ensure_stopped(config: &Config) -> Result<String, String> {
    let data_dir = &config.database.data_directory;
    let stopped = stop_cleanly(config).await;
    let stale_pid_file = data_dir.join(PID_FILE).exists();
    match stopped {
        Ok(summary) if !stale_pid_file && !postmaster_alive(data_dir) => Ok(summary),
        first => {
            let fence = PreparedCommand::from_config(config, CommandKind::Fence, &BTreeMap::new())
                .map_err(|e| format!("commands.fence: {e}"))?;
            let report = fence_database(&config.database, &fence).await;
            let before = match first {
                Ok(summary) => summary,
                Err(e) => format!("clean stop failed ({e})"),
            };
            if report.is_fenced() && !postmaster_alive(data_dir) {
                Ok(format!("{before}; fenced: {report}"))
            } else {
                Err(format!("{before}; fencing is incomplete: {report}"))
            }
        }
    }
}

/// What `pg_controldata` says about a stopped cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlData {
    /// "Database cluster state".
    pub state: String,
    /// "Latest checkpoint location": after a clean stop, the shutdown checkpoint.
    pub checkpoint: Lsn,
}

/// Read the two lines that matter from `pg_controldata` output (English labels: the command runs
/// with the flavor's environment, whose locale is C).
pub fn parse_controldata(text: &str) -> Result<ControlData, String> {
    let value = |label: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(label))
            .and_then(|rest| rest.trim_start().strip_prefix(':'))
            .map(|v| v.trim().to_string())
    };
    let state = value("Database cluster state")
        .ok_or("pg_controldata printed no \"Database cluster state\"")?;
    let checkpoint = value("Latest checkpoint location")
        .ok_or("pg_controldata printed no \"Latest checkpoint location\"")?;
    let checkpoint = checkpoint
        .parse()
        .map_err(|e| format!("pg_controldata checkpoint location {checkpoint:?}: {e}"))?;
    Ok(ControlData { state, checkpoint })
}

/// The control file of the local (stopped) cluster, read by `pg_controldata` as the OS user.
pub async fn control_data(config: &Config) -> Result<ControlData, String> {
    let program = match &config.database.bin_dir {
        Some(dir) => dir.join("pg_controldata").display().to_string(),
        None => "pg_controldata".to_string(),
    };
    let spec = CommandSpec {
        argv: vec![
            program,
            config.database.data_directory.display().to_string(),
        ],
        timeout: CONTROLDATA_TIMEOUT,
    };
    let command =
        PreparedCommand::from_spec("pg_controldata", &spec, &config.database, &BTreeMap::new())
            .map_err(|e| e.to_string())?
            .with_env("LC_ALL", "C");
    let outcome = exec::run(&command).await.map_err(|e| e.to_string())?;
    if !outcome.success() {
        return Err(outcome.to_string());
    }
    parse_controldata(&outcome.output.stdout)
}

/// Why there is no shutdown checkpoint to hand over.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The cluster is not cleanly shut down: running ("in production"), crashed (also "in
    /// production"), a standby ("in archive recovery", "shut down in recovery"), or stopping.
    #[error(
        "the cluster state is {state:?}, not \"shut down\": it is running or did not stop \
         cleanly, so its last checkpoint does not cover every commit"
    )]
    NotShutDown { state: String },
    /// `pg_controldata` could not be run or its output not read.
    #[error("pg_controldata: {0}")]
    Unreadable(String),
}

/// The checkpoint of `control` when it is a clean shutdown's: every commit is before it.
pub fn clean_shutdown_checkpoint(control: &ControlData) -> Result<Lsn, CheckpointError> {
    if control.state != "shut down" {
        return Err(CheckpointError::NotShutDown {
            state: control.state.clone(),
        });
    }
    Ok(control.checkpoint)
}

/// The shutdown checkpoint of a cleanly stopped cluster: every commit is before it.
pub async fn shutdown_checkpoint(config: &Config) -> Result<Lsn, CheckpointError> {
    let control = control_data(config)
        .await
        .map_err(CheckpointError::Unreadable)?;
    clean_shutdown_checkpoint(&control)
}

/// Wait (bounded) until the local standby has received WAL up to `min_lsn`.
pub async fn wait_received(config: &Config, min_lsn: Lsn, bound: Duration) -> Result<Lsn, String> {
    let params = ConnParams::local(&config.database);
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let last = match observe(&params, config.health.timeout).await {
            Ok(facts) if !facts.in_recovery => {
                return Err("the local database is not a standby (not in recovery)".into())
            }
            Ok(facts) => match facts.receive_lsn {
                Some(lsn) if lsn >= min_lsn => return Ok(lsn),
                Some(lsn) => format!("received up to {lsn}"),
                None => "nothing received yet".to_string(),
            },
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "the standby did not receive WAL up to {min_lsn} within {} s ({last})",
                bound.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `<datadir>.whpg-ha-<UTC timestamp>`: where an old data directory is moved.
pub fn aside_path(data_dir: &Path, at: SystemTime) -> PathBuf {
    let stamp = utc_stamp(at);
    let mut name = data_dir.as_os_str().to_owned();
    name.push(format!(".whpg-ha-{stamp}"));
    PathBuf::from(name)
}

/// `YYYYMMDDTHHMMSSZ` in UTC.
pub fn utc_stamp(at: SystemTime) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Rename the data directory aside (never delete it) and, for PostgreSQL, leave an empty one in
/// its place, owned by the OS user with mode 0700, for the base backup. On WarehousePG nothing is
/// left in its place: `gpinitstandby -s` refuses a standby data directory that exists ("coordinator
/// data directory exists"); its own base backup creates it. Returns where the old one went.
pub fn move_aside(config: &Config) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let data_dir = &config.database.data_directory;
    let aside = aside_path(data_dir, SystemTime::now());
    if aside.exists() {
        return Err(format!("{} already exists", aside.display()));
    }
    match std::fs::rename(data_dir, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(format!(
                "cannot move {} to {}: {e}",
                data_dir.display(),
                aside.display()
            ))
        }
    }
    if config.database.flavor == Flavor::WarehousePg {
        return Ok(aside);
    }
    let user = lookup_user(&config.database.os_user).map_err(|e| e.to_string())?;
    std::fs::create_dir(data_dir)
        .and_then(|()| std::os::unix::fs::chown(data_dir, Some(user.uid), Some(user.gid)))
        .and_then(|()| std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| {
            format!(
                "data directory moved to {}; cannot create an empty {}: {e}",
                aside.display(),
                data_dir.display()
            )
        })?;
    Ok(aside)
}

/// The base backup of a PostgreSQL standby from `primary` (`commands.rejoin` run here), then
/// `commands.start`.
pub async fn base_backup(config: &Config, primary: &str) -> Result<String, String> {
    if config.database.flavor != Flavor::Postgres {
        return Err("on WarehousePG the active coordinator runs gpinitstandby".into());
    }
    let mut vars = BTreeMap::new();
    vars.insert("primary_host", primary.to_string());
    vars.insert("standby_host", config.local.address.to_string());
    run_configured(config, CommandKind::Rejoin, &vars).await
}

/// The upper bound of `gpinitstandby -r -a` (it stops the old standby and removes its directory).
const REMOVE_STANDBY_TIMEOUT: Duration = Duration::from_secs(600);

/// What `gpinitstandby -r` prints when the catalog has no standby entry (gpMgmt's messages are
/// not translated): "Request made to remove warm coordinator standby, but no standby located."
/// and "Error removing standby coordinator: no standby configured", exit 2.
const NO_STANDBY_MARKERS: [&str; 2] = ["no standby configured", "no standby located"];

/// WarehousePG, on the active coordinator: rebuild the standby on `vars["standby_host"]`.
///
/// First `gpinitstandby -r -a` removes a stale standby entry: after a failed standby (as opposed to
/// a failover, whose promotion rewrites the catalog) `gp_segment_configuration` still lists it,
/// and `gpinitstandby -s` refuses with "standby coordinator already configured". It is run always,
/// rather than after a catalog query, and "no standby configured" counts as done: one tool decides,
/// with its own view of the catalog. Any other failure stops here, before `-s`.
/// Then `commands.rejoin` (`gpinitstandby -s <host> -a`).
///
/// `-r` also stops the listed standby and removes its data directory on that host: this runs only
/// after the node being rebuilt has moved its data directory aside (`whpg-ha rejoin` and
/// `switchover --rejoin` do that first), so what it removes is nothing or an empty path.
///
/// A `commands.rejoin` whose program is not `gpinitstandby` (a site's wrapper) is run alone: the
/// wrapper is then responsible for the stale entry.
pub async fn init_standby(
    config: &Config,
    vars: &BTreeMap<&str, String>,
) -> Result<String, String> {
    let rejoin = PreparedCommand::from_config(config, CommandKind::Rejoin, vars)
        .map_err(|e| format!("commands.rejoin: {e}"))?;
    let removed = match remove_standby_command(config, &rejoin)? {
        Some(remove) => {
            let summary = remove_stale_standby(&remove).await?;
            format!("{summary}; ")
        }
        None => String::new(),
    };
    let created = match exec::run(&rejoin).await {
        Ok(outcome) if outcome.success() => outcome.to_string(),
        Ok(outcome) => return Err(format!("{removed}{outcome}")),
        Err(e) => return Err(format!("{removed}{}: {e}", rejoin.display_argv())),
    };
    Ok(format!("{removed}{created}"))
}

/// `<the rejoin's gpinitstandby> -r -a`, when the rejoin command runs gpinitstandby.
pub fn remove_standby_command(
    config: &Config,
    rejoin: &PreparedCommand,
) -> Result<Option<PreparedCommand>, String> {
    let Some(program) = rejoin.argv().first() else {
        return Ok(None);
    };
    if Path::new(program).file_name().and_then(|n| n.to_str()) != Some("gpinitstandby") {
        return Ok(None);
    }
    let spec = CommandSpec {
        argv: vec![program.clone(), "-r".into(), "-a".into()],
        timeout: rejoin.timeout().min(REMOVE_STANDBY_TIMEOUT),
    };
    PreparedCommand::from_spec(
        "commands.rejoin (gpinitstandby -r)",
        &spec,
        &config.database,
        &BTreeMap::new(),
    )
    .map(Some)
    .map_err(|e| e.to_string())
}

async fn remove_stale_standby(remove: &PreparedCommand) -> Result<String, String> {
    match exec::run(remove).await {
        Ok(outcome) if outcome.success() => Ok(format!("stale standby entry removed ({outcome})")),
        Ok(outcome) if no_standby_configured(&outcome.output) => {
            Ok("no standby entry to remove".into())
        }
        Ok(outcome) => Err(format!(
            "removing the stale standby entry failed, so gpinitstandby -s was not run: {outcome}"
        )),
        Err(e) => Err(format!("{}: {e}", remove.display_argv())),
    }
}

fn no_standby_configured(output: &exec::CapturedOutput) -> bool {
    [&output.stdout, &output.stderr]
        .iter()
        .any(|text| NO_STANDBY_MARKERS.iter().any(|m| text.contains(m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::testing::TestConfig;

    #[test]
    fn the_stale_standby_is_removed_with_the_rejoins_own_gpinitstandby() {
        let config = TestConfig::warehousepg().parse("cdw");
        let mut vars = BTreeMap::new();
        vars.insert("standby_host", "192.168.10.12".to_string());
        let rejoin = PreparedCommand::from_config(&config, CommandKind::Rejoin, &vars).unwrap();
        let remove = remove_standby_command(&config, &rejoin)
            .unwrap()
            .expect("the default rejoin runs gpinitstandby");
        assert_eq!(
            remove.argv(),
            ["/usr/local/greenplum-db/bin/gpinitstandby", "-r", "-a"]
        );
        assert_eq!(remove.timeout(), REMOVE_STANDBY_TIMEOUT);
        assert_eq!(remove.user(), Some("gpadmin"));
        assert_eq!(
            remove.environment().get("GPHOME"),
            Some("/usr/local/greenplum-db")
        );
        // A site's wrapper is run alone.
        let wrapped = TestConfig::warehousepg()
            .command(
                "rejoin",
                &["/opt/site/rebuild-standby", "{standby_host}"],
                None,
            )
            .parse("cdw");
        let rejoin = PreparedCommand::from_config(&wrapped, CommandKind::Rejoin, &vars).unwrap();
        assert!(remove_standby_command(&wrapped, &rejoin).unwrap().is_none());
    }

    #[test]
    fn no_standby_configured_is_recognised_in_either_stream() {
        let out = |stdout: &str, stderr: &str| exec::CapturedOutput {
            stdout: stdout.into(),
            stderr: stderr.into(),
            ..Default::default()
        };
        assert!(no_standby_configured(&out(
            "",
            "20261201:10:00:00:001 gpinitstandby:cdw:gpadmin-[ERROR]:-Error removing standby coordinator: no standby configured"
        )));
        assert!(no_standby_configured(&out(
            "[ERROR]:-Request made to remove warm coordinator standby, but no standby located.",
            ""
        )));
        assert!(!no_standby_configured(&out(
            "",
            "[ERROR]:-Failed to stop postmaster process on standby coordinator"
        )));
    }

    #[test]
    fn reads_state_and_checkpoint_from_pg_controldata() {
        let text = "pg_control version number:            1300\n\
                    Database cluster state:               shut down\n\
                    Latest checkpoint location:           0/3000060\n\
                    Latest checkpoint's REDO location:    0/3000060\n";
        let c = parse_controldata(text).unwrap();
        assert_eq!(c.state, "shut down");
        assert_eq!(c.checkpoint, "0/3000060".parse().unwrap());
        assert!(parse_controldata("nothing").is_err());
    }

    #[test]
    fn only_a_clean_shutdown_gives_a_checkpoint() {
        let at = |state: &str| ControlData {
            state: state.into(),
            checkpoint: "0/3000060".parse().unwrap(),
        };
        assert_eq!(
            clean_shutdown_checkpoint(&at("shut down")),
            Ok("0/3000060".parse().unwrap())
        );
        for state in [
            "in production",
            "in archive recovery",
            "shut down in recovery",
            "shutting down",
        ] {
            let refused = clean_shutdown_checkpoint(&at(state)).unwrap_err();
            assert_eq!(
                refused,
                CheckpointError::NotShutDown {
                    state: state.into()
                }
            );
            let text = refused.to_string();
            assert!(
                text.contains(&format!("{state:?}, not \"shut down\"")),
                "{text}"
            );
        }
    }

    #[test]
    fn the_aside_name_carries_a_utc_timestamp() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_143_105);
        assert_eq!(utc_stamp(at), "20251126T074505Z");
        assert_eq!(
            aside_path(Path::new("/data/coordinator/gpseg-1"), at),
            PathBuf::from("/data/coordinator/gpseg-1.whpg-ha-20251126T074505Z")
        );
        assert_eq!(utc_stamp(SystemTime::UNIX_EPOCH), "19700101T000000Z");
    }
}
