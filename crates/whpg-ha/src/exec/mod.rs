//! Running the configured commands (promote, fence, stop, rejoin): never through a shell, always as
//! an argv list, as the database OS user, with an explicit environment and a timeout.
//!
//! What this module owns:
//! - [`PreparedCommand`]: an argv template from `[commands.*]` expanded with
//!   [`Config::template_vars`](crate::config::Config::template_vars) (templating itself lives in
//!   `config::template`), plus who runs it, its environment, its timeout and its output cap.
//! - [`run`]: spawns it in its own process group, captures the tail of stdout and stderr, and on
//!   timeout sends SIGTERM to the whole group, then SIGKILL after a grace period.
//! - [`Environment`]: the complete environment of a command; nothing of the daemon's own environment
//!   leaks in. For WarehousePG it carries what `greenplum_path.sh` would set (see [`environment`]),
//!   because we never run a shell to source it.
//!
//! What it must not do: decide anything. Whether an exit code means success is the caller's
//! business (`gpactivatestandby` is verified by a real write, not by its exit code).

mod caps;
pub mod environment;
mod runner;
mod user;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::config::{CommandKind, CommandSpec, Config, Database};

pub use environment::Environment;
pub use runner::run;
pub use user::{lookup_user, UserInfo};

/// How much of stdout and of stderr is kept (the tail: the end of a failing tool's output is where
/// its error is).
pub const DEFAULT_OUTPUT_CAP: usize = 64 * 1024;

/// Time between SIGTERM and SIGKILL to the process group of a command that timed out.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(2);

/// A command ready to run: argv expanded, user, environment and limits decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedCommand {
    key: String,
    argv: Vec<String>,
    timeout: Duration,
    kill_grace: Duration,
    run_as: Option<String>,
    env: Environment,
    output_cap: usize,
}

impl PreparedCommand {
    /// A command run as the daemon's own user with [`Environment::base`]. `key` names it in errors and
    /// logs (e.g. `commands.fence`).
    pub fn new(key: impl Into<String>, argv: Vec<String>, timeout: Duration) -> Self {
        PreparedCommand {
            key: key.into(),
            argv,
            timeout,
            kill_grace: DEFAULT_KILL_GRACE,
            run_as: None,
            env: Environment::base(),
            output_cap: DEFAULT_OUTPUT_CAP,
        }
    }

    /// `[commands.<kind>]` of `config`, expanded with the file's placeholders plus `runtime` (values
    /// known only at run time: `primary_host`, `standby_host`), to run as `database.os_user` in the
    /// flavor's environment.
    pub fn from_config(
        config: &Config,
        kind: CommandKind,
        runtime: &BTreeMap<&str, String>,
    ) -> Result<Self, ExecError> {
        let spec = match kind {
            CommandKind::Promote => &config.commands.promote,
            CommandKind::Fence => &config.commands.fence,
            CommandKind::Stop => &config.commands.stop,
            CommandKind::Rejoin => &config.commands.rejoin,
            CommandKind::Start => &config.commands.start,
        };
        let mut vars: BTreeMap<&str, String> = config.template_vars().into_iter().collect();
        vars.extend(runtime.iter().map(|(name, value)| (*name, value.clone())));
        Self::from_spec(
            format!("commands.{}", kind.name()),
            spec,
            &config.database,
            &vars,
        )
    }

    /// Expands `spec` with `vars`; the command runs as `db.os_user` in [`Environment::for_database`].
    pub fn from_spec(
        key: impl Into<String>,
        spec: &CommandSpec,
        db: &Database,
        vars: &BTreeMap<&str, String>,
    ) -> Result<Self, ExecError> {
        let key = key.into();
        let argv = spec
            .expand(|name| vars.get(name).cloned())
            .map_err(|message| ExecError::Template {
                key: key.clone(),
                message,
            })?;
        if argv.is_empty() {
            return Err(ExecError::EmptyArgv { key });
        }
        let env = Environment::for_database(db)?;
        Ok(PreparedCommand {
            key,
            argv,
            timeout: spec.timeout,
            kill_grace: DEFAULT_KILL_GRACE,
            run_as: Some(db.os_user.clone()),
            env,
            output_cap: DEFAULT_OUTPUT_CAP,
        })
    }

    /// Runs the command as OS user `user` (switching from root; a no-op when the daemon is that user).
    pub fn run_as(mut self, user: impl Into<String>) -> Self {
        self.run_as = Some(user.into());
        self
    }

    /// Replaces the whole environment (HOME, USER and LOGNAME are still set from the user at run time).
    pub fn with_environment(mut self, env: Environment) -> Self {
        self.env = env;
        self
    }

    /// Sets one environment variable.
    pub fn with_env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.set(name, value);
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn with_kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    /// Bytes kept of stdout and of stderr each (the tail).
    pub fn with_output_cap(mut self, cap: usize) -> Self {
        self.output_cap = cap;
        self
    }

    /// The configuration key the command comes from, e.g. `commands.promote`.
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn kill_grace(&self) -> Duration {
        self.kill_grace
    }

    /// The OS user the command runs as; `None` = the daemon's own user.
    pub fn user(&self) -> Option<&str> {
        self.run_as.as_deref()
    }

    pub fn environment(&self) -> &Environment {
        &self.env
    }

    pub fn output_cap(&self) -> usize {
        self.output_cap
    }

    /// The argv as one readable line (for logs only; never executed as such).
    /// The program this command would run, resolved as [`run`] will (a path, or the command's own
    /// `PATH`): lets the daemon refuse to start with a missing promote command rather than find
    /// out during a failover.
    pub fn check_program(&self) -> Result<std::path::PathBuf, ExecError> {
        let program = self.argv().first().map(String::as_str).unwrap_or("");
        runner::resolve_program(self.key(), program, &self.environment().path_dirs())
    }

    pub fn display_argv(&self) -> String {
        display_argv(&self.argv)
    }
}

fn display_argv(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_graphic() && c != '\'') {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The tails of a command's stdout and stderr, and how much it wrote in total.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CapturedOutput {
    /// The last bytes of stdout (at most the cap), lossily decoded.
    pub stdout: String,
    pub stderr: String,
    /// Bytes written to stdout in total; more than `stdout.len()` means the head was dropped.
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
}

impl CapturedOutput {
    /// Whether some output was dropped to respect the cap.
    pub fn truncated(&self) -> bool {
        self.stdout_bytes > self.stdout.len() as u64 || self.stderr_bytes > self.stderr.len() as u64
    }

    /// The last non-empty line of stderr, else of stdout: the line to put in a one-line log message.
    pub fn last_line(&self) -> Option<&str> {
        [&self.stderr, &self.stdout]
            .into_iter()
            .find_map(|s| s.lines().rev().map(str::trim).find(|line| !line.is_empty()))
    }
}

/// How a command that ran to its end finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal (not by us: our kills are [`ExecError::TimedOut`]).
    Signal(i32),
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exit code {code}"),
            Exit::Signal(sig) => write!(f, "killed by signal {sig}"),
        }
    }
}

/// A command that ran to its end, successfully or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandOutcome {
    pub key: String,
    pub argv: Vec<String>,
    pub exit: Exit,
    pub duration: Duration,
    pub output: CapturedOutput,
}

impl CommandOutcome {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.exit == Exit::Code(0)
    }

    /// The exit code, unless a signal ended it.
    pub fn code(&self) -> Option<i32> {
        match self.exit {
            Exit::Code(code) => Some(code),
            Exit::Signal(_) => None,
        }
    }
}

impl fmt::Display for CommandOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {} after {:.3} s",
            self.key,
            display_argv(&self.argv),
            self.exit,
            self.duration.as_secs_f64()
        )?;
        if let Some(line) = self.output.last_line() {
            write!(f, ": {line}")?;
        }
        Ok(())
    }
}

/// Why a command could not be run to its end.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{key}.argv: {message}")]
    Template { key: String, message: String },

    #[error("{key}.argv is empty: give at least the program to run")]
    EmptyArgv { key: String },

    #[error(
        "{key}.argv[0]: program `{program}` not found ({searched}); install it or write its full path"
    )]
    NotFound {
        key: String,
        program: String,
        searched: String,
    },

    #[error("{key}.argv[0]: `{program}` is not an executable file; check the path and its mode")]
    NotExecutable { key: String, program: String },

    #[error("OS user `{user}` does not exist; create it or fix database.os_user")]
    UnknownUser { user: String },

    #[error("cannot look up OS user `{user}`: {message}")]
    UserLookup { user: String, message: String },

    #[error(
        "{key}: cannot run as `{user}`: the daemon runs as uid {current_uid}, not root; run the daemon as root or as `{user}`"
    )]
    CannotSwitchUser {
        key: String,
        user: String,
        current_uid: u32,
    },

    #[error("{key}: the environment cannot be built: {message}")]
    Environment { key: String, message: String },

    #[error("{key}: cannot start `{program}`: {source}")]
    Spawn {
        key: String,
        program: String,
        source: std::io::Error,
    },

    #[error("{key}: waiting for `{program}` failed: {source}")]
    Wait {
        key: String,
        program: String,
        source: std::io::Error,
    },

    #[error(
        "{key}: `{program}` did not finish within {timeout:?}; its process group was killed{}",
        .output.last_line().map(|l| format!(" (last output: {l})")).unwrap_or_default()
    )]
    TimedOut {
        key: String,
        program: String,
        timeout: Duration,
        /// What it wrote before it was killed.
        output: Box<CapturedOutput>,
    },
}

impl ExecError {
    /// The output captured before the failure, if the command got to run.
    pub fn output(&self) -> Option<&CapturedOutput> {
        match self {
            ExecError::TimedOut { output, .. } => Some(output),
            _ => None,
        }
    }
}
