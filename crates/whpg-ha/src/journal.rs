//! The append-only journal: every transition, decision and action of the daemon, one JSON object
//! per line, each line fsync'd by [`Journal::record`] before it returns; the daemon calls it from the
//! writer thread of [`BackgroundJournal`], so the decision loop never waits on the disk (invariant 8).
//!
//! `[journal] path` is a directory. It holds `journal.jsonl` (being written) and the rotated
//! `journal.1.jsonl` (the newest rotated) to `journal.N.jsonl` (the oldest). When an entry would
//! take the current file past the size limit, the files shift by one and the oldest beyond the
//! kept count is deleted.
//!
//! Entries are rare (state changes), so writing and syncing on the daemon's loop is cheap. A write
//! that fails is logged (at most once a minute) and counted; it never stops the daemon.
//!
//! A crash can leave a torn last line. The reader skips any line that does not parse, and the
//! writer starts a fresh line after it, so a torn line never costs a later entry.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::{error, info};

/// The file being written, inside the journal directory.
pub const CURRENT: &str = "journal.jsonl";
/// Size at which the current file is rotated.
pub const DEFAULT_MAX_BYTES: u64 = 8 * 1024 * 1024;
/// How many rotated files are kept besides the current one.
pub const DEFAULT_KEEP: usize = 5;
/// At most one log line about failed writes per this period (the counter sees them all).
const FAILURE_LOG_PERIOD: Duration = Duration::from_secs(60);

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A VRRP state change.
    Transition,
    /// Something the HA policy decided (priority, fault, promote, fence, resign).
    Decision,
    /// Something the daemon did to the system (virtual addresses installed or removed).
    Action,
    /// Something the daemon noticed (an interface going down, a postmaster exiting).
    Observation,
    /// Start-up, shutdown, reloads and the policy's notices.
    Notice,
    /// A kind written by a newer version.
    #[serde(other)]
    Other,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Transition => "transition",
            Kind::Decision => "decision",
            Kind::Action => "action",
            Kind::Observation => "observation",
            Kind::Notice => "notice",
            Kind::Other => "other",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Wall-clock time, Unix milliseconds.
    pub at_unix_ms: u64,
    /// The node (`[nodes.NAME]`) that wrote it.
    pub node: String,
    pub kind: Kind,
    /// One readable sentence.
    pub detail: String,
    /// Structured fields (`from`, `to`, `reason`, `attempt`, `vips`, ...), written at top level.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl Entry {
    /// An entry stamped with the current time.
    pub fn new(node: &str, kind: Kind, detail: impl Into<String>) -> Entry {
        Entry::at(unix_ms(SystemTime::now()), node, kind, detail)
    }

    /// An entry stamped with a time the caller read (the sans-IO node reads no clock).
    pub fn at(at_unix_ms: u64, node: &str, kind: Kind, detail: impl Into<String>) -> Entry {
        Entry {
            at_unix_ms,
            node: node.to_string(),
            kind,
            detail: detail.into(),
            fields: Map::new(),
        }
    }

    /// Add a structured field. The reserved names (`at_unix_ms`, `node`, `kind`, `detail`) are
    /// ignored.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Entry {
        if !matches!(key, "at_unix_ms" | "node" | "kind" | "detail") {
            self.fields.insert(key.to_string(), value.into());
        }
        self
    }

    /// A structured field, if present.
    pub fn field(&self, key: &str) -> Option<&Value> {
        self.fields.get(key)
    }
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Why the journal cannot be opened, written or read. Each message names the path and the fix.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(
        "cannot create the journal directory {path}: {source}; create it writable by the user \
         whpg-ha runs as ({user}), or point [journal] path elsewhere"
    )]
    CreateDir {
        path: PathBuf,
        user: String,
        source: io::Error,
    },
    #[error(
        "the journal path {path} exists but is not a directory; [journal] path names a directory \
         (holding {CURRENT} and its rotated files): move the file away or point [journal] path \
         elsewhere"
    )]
    NotADirectory { path: PathBuf },
    #[error(
        "cannot open the journal {path} for appending: {source}; make {dir} writable by the user \
         whpg-ha runs as ({user}), or point [journal] path elsewhere"
    )]
    Open {
        path: PathBuf,
        dir: PathBuf,
        user: String,
        source: io::Error,
    },
    #[error("cannot write the journal {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot rotate the journal in {dir}: {source} (the entry went to {CURRENT})")]
    Rotate { dir: PathBuf, source: io::Error },
    #[error(
        "no journal at {path}: the daemon has not run on this host with this configuration, or \
         [journal] path points elsewhere"
    )]
    Missing { path: PathBuf },
    #[error("cannot read the journal {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
}

/// The writer, owned by the daemon's loop.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    file: File,
    /// Bytes in the current file.
    size: u64,
    max_bytes: u64,
    keep: usize,
    /// The current file does not end with a newline (a torn line): start the next entry on a
    /// fresh line.
    torn: bool,
    failures: u64,
    /// The last write failed (to log when writing works again).
    failing: bool,
    last_failure_log: Option<Instant>,
}

impl Journal {
    /// Open the journal directory `path` (created if missing) for appending. The current file
    /// is rotated once it would grow past `max_bytes`; `keep` rotated files are kept.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> Result<Journal, JournalError> {
        if path.exists() && !path.is_dir() {
            return Err(JournalError::NotADirectory {
                path: path.to_path_buf(),
            });
        }
        if !path.is_dir() {
            fs::create_dir_all(path).map_err(|source| JournalError::CreateDir {
                path: path.to_path_buf(),
                user: current_user(),
                source,
            })?;
        }
        let (file, size, torn) = open_current(path)?;
        Ok(Journal {
            dir: path.to_path_buf(),
            file,
            size,
            max_bytes: max_bytes.max(1),
            keep,
            torn,
            failures: 0,
            failing: false,
            last_failure_log: None,
        })
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many entries could not be written since the journal was opened.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Append one entry and sync it to disk. On a rotation failure the entry is still written
    /// (to the current file) and the rotation error returned.
    pub fn append(&mut self, entry: &Entry) -> Result<(), JournalError> {
        let mut body = serde_json::to_vec(entry).map_err(|e| JournalError::Write {
            path: self.current(),
            source: io::Error::other(e),
        })?;
        body.push(b'\n');
        let needed = body.len() as u64 + u64::from(self.torn);
        let rotated = if self.size > 0 && self.size + needed > self.max_bytes {
            self.rotate()
        } else {
            Ok(())
        };
        let line = if self.torn {
            [b"\n".as_slice(), &body].concat()
        } else {
            body
        };

        let written = self
            .file
            .write_all(&line)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.size += line.len() as u64;
                self.torn = false;
            }
            Err(source) => {
                // Part of the line may be on disk: the next entry starts on a fresh line.
                self.torn = true;
                self.size = self.file.metadata().map_or(self.size, |m| m.len());
                return Err(JournalError::Write {
                    path: self.current(),
                    source,
                });
            }
        }
        rotated
    }

    /// Append, and on failure log (rate-limited) and count instead of returning the error: what
    /// the daemon's loop calls, since a journal problem must never stop it.
    pub fn record(&mut self, entry: &Entry) {
        match self.append(entry) {
            Ok(()) => {
                if self.failing {
                    self.failing = false;
                    info!(
                        "the journal {} is writable again ({} entries lost since start-up)",
                        self.current().display(),
                        self.failures
                    );
                }
            }
            // The entry itself was written.
            Err(e @ JournalError::Rotate { .. }) => self.log_failure(&e),
            Err(e) => {
                self.failures += 1;
                self.failing = true;
                self.log_failure(&e);
            }
        }
    }

    fn log_failure(&mut self, e: &JournalError) {
        let now = Instant::now();
        let due = self
            .last_failure_log
            .is_none_or(|last| now.duration_since(last) >= FAILURE_LOG_PERIOD);
        if due {
            self.last_failure_log = Some(now);
            error!(
                "{e} ({} entries lost since start-up; journal errors are logged at most once a minute)",
                self.failures
            );
        }
    }

    fn current(&self) -> PathBuf {
        self.dir.join(CURRENT)
    }

    /// Shift `journal.K.jsonl` to `K+1` (dropping the ones beyond `keep`), the current file to
    /// `journal.1.jsonl`, and start a new current file.
    fn rotate(&mut self) -> Result<(), JournalError> {
        let dir = self.dir.clone();
        let fail = |source| JournalError::Rotate {
            dir: dir.clone(),
            source,
        };
        // Remove everything from `keep` up (including files left by a larger `keep` before).
        for (number, path) in rotated_files(&self.dir).map_err(fail)? {
            if number >= self.keep {
                remove_if_present(&path).map_err(fail)?;
            }
        }
        for number in (1..self.keep).rev() {
            let from = rotated_path(&self.dir, number);
            if from.exists() {
                fs::rename(&from, rotated_path(&self.dir, number + 1)).map_err(fail)?;
            }
        }
        if self.keep == 0 {
            remove_if_present(&self.current()).map_err(fail)?;
        } else {
            fs::rename(self.current(), rotated_path(&self.dir, 1)).map_err(fail)?;
        }
        let (file, size, torn) = open_current(&self.dir).map_err(|e| match e {
            JournalError::Open { source, .. } => fail(source),
            other => fail(io::Error::other(other.to_string())),
        })?;
        self.file = file;
        self.size = size;
        self.torn = torn;
        Ok(())
    }
}

/// Open (or create) the current file for appending; its size, and whether it ends in a torn line.
fn open_current(dir: &Path) -> Result<(File, u64, bool), JournalError> {
    let path = dir.join(CURRENT);
    let open_error = |source| JournalError::Open {
        path: path.clone(),
        dir: dir.to_path_buf(),
        user: current_user(),
        source,
    };
    let existed = path.exists();
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&path)
        .map_err(open_error)?;
    let size = file.metadata().map_err(open_error)?.len();
    let torn = size > 0 && {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::End(-1))
            .and_then(|_| file.read_exact(&mut last))
            .map_err(open_error)?;
        last[0] != b'\n'
    };
    if !existed {
        // Make the new file's name durable too.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(open_error)?;
    }
    Ok((file, size, torn))
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rotated_path(dir: &Path, number: usize) -> PathBuf {
    dir.join(format!("journal.{number}.jsonl"))
}

/// The rotated files in `dir` as (number, path), in no particular order.
fn rotated_files(dir: &Path) -> io::Result<Vec<(usize, PathBuf)>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let number = name
            .strip_prefix("journal.")
            .and_then(|rest| rest.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(number) = number.filter(|n| *n > 0) {
            files.push((number, entry.path()));
        }
    }
    Ok(files)
}

/// The user the process runs as, for error messages.
fn current_user() -> String {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    match passwd_name(uid) {
        Some(name) => format!("{name}, uid {uid}"),
        None => format!("uid {uid}"),
    }
}

/// The name of `uid` from /etc/passwd (no NSS: good enough for a message).
fn passwd_name(uid: u32) -> Option<String> {
    let text = fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|line| {
        let mut parts = line.split(':');
        let name = parts.next()?;
        let id = parts.nth(1)?;
        (id.parse::<u32>().ok()? == uid).then(|| name.to_string())
    })
}

/// A [`Journal`] written by a thread of its own. [`BackgroundJournal::record`] queues the entry
/// and returns, so an fsync held up by a busy disk (a database recovering next to us) never delays
/// the decisions behind it, such as a fence or a promotion. Entries keep their order; dropping
/// the writer writes what is queued first.
pub struct BackgroundJournal {
    queue: Option<std::sync::mpsc::Sender<Entry>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Written inline when no thread could be started.
    inline: Option<Journal>,
}

impl BackgroundJournal {
    pub fn start(mut journal: Journal) -> BackgroundJournal {
        let (queue, entries) = std::sync::mpsc::channel::<Entry>();
        let (tx, rx) = std::sync::mpsc::channel::<Journal>();
        let spawned = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || {
                let Ok(mut journal) = rx.recv() else {
                    return;
                };
                for entry in entries {
                    journal.record(&entry);
                }
            });
        match spawned {
            Ok(thread) => match tx.send(journal) {
                Ok(()) => BackgroundJournal {
                    queue: Some(queue),
                    thread: Some(thread),
                    inline: None,
                },
                Err(std::sync::mpsc::SendError(back)) => {
                    journal = back;
                    BackgroundJournal::inline(journal)
                }
            },
            Err(e) => {
                error!("cannot start the journal writer thread ({e}): writing inline");
                BackgroundJournal::inline(journal)
            }
        }
    }

    fn inline(journal: Journal) -> BackgroundJournal {
        BackgroundJournal {
            queue: None,
            thread: None,
            inline: Some(journal),
        }
    }

    pub fn record(&mut self, entry: Entry) {
        if let Some(queue) = &self.queue {
            // Fails only once the writer thread is gone (it never returns early).
            let _ = queue.send(entry);
        } else if let Some(journal) = &mut self.inline {
            journal.record(&entry);
        }
    }
}

impl Drop for BackgroundJournal {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The newest `limit` entries of the journal in directory `path`, oldest first, across the
/// rotated files. `limit == 0` means all. Lines that do not parse (a torn last line after a
/// crash) are skipped.
pub fn read(path: &Path, limit: usize) -> Result<Vec<Entry>, JournalError> {
    if !path.is_dir() {
        return Err(if path.exists() {
            JournalError::NotADirectory {
                path: path.to_path_buf(),
            }
        } else {
            JournalError::Missing {
                path: path.to_path_buf(),
            }
        });
    }
    let read_error = |source| JournalError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut rotated = rotated_files(path).map_err(read_error)?;
    rotated.sort();
    // Newest first: the current file, then journal.1, journal.2, ...
    let files = std::iter::once(path.join(CURRENT)).chain(rotated.into_iter().map(|(_, p)| p));
    let mut newest_first: Vec<Vec<Entry>> = Vec::new();
    let mut count = 0;
    for file in files {
        let entries = match read_file(&file) {
            Ok(entries) => entries,
            // Rotated away or never written.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(JournalError::Read { path: file, source }),
        };
        count += entries.len();
        newest_first.push(entries);
        if limit != 0 && count >= limit {
            break;
        }
    }
    let mut all: Vec<Entry> = newest_first.into_iter().rev().flatten().collect();
    if limit != 0 && all.len() > limit {
        all.drain(..all.len() - limit);
    }
    Ok(all)
}

/// Every entry of one file that parses, in file order.
fn read_file(path: &Path) -> io::Result<Vec<Entry>> {
    let reader = BufReader::new(File::open(path)?);
    let mut entries = Vec::new();
    for line in reader.split(b'\n') {
        let line = line?;
        if let Ok(entry) = serde_json::from_slice::<Entry>(&line) {
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// `whpg-ha history`: print the local journal (no daemon needed).
pub fn history_command(
    config_path: &Path,
    node: Option<&str>,
    limit: usize,
    json: bool,
) -> ExitCode {
    let config = match crate::config::load(config_path, node) {
        Ok(config) => config,
        Err(errors) => {
            for error in errors.iter() {
                eprintln!("error: {}: {error}", config_path.display());
            }
            return ExitCode::from(1);
        }
    };
    let entries = match read(&config.journal.path, limit) {
        Ok(entries) => entries,
        Err(e) => {
            eprintln!("whpg-ha history: {e}");
            return ExitCode::from(1);
        }
    };
    let mut out = io::stdout().lock();
    let written = if json {
        entries.iter().try_for_each(|entry| {
            serde_json::to_writer(&mut out, entry).map_err(io::Error::other)?;
            writeln!(out)
        })
    } else {
        write_table(&mut out, &entries)
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`| head`) is not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("whpg-ha history: {e}");
            ExitCode::from(1)
        }
    }
}

/// A readable table: UTC time with milliseconds, node, kind, detail.
pub fn write_table(out: &mut impl Write, entries: &[Entry]) -> io::Result<()> {
    if entries.is_empty() {
        return writeln!(out, "(the journal is empty)");
    }
    let node_width = entries
        .iter()
        .map(|e| e.node.len())
        .max()
        .unwrap_or(0)
        .max("NODE".len());
    writeln!(
        out,
        "{:<24}  {:<node_width$}  {:<11}  DETAIL",
        "TIME (UTC)", "NODE", "KIND"
    )?;
    for entry in entries {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(entry.at_unix_ms);
        writeln!(
            out,
            "{:<24}  {:<node_width$}  {:<11}  {}",
            humantime::format_rfc3339_millis(at).to_string(),
            entry.node,
            entry.kind.as_str(),
            entry.detail
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_serialize_flat_and_round_trip() {
        let entry = Entry {
            at_unix_ms: 1_700_000_000_123,
            node: "cdw".into(),
            kind: Kind::Transition,
            detail: "BACKUP -> MASTER: no advert".into(),
            fields: Map::new(),
        }
        .with("from", "BACKUP")
        .with("to", "MASTER")
        .with("kind", "ignored");
        let text = serde_json::to_string(&entry).expect("serializes");
        assert_eq!(
            text,
            r#"{"at_unix_ms":1700000000123,"node":"cdw","kind":"transition","detail":"BACKUP -> MASTER: no advert","from":"BACKUP","to":"MASTER"}"#
        );
        let back: Entry = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, entry);
        let future: Entry =
            serde_json::from_str(r#"{"at_unix_ms":1,"node":"a","kind":"hint","detail":"x"}"#)
                .expect("an unknown kind parses");
        assert_eq!(future.kind, Kind::Other);
    }

    #[test]
    fn table_shows_milliseconds() {
        let mut entry = Entry::new("cdw", Kind::Notice, "started");
        entry.at_unix_ms = 1_700_000_000_123;
        let mut out = Vec::new();
        write_table(&mut out, &[entry]).expect("writes");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.contains("2023-11-14T22:13:20.123Z  cdw   notice       started"),
            "{text}"
        );
    }
}
