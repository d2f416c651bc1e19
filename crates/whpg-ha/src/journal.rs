//! The append-only journal: every transition, decision and action of the daemon, one JSON object
//! per line, each line fsync'd by [`Journal::record`] before it returns; the daemon calls it from the
//! writer thread of [`BackgroundJournal`], so the decision loop never waits on the disk (invariant 8).
//!
//! `[journal] path` is a directory. It holds `journal.jsonl` (being written) and the rotated
//! `journal.1.jsonl` (the newest rotated) to `journal.N.jsonl` (the oldest). When an entry would
//! take the current file past the size limit, the files shift by one and the oldest beyond the
//! kept count is deleted.
//!
//! Entries are rare (state changes). The daemon writes them from a thread of its own
//! ([`BackgroundJournal`]) through a bounded queue: a full queue never blocks the daemon's loop; the
//! entry is counted as dropped and a `N journal entries dropped` notice takes its place in the
//! journal as soon as the queue has room. A write that fails is logged (at most once a minute) and
//! counted; it never stops the daemon.
//!
//! Files are created mode 0640 (the daemon's user writes, its group, say the operators', may read
//! `whpg-ha history`; others nothing) and the directory 0750. A journal directory or file that is a
//! symbolic link is refused, for writing and for reading: whoever can write the parent directory
//! could otherwise point it at a file of the daemon's user (or root's) and have it appended to.
//!
//! Reading goes backwards from the newest entry, in chunks, and stops once it has enough: a page of
//! the newest entries (or of those before a [`Cursor`]) never reads every file.
//!
//! A crash can leave a torn last line. The reader skips any line that does not parse, and the
//! writer starts a fresh line after it, so a torn line never costs a later entry.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::SyncSender;
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
/// Mode of the journal files: the daemon's user writes, its group reads.
pub const FILE_MODE: u32 = 0o640;
/// Mode of a journal directory the daemon creates.
pub const DIR_MODE: u32 = 0o750;
/// Entries the background writer's queue holds before new ones are dropped (and counted).
pub const DEFAULT_QUEUE: usize = 1024;
/// Bytes read at a time when reading a file backwards.
const READ_CHUNK: u64 = 64 * 1024;
/// The longest line a cursor check reads.
const MAX_LINE: u64 = 1 << 20;

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
    #[error(
        "the journal path {path} is a symbolic link; whpg-ha does not follow links in its journal \
         (whoever can change the link could make it write elsewhere): point [journal] path at the \
         real directory, or replace the link with a directory"
    )]
    Symlink { path: PathBuf },
    #[error(
        "history cursor `{cursor}` is not one: pass back the value of a previous answer's \
         next cursor unchanged, or leave it out for the newest entries"
    )]
    BadCursor { cursor: String },
    #[error(
        "history cursor `{cursor}` no longer names an entry: the journal was rotated past it; start \
         again without a cursor"
    )]
    StaleCursor { cursor: String },
}

/// Refuses a path that is a symbolic link (`lstat`; a missing path is fine).
fn refuse_symlink(path: &Path) -> Result<(), JournalError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(JournalError::Symlink {
            path: path.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// Maps the `ELOOP` of an `O_NOFOLLOW` open of a symbolic link to [`JournalError::Symlink`].
fn is_symlink_error(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
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
    ///
    /// A directory created here gets mode [`DIR_MODE`], files [`FILE_MODE`]; an existing file with
    /// a wider mode is narrowed to it. The directory or the current file being a symbolic link is
    /// an error ([`JournalError::Symlink`]).
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> Result<Journal, JournalError> {
        refuse_symlink(path)?;
        if path.exists() && !path.is_dir() {
            return Err(JournalError::NotADirectory {
                path: path.to_path_buf(),
            });
        }
        if !path.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(path)
                .map_err(|source| JournalError::CreateDir {
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
    let existed = fs::symlink_metadata(&path).is_ok();
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| {
            if is_symlink_error(&e) {
                JournalError::Symlink { path: path.clone() }
            } else {
                open_error(e)
            }
        })?;
    let meta = file.metadata().map_err(open_error)?;
    if meta.permissions().mode() & 0o7777 & !FILE_MODE != 0 {
        // Written by an older version, or by hand: no wider than FILE_MODE.
        let narrowed = meta.permissions().mode() & FILE_MODE;
        file.set_permissions(fs::Permissions::from_mode(narrowed))
            .map_err(open_error)?;
    }
    let size = meta.len();
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

/// Where entries go: a [`Journal`], or (in tests) anything else that takes them in order.
pub trait Sink: Send + 'static {
    /// Writes one entry; never fails (a journal problem must never stop the daemon).
    fn record(&mut self, entry: &Entry);
}

impl Sink for Journal {
    fn record(&mut self, entry: &Entry) {
        Journal::record(self, entry);
    }
}

/// A [`Journal`] written by a thread of its own. [`BackgroundJournal::record`] queues the entry
/// and returns, so an fsync held up by a busy disk (a database recovering next to us) never delays
/// the decisions behind it, such as a fence or a promotion. Entries keep their order; dropping
/// the writer writes what is queued first.
///
/// The queue is bounded ([`DEFAULT_QUEUE`] entries). When it is full, `record` does not wait: the
/// entry is dropped and counted ([`BackgroundJournal::dropped`]), the first drop of a run is
/// logged, and the next entry that finds room is preceded by a notice `N journal entries dropped`
/// (fields `dropped`, `dropped_total`), so a gap in the journal is always visible in the journal.
pub struct BackgroundJournal {
    queue: Option<SyncSender<Entry>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Written inline when no thread could be started.
    inline: Option<Box<dyn Sink>>,
    capacity: usize,
    /// Dropped since the last notice that reached the queue.
    pending_drops: u64,
    dropped_total: u64,
    /// The node of the last entry (for the notice written at shutdown).
    node: String,
}

impl BackgroundJournal {
    pub fn start(journal: Journal) -> BackgroundJournal {
        BackgroundJournal::with_sink(journal, DEFAULT_QUEUE)
    }

    /// A writer thread for any [`Sink`], with a queue of `capacity` entries (at least 1).
    pub fn with_sink(sink: impl Sink, capacity: usize) -> BackgroundJournal {
        let capacity = capacity.max(1);
        let (queue, entries) = std::sync::mpsc::sync_channel::<Entry>(capacity);
        let (tx, rx) = std::sync::mpsc::channel::<Box<dyn Sink>>();
        let spawned = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || {
                let Ok(mut sink) = rx.recv() else {
                    return;
                };
                for entry in entries {
                    sink.record(&entry);
                }
            });
        let sink: Box<dyn Sink> = Box::new(sink);
        let inline = |sink| BackgroundJournal {
            queue: None,
            thread: None,
            inline: Some(sink),
            capacity,
            pending_drops: 0,
            dropped_total: 0,
            node: String::new(),
        };
        match spawned {
            Ok(thread) => match tx.send(sink) {
                Ok(()) => BackgroundJournal {
                    queue: Some(queue),
                    thread: Some(thread),
                    inline: None,
                    capacity,
                    pending_drops: 0,
                    dropped_total: 0,
                    node: String::new(),
                },
                Err(std::sync::mpsc::SendError(back)) => inline(back),
            },
            Err(e) => {
                error!("cannot start the journal writer thread ({e}): writing inline");
                inline(sink)
            }
        }
    }

    /// Entries dropped because the queue was full, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped_total
    }

    /// Queues `entry` without waiting (see the type's documentation for a full queue).
    pub fn record(&mut self, entry: Entry) {
        let Some(queue) = &self.queue else {
            if let Some(sink) = &mut self.inline {
                sink.record(&entry);
            }
            return;
        };
        if self.node != entry.node {
            self.node.clone_from(&entry.node);
        }
        if self.pending_drops > 0 {
            let notice = self.drop_notice(&entry.node);
            match queue.try_send(notice) {
                Ok(()) => self.pending_drops = 0,
                Err(_) => {
                    self.count_drop();
                    return;
                }
            }
        }
        if queue.try_send(entry).is_err() {
            self.count_drop();
        }
    }

    fn count_drop(&mut self) {
        if self.pending_drops == 0 {
            error!(
                "the journal writer is behind (its queue of {} entries is full): dropping entries \
                 until it catches up; the journal will say how many",
                self.capacity
            );
        }
        self.pending_drops += 1;
        self.dropped_total += 1;
    }

    fn drop_notice(&self, node: &str) -> Entry {
        Entry::new(
            node,
            Kind::Notice,
            format!(
                "{} journal entries dropped: the journal writer fell behind (its queue holds {} entries)",
                self.pending_drops, self.capacity
            ),
        )
        .with("dropped", self.pending_drops)
        .with("dropped_total", self.dropped_total)
    }
}

impl Drop for BackgroundJournal {
    fn drop(&mut self) {
        if let Some(queue) = self.queue.take() {
            if self.pending_drops > 0 {
                // Shutting down: waiting for room is fine now.
                let _ = queue.send(self.drop_notice(&self.node));
            }
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A position in the journal for paging backwards: the entry it names and everything newer are
/// excluded. Written as `INODE-OFFSET-AT` (the file's inode, which a rotation's rename keeps, the
/// entry's byte offset in it, and its `at_unix_ms`, checked so that a reused inode is noticed).
/// Treat it as opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    inode: u64,
    offset: u64,
    at_unix_ms: u64,
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}-{}", self.inode, self.offset, self.at_unix_ms)
    }
}

impl std::str::FromStr for Cursor {
    type Err = JournalError;
    fn from_str(text: &str) -> Result<Cursor, JournalError> {
        let bad = || JournalError::BadCursor {
            cursor: text.chars().take(64).collect(),
        };
        let mut parts = text.split('-').map(|p| p.parse::<u64>().map_err(|_| bad()));
        let cursor = Cursor {
            inode: parts.next().ok_or_else(bad)??,
            offset: parts.next().ok_or_else(bad)??,
            at_unix_ms: parts.next().ok_or_else(bad)??,
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(cursor)
    }
}

/// A page of the journal: entries oldest first, and the cursor for the page before it.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub entries: Vec<Entry>,
    /// Pass as `before` for the older entries; `None` when the oldest kept entry is in this page.
    pub next: Option<Cursor>,
}

/// The newest `limit` entries of the journal in directory `path`, oldest first, across the
/// rotated files. `limit == 0` means all. Lines that do not parse (a torn last line after a
/// crash) are skipped.
pub fn read(path: &Path, limit: usize) -> Result<Vec<Entry>, JournalError> {
    read_page(path, limit, None).map(|page| page.entries)
}

/// The newest `limit` entries (0: all) older than `before` (none: the newest of all), oldest first.
///
/// Reads backwards from the newest file, in chunks, and stops as soon as it has `limit` entries:
/// the cost is that of the page, not of the journal.
pub fn read_page(path: &Path, limit: usize, before: Option<Cursor>) -> Result<Page, JournalError> {
    refuse_symlink(path)?;
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
    let names = std::iter::once(path.join(CURRENT)).chain(rotated.into_iter().map(|(_, p)| p));
    let mut files: Vec<(File, u64, u64)> = Vec::new();
    for name in names {
        let file = match open_for_reading(&name) {
            Ok(file) => file,
            // Rotated away or never written.
            Err(JournalError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                continue
            }
            Err(e) => return Err(e),
        };
        let meta = file.metadata().map_err(|source| JournalError::Read {
            path: name.clone(),
            source,
        })?;
        // A rotation between two opens can show one file under two names: read it once.
        if files.iter().any(|(_, ino, _)| *ino == meta.ino()) {
            continue;
        }
        files.push((file, meta.ino(), meta.len()));
    }

    let mut start = 0;
    let mut end_of_first = None;
    if let Some(cursor) = before {
        let stale = || JournalError::StaleCursor {
            cursor: cursor.to_string(),
        };
        let index = files
            .iter()
            .position(|(_, ino, _)| *ino == cursor.inode)
            .ok_or_else(stale)?;
        let (file, _, len) = &mut files[index];
        if cursor.offset > *len
            || entry_at(file, cursor.offset)?.map(|e| e.at_unix_ms) != Some(cursor.at_unix_ms)
        {
            return Err(stale());
        }
        start = index;
        end_of_first = Some(cursor.offset);
    }

    let want = if limit == 0 { usize::MAX } else { limit };
    // Newest first, with where each starts.
    let mut found: Vec<(Cursor, Entry)> = Vec::new();
    let mut exhausted = true;
    for (n, (file, inode, len)) in files.iter_mut().enumerate().skip(start) {
        let end = if n == start {
            end_of_first.unwrap_or(*len)
        } else {
            *len
        };
        let missing = want - found.len();
        let got = read_backwards(file, end, missing).map_err(|source| JournalError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        found.extend(got.into_iter().map(|(offset, entry)| {
            let cursor = Cursor {
                inode: *inode,
                offset,
                at_unix_ms: entry.at_unix_ms,
            };
            (cursor, entry)
        }));
        if found.len() >= want {
            exhausted = false;
            break;
        }
    }
    let next = if exhausted {
        None
    } else {
        found.last().map(|(cursor, _)| *cursor)
    };
    Ok(Page {
        entries: found.into_iter().rev().map(|(_, entry)| entry).collect(),
        next,
    })
}

/// Opens a journal file for reading, refusing a symbolic link.
fn open_for_reading(path: &Path) -> Result<File, JournalError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|source| {
            if is_symlink_error(&source) {
                JournalError::Symlink {
                    path: path.to_path_buf(),
                }
            } else {
                JournalError::Read {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })
}

/// The entry whose line starts at `offset`, if one does.
fn entry_at(file: &mut File, offset: u64) -> Result<Option<Entry>, JournalError> {
    let read = |file: &mut File| -> io::Result<Vec<u8>> {
        file.seek(SeekFrom::Start(offset))?;
        let mut line = Vec::new();
        BufReader::new(file.take(MAX_LINE)).read_until(b'\n', &mut line)?;
        Ok(line)
    };
    let line = read(file).map_err(|source| JournalError::Read {
        path: PathBuf::from(format!("(journal file, offset {offset})")),
        source,
    })?;
    Ok(serde_json::from_slice::<Entry>(line.trim_ascii_end()).ok())
}

/// Up to `want` entries of the bytes `[0, end)` of `file`, newest first, each with the offset its
/// line starts at. Reads backwards in chunks of [`READ_CHUNK`] and stops once it has `want`.
fn read_backwards(file: &mut File, end: u64, want: usize) -> io::Result<Vec<(u64, Entry)>> {
    let mut out = Vec::new();
    if want == 0 {
        return Ok(out);
    }
    let push = |out: &mut Vec<(u64, Entry)>, offset: u64, line: &[u8]| {
        if let Ok(entry) = serde_json::from_slice::<Entry>(line) {
            out.push((offset, entry));
        }
    };
    // `data` holds the bytes [pos, line_end): a chunk and the start of a line that began in it.
    let mut pos = end;
    let mut carry: Vec<u8> = Vec::new();
    while pos > 0 {
        let start = pos.saturating_sub(READ_CHUNK);
        let mut data = vec![0u8; (pos - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut data)?;
        data.extend_from_slice(&carry);
        let mut line_end = data.len();
        while let Some(newline) = data[..line_end].iter().rposition(|b| *b == b'\n') {
            push(
                &mut out,
                start + newline as u64 + 1,
                &data[newline + 1..line_end],
            );
            if out.len() >= want {
                return Ok(out);
            }
            line_end = newline;
        }
        data.truncate(line_end);
        carry = data;
        pos = start;
    }
    // The file's first line.
    push(&mut out, 0, &carry);
    Ok(out)
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

    /// Lines that straddle chunk boundaries, one longer than a whole chunk, garbage and a torn
    /// last line: reading backwards finds exactly what reading forwards finds, at the right offsets.
    #[test]
    fn reading_backwards_across_chunks_matches_reading_forwards() {
        let dir = std::env::temp_dir().join(format!("whpg-journal-chunks-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(CURRENT);
        let mut text = Vec::new();
        let mut expected = Vec::new();
        for seq in 0..3000u64 {
            if seq == 1500 {
                text.extend_from_slice(b"not json\n\n");
            }
            let detail = if seq == 2000 {
                "x".repeat(3 * READ_CHUNK as usize / 2)
            } else {
                format!("entry {seq}")
            };
            let mut entry = Entry::new("n1", Kind::Notice, detail).with("seq", seq);
            entry.at_unix_ms = seq;
            expected.push((text.len() as u64, entry.clone()));
            text.extend(serde_json::to_vec(&entry).unwrap());
            text.push(b'\n');
        }
        text.extend_from_slice(br#"{"at_unix_ms":1,"node":"n1","ki"#);
        fs::write(&path, &text).unwrap();
        assert!(text.len() as u64 > 5 * READ_CHUNK);
        let mut file = File::open(&path).unwrap();

        let all = read_backwards(&mut file, text.len() as u64, usize::MAX).unwrap();
        let newest_first: Vec<(u64, Entry)> = expected.iter().rev().cloned().collect();
        assert_eq!(all.len(), newest_first.len());
        assert!(all == newest_first, "backwards differs from forwards");

        let some = read_backwards(&mut file, text.len() as u64, 7).unwrap();
        assert_eq!(some[..], newest_first[..7]);
        // From an entry's offset: only what is before it.
        let (offset, _) = expected[2001];
        let before = read_backwards(&mut file, offset, 3).unwrap();
        assert_eq!(
            before[..],
            [
                expected[2000].clone(),
                expected[1999].clone(),
                expected[1998].clone()
            ]
        );
        assert_eq!(
            entry_at(&mut file, offset).unwrap().map(|e| e.at_unix_ms),
            Some(2001)
        );
        assert_eq!(entry_at(&mut file, offset + 1).unwrap(), None);
        let _ = fs::remove_dir_all(&dir);
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
