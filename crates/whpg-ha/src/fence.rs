//! Fencing: make sure the local database of one data directory no longer serves, and leave nothing
//! behind that would stop it from being started again.
//!
//! [`fence_database`] runs the configured fence command (`pg_ctl stop -m immediate`) with its
//! timeout, then SIGKILLs whatever of **that data directory** survived, then removes the stale files
//! a killed postmaster leaves (`.s.PGSQL.<port>` and its `.lock`, WarehousePG's IC proxy sockets,
//! `postmaster.pid`). Every step is recorded in a [`FenceReport`] for the log and the journal.
//!
//! How processes are identified (and why no command line is pattern-matched, unlike the seed's
//! `pkill -f`, which once killed its own ssh session): a process belongs to the data directory if
//! - it is the PID in `postmaster.pid`, its name is `postgres` and its working directory (the
//!   postmaster `chdir`s into its data directory) or its `-D` argument is the data directory, or
//! - it descends from such a postmaster (`/proc/<pid>/stat` parent links), or
//! - it is a `postgres` process whose working directory is the data directory (backends orphaned by
//!   a `kill -9` of their postmaster, or a postmaster whose `postmaster.pid` is gone).
//!
//! Identities are (pid, start time), re-checked right before each signal so a recycled PID is never
//! hit. The postmaster is killed before its children: killed children would make a live postmaster
//! start crash recovery and fork new ones.
//!
//! Files are removed only when no live process owns them, and only these exact names; the data
//! directory and everything in it other than a stale `postmaster.pid` are never touched.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{Database, DbEndpoint};
use crate::exec::{self, ExecError, Exit, PreparedCommand};

/// Where WarehousePG (and PostgreSQL built with its defaults) puts its sockets, and where the IC
/// proxy always puts its own.
const TMP: &str = "/tmp";
/// Rounds of "find, SIGKILL, wait": a second round catches anything forked during the first.
const KILL_ROUNDS: usize = 3;
/// How long one round waits for killed processes to disappear.
const KILL_WAIT: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(20);

/// How the fencing ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FenceOutcome {
    /// No process of the data directory ran and no stale file was found.
    NothingToDo,
    /// No process ran, but stale socket, lock or pid files were removed.
    CleanedUp,
    /// The database was running and is now stopped; its stale files are gone.
    Stopped,
    /// Something may still serve or block a restart: see `survivors` and `errors`.
    Incomplete,
}

impl FenceOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            FenceOutcome::NothingToDo => "nothing to do",
            FenceOutcome::CleanedUp => "cleaned up",
            FenceOutcome::Stopped => "stopped",
            FenceOutcome::Incomplete => "incomplete",
        }
    }
}

/// Why a process counts as one of the data directory's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessRole {
    /// The PID of `postmaster.pid`, verified.
    Postmaster,
    /// A `postgres` process working in the data directory whose parent is not one: a postmaster
    /// without a pid file, or a backend orphaned by a killed postmaster.
    Root,
    /// A descendant of one of the above.
    Descendant,
}

/// A process of the data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundProcess {
    pub pid: i32,
    pub ppid: i32,
    /// The kernel's process name (`postgres`, or e.g. `sh` for an archive_command child).
    pub comm: String,
    /// Start time in clock ticks since boot: with the pid, the process's identity.
    pub start_time: u64,
    pub role: ProcessRole,
}

/// What the fence command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum CommandStep {
    /// It ran to its end (a non-zero exit is normal for a server that was not running).
    Finished {
        exit: Exit,
        duration: Duration,
        last_line: Option<String>,
    },
    /// It was killed at its timeout; the processes were then killed by PID.
    TimedOut {
        timeout: Duration,
        last_line: Option<String>,
    },
    /// It could not run (missing program, unknown user...).
    NotRun { error: String },
}

/// A file left in place, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeptFile {
    pub path: PathBuf,
    pub reason: String,
}

/// Everything [`fence_database`] saw and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FenceReport {
    pub data_directory: PathBuf,
    pub port: u16,
    pub outcome: FenceOutcome,
    /// The PID recorded in `postmaster.pid` when fencing began, if the file was there.
    pub pid_file_pid: Option<i32>,
    /// Processes of the data directory found before the fence command ran.
    pub found: Vec<FoundProcess>,
    pub command: CommandStep,
    /// Processes that outlived the fence command and were sent SIGKILL.
    pub killed: Vec<FoundProcess>,
    /// Processes still alive at the end (should be empty).
    pub survivors: Vec<FoundProcess>,
    /// Socket directories checked for stale files.
    pub socket_dirs: Vec<PathBuf>,
    pub removed: Vec<PathBuf>,
    /// Candidate files left in place because something owns them.
    pub kept: Vec<KeptFile>,
    /// Failures that leave the fencing uncertain.
    pub errors: Vec<String>,
    pub duration: Duration,
}

impl FenceReport {
    /// True unless something may still serve or block a restart.
    pub fn is_fenced(&self) -> bool {
        self.outcome != FenceOutcome::Incomplete
    }
}

impl fmt::Display for FenceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fence of {} (port {}): {}; ",
            self.data_directory.display(),
            self.port,
            self.outcome.as_str()
        )?;
        match &self.command {
            CommandStep::Finished { exit, .. } => write!(f, "command {exit}")?,
            CommandStep::TimedOut { timeout, .. } => {
                write!(f, "command timed out after {timeout:?}")?
            }
            CommandStep::NotRun { error } => write!(f, "command not run ({error})")?,
        }
        let pids = |list: &[FoundProcess]| {
            list.iter()
                .map(|p| p.pid.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        write!(
            f,
            "; found {} process(es) [{}], killed {} [{}]",
            self.found.len(),
            pids(&self.found),
            self.killed.len(),
            pids(&self.killed)
        )?;
        if !self.survivors.is_empty() {
            write!(f, ", SURVIVORS [{}]", pids(&self.survivors))?;
        }
        write!(f, "; removed {} file(s)", self.removed.len())?;
        for path in &self.removed {
            write!(f, " {}", path.display())?;
        }
        for kept in &self.kept {
            write!(f, "; kept {} ({})", kept.path.display(), kept.reason)?;
        }
        for error in &self.errors {
            write!(f, "; error: {error}")?;
        }
        write!(f, "; took {:.3} s", self.duration.as_secs_f64())
    }
}

/// Stops the database of `db.data_directory` for good: `fence_cmd` first, then SIGKILL by PID for
/// what survives, then removal of stale files. Never fails: problems are in the report (`outcome`
/// [`FenceOutcome::Incomplete`], `errors`). Bounded by the command's timeout plus a few seconds.
pub async fn fence_database(db: &Database, fence_cmd: &PreparedCommand) -> FenceReport {
    let started = Instant::now();
    let data_dir =
        std::fs::canonicalize(&db.data_directory).unwrap_or_else(|_| db.data_directory.clone());
    let mut errors = Vec::new();

    // 1. Who runs now: taken before the command, which may kill the postmaster and orphan its
    //    children (found by identity afterwards).
    let pid_file = read_pid_file(&data_dir.join(PID_FILE));
    let pid_file_pid = pid_file.as_ref().map(|p| p.pid);
    let table = ProcTable::read(&mut errors);
    let found = processes_of(&table, &data_dir, pid_file_pid, &[]);

    // 2. The fence command, bounded by its own timeout.
    let command = match exec::run(fence_cmd).await {
        Ok(outcome) => CommandStep::Finished {
            exit: outcome.exit,
            duration: outcome.duration,
            last_line: outcome.output.last_line().map(str::to_string),
        },
        Err(ExecError::TimedOut {
            timeout, output, ..
        }) => CommandStep::TimedOut {
            timeout,
            last_line: output.last_line().map(str::to_string),
        },
        Err(e) => {
            tracing::warn!(error = %e, "fence command could not run; killing by PID");
            CommandStep::NotRun {
                error: e.to_string(),
            }
        }
    };

    // 3. Whatever survived, by PID.
    let mut killed = Vec::new();
    let mut survivors = Vec::new();
    for round in 0..KILL_ROUNDS {
        let table = ProcTable::read(&mut errors);
        let alive = processes_of(&table, &data_dir, pid_file_pid, &found);
        if alive.is_empty() {
            survivors.clear();
            break;
        }
        if round + 1 == KILL_ROUNDS {
            survivors = alive;
            break;
        }
        for process in &alive {
            match kill_verified(process) {
                Ok(true) => killed.push(process.clone()),
                Ok(false) => {} // already gone or recycled
                Err(e) => errors.push(format!(
                    "SIGKILL to pid {} ({}) failed: {e}",
                    process.pid, process.comm
                )),
            }
        }
        wait_gone(&alive, KILL_WAIT).await;
    }
    for survivor in &survivors {
        errors.push(format!(
            "pid {} ({}) of {} is still alive after SIGKILL",
            survivor.pid,
            survivor.comm,
            data_dir.display()
        ));
    }

    // 4. Stale files, only when no live process owns them.
    let socket_dirs = socket_dirs(db, pid_file.as_ref());
    let mut files = FileCleanup::default();
    let listening = listening_unix_sockets();
    for dir in &socket_dirs {
        files.socket_pair(dir, db.port, &listening);
    }
    files.ic_proxy_sockets(Path::new(TMP), db.port, &listening);
    if survivors.is_empty() {
        files.pid_file(&data_dir);
    } else if pid_file_pid.is_some() {
        files.kept.push(KeptFile {
            path: data_dir.join(PID_FILE),
            reason: "processes of the data directory survive".into(),
        });
    }
    errors.extend(files.errors);

    let outcome = if !survivors.is_empty() || !errors.is_empty() {
        FenceOutcome::Incomplete
    } else if !found.is_empty()
        || !killed.is_empty()
        || matches!(
            command,
            CommandStep::Finished {
                exit: Exit::Code(0),
                ..
            }
        )
    {
        FenceOutcome::Stopped
    } else if !files.removed.is_empty() {
        FenceOutcome::CleanedUp
    } else {
        FenceOutcome::NothingToDo
    };
    let report = FenceReport {
        data_directory: data_dir,
        port: db.port,
        outcome,
        pid_file_pid,
        found,
        command,
        killed,
        survivors,
        socket_dirs,
        removed: files.removed,
        kept: files.kept,
        errors,
        duration: started.elapsed(),
    };
    if report.is_fenced() {
        tracing::info!(report = %report, "database fenced");
    } else {
        tracing::error!(report = %report, "database fencing incomplete");
    }
    report
}

const PID_FILE: &str = "postmaster.pid";

/// The lines of `postmaster.pid` we use (PostgreSQL's `pidfile.h` layout: 1 PID, 2 data
/// directory, 3 start time, 4 port, 5 first socket directory, 6 listen address, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PidFile {
    pid: i32,
    socket_dir: Option<PathBuf>,
}

fn read_pid_file(path: &Path) -> Option<PidFile> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    // A standalone backend writes its PID negated.
    let pid = lines.next()?.trim().parse::<i32>().ok()?.checked_abs()?;
    let socket_dir = lines
        .nth(3)
        .map(str::trim)
        .filter(|s| s.starts_with('/'))
        .map(PathBuf::from);
    Some(PidFile { pid, socket_dir })
}

/// One line of `/proc/<pid>/stat`.
#[derive(Debug, Clone)]
struct ProcStat {
    ppid: i32,
    comm: String,
    zombie: bool,
    start_time: u64,
}

fn read_stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: it runs from the first '(' to the last ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // After comm: state(3) ppid(4) ... starttime(22) → indices 0, 1, 19.
    Some(ProcStat {
        zombie: matches!(fields.first(), Some(&"Z") | Some(&"X")),
        ppid: fields.get(1)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
        comm,
    })
}

/// All live (non-zombie) processes but ourselves.
struct ProcTable {
    procs: BTreeMap<i32, ProcStat>,
}

impl ProcTable {
    fn read(errors: &mut Vec<String>) -> ProcTable {
        let mut procs = BTreeMap::new();
        let own = std::process::id() as i32;
        match std::fs::read_dir("/proc") {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let Some(pid) = entry
                        .file_name()
                        .to_str()
                        .and_then(|n| n.parse::<i32>().ok())
                    else {
                        continue;
                    };
                    if pid == own {
                        continue;
                    }
                    if let Some(stat) = read_stat(pid) {
                        if !stat.zombie {
                            procs.insert(pid, stat);
                        }
                    }
                }
            }
            Err(e) => errors.push(format!("cannot list /proc: {e}")),
        }
        ProcTable { procs }
    }
}

fn is_postgres_name(comm: &str) -> bool {
    comm == "postgres" || comm == "postmaster"
}

fn cwd_of(pid: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// Whether the process's `-D` argument names `data_dir` (used when its cwd cannot be read).
fn cmdline_names(pid: i32, data_dir: &Path) -> bool {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
    args.windows(2)
        .any(|pair| pair[0] == b"-D" && same_dir(Path::new(OsStr::from_bytes(pair[1])), data_dir))
}

fn same_dir(candidate: &Path, data_dir: &Path) -> bool {
    candidate == data_dir
        || std::fs::canonicalize(candidate)
            .map(|c| c == data_dir)
            .unwrap_or(false)
}

/// The processes of `data_dir` in `table` (see the module documentation), postmasters and roots
/// first. `known` are processes found earlier: still ours if pid and start time match.
fn processes_of(
    table: &ProcTable,
    data_dir: &Path,
    pid_file_pid: Option<i32>,
    known: &[FoundProcess],
) -> Vec<FoundProcess> {
    let mut roles: BTreeMap<i32, ProcessRole> = BTreeMap::new();
    if let Some(pid) = pid_file_pid {
        if let Some(stat) = table.procs.get(&pid) {
            let in_dir =
                cwd_of(pid).is_some_and(|cwd| cwd == data_dir) || cmdline_names(pid, data_dir);
            if is_postgres_name(&stat.comm) && in_dir {
                roles.insert(pid, ProcessRole::Postmaster);
            }
        }
    }
    let in_data_dir: BTreeSet<i32> = table
        .procs
        .iter()
        .filter(|(_, stat)| is_postgres_name(&stat.comm))
        .filter(|(pid, _)| cwd_of(**pid).is_some_and(|cwd| cwd == data_dir))
        .map(|(pid, _)| *pid)
        .collect();
    for pid in &in_data_dir {
        let parent_is_ours = table
            .procs
            .get(pid)
            .is_some_and(|s| in_data_dir.contains(&s.ppid) || roles.contains_key(&s.ppid));
        if !parent_is_ours {
            roles.entry(*pid).or_insert(ProcessRole::Root);
        }
    }
    for process in known {
        if table
            .procs
            .get(&process.pid)
            .is_some_and(|s| s.start_time == process.start_time)
        {
            roles.entry(process.pid).or_insert(process.role);
        }
    }
    // Descendants of everything found so far, to any depth.
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for (pid, stat) in &table.procs {
        children.entry(stat.ppid).or_default().push(*pid);
    }
    let mut queue: Vec<i32> = roles.keys().copied().collect();
    while let Some(parent) = queue.pop() {
        for child in children.get(&parent).into_iter().flatten() {
            if !roles.contains_key(child) {
                roles.insert(*child, ProcessRole::Descendant);
                queue.push(*child);
            }
        }
    }
    let mut found: Vec<FoundProcess> = roles
        .into_iter()
        .filter_map(|(pid, role)| {
            table.procs.get(&pid).map(|stat| FoundProcess {
                pid,
                ppid: stat.ppid,
                comm: stat.comm.clone(),
                start_time: stat.start_time,
                role,
            })
        })
        .collect();
    found.sort_by_key(|p| (p.role, p.pid));
    found
}

/// SIGKILL `process` if it is still the same process (pid and start time). `Ok(false)` when it is
/// already gone.
fn kill_verified(process: &FoundProcess) -> std::io::Result<bool> {
    match read_stat(process.pid) {
        Some(stat) if stat.start_time == process.start_time && !stat.zombie => {}
        _ => return Ok(false),
    }
    if process.pid <= 1 {
        return Ok(false);
    }
    // SAFETY: kill has no memory preconditions.
    if unsafe { libc::kill(process.pid, libc::SIGKILL) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ESRCH) {
        Ok(false)
    } else {
        Err(e)
    }
}

fn is_gone(process: &FoundProcess) -> bool {
    match read_stat(process.pid) {
        Some(stat) => stat.zombie || stat.start_time != process.start_time,
        None => true,
    }
}

async fn wait_gone(processes: &[FoundProcess], limit: Duration) {
    let deadline = Instant::now() + limit;
    while !processes.iter().all(is_gone) && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
}

/// Whether `pid` is a live postgres process (the owner a lock file or socket name points at).
fn live_postgres(pid: i32) -> Option<String> {
    let stat = read_stat(pid)?;
    (!stat.zombie && is_postgres_name(&stat.comm)).then_some(stat.comm)
}

/// The socket directories to check: the one `postmaster.pid` recorded, the configured one, and
/// `/tmp`.
fn socket_dirs(db: &Database, pid_file: Option<&PidFile>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let candidates = pid_file
        .and_then(|p| p.socket_dir.clone())
        .into_iter()
        .chain(match &db.endpoint {
            DbEndpoint::SocketDir(dir) => Some(dir.clone()),
            DbEndpoint::Host(_) => None,
        })
        .chain(std::iter::once(PathBuf::from(TMP)));
    for dir in candidates {
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs
}

/// Paths of listening Unix sockets in this network namespace (`/proc/net/unix`, flag
/// `__SO_ACCEPTCON`).
fn listening_unix_sockets() -> BTreeSet<PathBuf> {
    const ACCEPTCON: u32 = 0x0001_0000;
    let Ok(text) = std::fs::read_to_string("/proc/net/unix") else {
        return BTreeSet::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = u32::from_str_radix(fields.get(3)?, 16).ok()?;
            let path = fields.get(7..)?.join(" ");
            (flags & ACCEPTCON != 0 && path.starts_with('/')).then(|| PathBuf::from(path))
        })
        .collect()
}

/// Removal of stale files, with what was removed and kept.
#[derive(Default)]
struct FileCleanup {
    removed: Vec<PathBuf>,
    kept: Vec<KeptFile>,
    errors: Vec<String>,
}

impl FileCleanup {
    fn keep(&mut self, path: PathBuf, reason: impl Into<String>) {
        self.kept.push(KeptFile {
            path,
            reason: reason.into(),
        });
    }

    /// Removes `path` if it is of the expected kind; never follows a symlink, never a directory.
    fn remove(&mut self, path: &Path, want_socket: bool) {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return; // nothing there (or vanished meanwhile)
        };
        let kind = meta.file_type();
        let expected = if want_socket {
            kind.is_socket()
        } else {
            kind.is_file()
        };
        if !expected {
            let what = if want_socket {
                "a socket"
            } else {
                "a regular file"
            };
            self.keep(
                path.to_path_buf(),
                format!("not {what}; left for an operator"),
            );
            return;
        }
        match std::fs::remove_file(path) {
            Ok(()) => self.removed.push(path.to_path_buf()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => self
                .errors
                .push(format!("cannot remove stale {}: {e}", path.display())),
        }
    }

    /// `.s.PGSQL.<port>` and `.s.PGSQL.<port>.lock` in `dir`: stale unless the PID in the lock is
    /// a live postgres process or something listens on the socket.
    fn socket_pair(&mut self, dir: &Path, port: u16, listening: &BTreeSet<PathBuf>) {
        let socket = dir.join(format!(".s.PGSQL.{port}"));
        let lock = dir.join(format!(".s.PGSQL.{port}.lock"));
        if !exists(&socket) && !exists(&lock) {
            return;
        }
        if exists(&lock) {
            let owner = std::fs::read_to_string(&lock)
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
                .map(i32::abs);
            if let Some(comm) = owner.and_then(live_postgres) {
                let reason = format!("lock held by live {comm} pid {}", owner.unwrap_or(0));
                self.keep(lock, reason.clone());
                self.keep(socket, reason);
                return;
            }
        }
        if listening.contains(&socket) {
            self.keep(socket, "a process listens on it");
            self.keep(lock, "its socket is in use");
            return;
        }
        self.remove(&socket, true);
        self.remove(&lock, false);
    }

    /// WarehousePG's `/tmp/.s.PGSQL.ic_proxy.<port>.<postmaster pid>`: stale unless that PID is
    /// a live postgres process or something listens on it.
    fn ic_proxy_sockets(&mut self, dir: &Path, port: u16, listening: &BTreeSet<PathBuf>) {
        let prefix = format!(".s.PGSQL.ic_proxy.{port}.");
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(&prefix))
            .collect();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let Some(pid) = name[prefix.len()..].parse::<i32>().ok() else {
                self.keep(path, "name does not end in a PID");
                continue;
            };
            if let Some(comm) = live_postgres(pid) {
                self.keep(path, format!("its postmaster {comm} pid {pid} is alive"));
            } else if listening.contains(&path) {
                self.keep(path, "a process listens on it");
            } else {
                self.remove(&path, true);
            }
        }
    }

    /// `postmaster.pid` in the data directory: stale unless its PID is a live postgres process.
    fn pid_file(&mut self, data_dir: &Path) {
        let path = data_dir.join(PID_FILE);
        let Some(pid_file) = read_pid_file(&path) else {
            if exists(&path) {
                // Unreadable or half-written: a starting postmaster writes it in steps.
                self.keep(path, "no PID in it; left for an operator");
            }
            return;
        };
        if let Some(comm) = live_postgres(pid_file.pid) {
            self.keep(path, format!("its {comm} pid {} is alive", pid_file.pid));
            return;
        }
        self.remove(&path, false);
    }
}

fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_gives_pid_and_socket_dir() {
        let dir = std::env::temp_dir().join(format!("whpg-fence-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(PID_FILE);
        std::fs::write(
            &path,
            "4242\n/data/coordinator/gpseg-1\n1700000000\n5432\n/tmp\n*\n  5432001         0\nready   \n",
        )
        .unwrap();
        assert_eq!(
            read_pid_file(&path),
            Some(PidFile {
                pid: 4242,
                socket_dir: Some(PathBuf::from("/tmp"))
            })
        );
        std::fs::write(&path, "-77\n/d\n1\n5432\n\n").unwrap();
        assert_eq!(
            read_pid_file(&path),
            Some(PidFile {
                pid: 77,
                socket_dir: None
            })
        );
        std::fs::write(&path, "").unwrap();
        assert_eq!(read_pid_file(&path), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn own_stat_parses() {
        let stat = read_stat(std::process::id() as i32).expect("our own stat");
        assert!(!stat.zombie);
        assert!(stat.start_time > 0);
        assert!(stat.ppid > 0);
    }
}
